"""Memory of ``leanml feedback export``: the labelled predictions streamed from the store into
the file (as the command does) vs gathered in a list first (as it did before), in one run.

A SQLite store of N joined labels (every 5th with a stored text, as ``sampling_rate = 0.2``
keeps them) is built in a temporary folder; each way writes the same CSV. Python's peak
allocation (tracemalloc) is measured for each; the ratio is the figure to read.

    flock /tmp/bench.lock python benchmarks/feedback_export.py [N]     # prints JSON (N=200000)
"""

import json
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

from leanml.datasets import write_rows
from leanml.monitor import MonitorStore
from leanml.monitor.labelled import LABELLED_COLUMNS, labelled_predictions


def build(url: str, n: int) -> None:
    st = MonitorStore(url)
    now = time.time()
    labels = [
        {
            "prediction_id": f"p-{i}",
            "model": "m",
            "label": "ab"[i % 2],
            "owner": "p",
            "received_by": "bench",
            "ts": now - n + i,
            "status": "joined",
            "predicted": "a",
            "predicted_index": 0,
            "confidence": 0.7,
            "pred_ts": now - n + i - 1,
            "variant": "compact",
            "version": "1",
        }  # fmt: skip
        for i in range(n)
    ]
    with st.engine.begin() as conn:
        conn.execute(st.feedback.insert(), labels)
    details = [
        {
            "prediction_id": f"p-{i}",
            "ts": now,
            "model": "m",
            "version": "1",
            "variant": "compact",
            "label": "a",
            "confidence": 0.7,
            "latency_s": 0.001,
            "input_text": f"ticket {i}: I was charged twice for the same order, please refund",
            "input_hash": None,
            "reason": "rate",
        }  # fmt: skip
        for i in range(0, n, 5)
    ]
    st.write(predictions=details)
    st.close()


def export(url: str, out: Path, streamed: bool) -> dict[str, float]:
    st = MonitorStore(url, create=False)
    tracemalloc.start()
    t0 = time.perf_counter()
    rows = labelled_predictions(st, "m")
    kept = (r for r in (rows if streamed else list(rows)) if r["text"])
    written = write_rows(out, LABELLED_COLUMNS, kept)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    st.close()
    return {"rows_written": written, "peak_mb": round(peak / 1e6, 1), "seconds": round(seconds, 2)}


def main() -> None:
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 200_000
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/store.db"
        build(url, n)
        listed = export(url, Path(tmp) / "listed.csv", streamed=False)
        streamed = export(url, Path(tmp) / "streamed.csv", streamed=True)
        same = (Path(tmp) / "listed.csv").read_bytes() == (Path(tmp) / "streamed.csv").read_bytes()
    print(
        json.dumps(
            {
                "labels": n,
                "listed": listed,
                "streamed": streamed,
                "peak_ratio_listed_over_streamed": round(
                    listed["peak_mb"] / max(streamed["peak_mb"], 0.1), 1
                ),
                "same_file": same,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
