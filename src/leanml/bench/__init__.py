"""Load generators: in-process (here) and over HTTP."""

from leanml.bench.inprocess import LoadResult, latency_summary, run_single_text_load

__all__ = ["LoadResult", "latency_summary", "run_single_text_load"]
