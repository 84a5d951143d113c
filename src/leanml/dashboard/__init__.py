"""leanml.dashboard: the performance report and the live admin dashboard.

* :func:`build_report` reads the monitor store (merged across processes) and the registry, and
  writes ``report.html`` (self-contained) plus PNG charts; ``leanml report`` is its command line.
* :func:`collect` / :func:`generate_insights` / :func:`generate_suggestions` are the steps behind
  it: plain data, sentences citing their numbers, and rules with evidence and the exact setting.
* :func:`dashboard_app` is the live page for ``/dashboard`` (an ASGI app to mount), fed by any
  object implementing :class:`DashboardProvider` (see :class:`MonitorProvider`).
"""

from __future__ import annotations

from leanml.dashboard.data import ModelData, ReportData, WindowPoint, collect
from leanml.dashboard.insights import Insight, generate_insights
from leanml.dashboard.report import REFERENCE_FIGURES, Report, build_report, load_benchmarks
from leanml.dashboard.suggest import Suggestion, generate_suggestions

__all__ = [
    "REFERENCE_FIGURES",
    "Insight",
    "ModelData",
    "Report",
    "ReportData",
    "Suggestion",
    "WindowPoint",
    "build_report",
    "collect",
    "generate_insights",
    "generate_suggestions",
    "load_benchmarks",
]
