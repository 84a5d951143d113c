"""leanml.dashboard: the performance report and the live admin dashboard.

* :func:`build_report` reads the monitor store (merged across processes) and the registry, and
  writes ``report.html`` (self-contained) plus PNG charts; ``leanml report`` is its command line.
* :func:`collect` / :func:`generate_insights` / :func:`generate_suggestions` are the steps behind
  it: plain data, sentences citing their numbers, and rules with evidence and the exact setting.
* :func:`dashboard_app` is the live page for ``/dashboard`` (an ASGI app to mount), fed by any
  object implementing :class:`DashboardProvider` (see :class:`MonitorProvider`);
  :func:`with_dashboard` mounts it into ``leanml serve``'s app via :class:`ServiceProvider`.
"""

from __future__ import annotations

from leanml.dashboard.data import ModelData, ReportData, WindowPoint, collect
from leanml.dashboard.insights import Insight, generate_insights
from leanml.dashboard.report import REFERENCE_FIGURES, Report, build_report, load_benchmarks
from leanml.dashboard.service import ServiceProvider, with_dashboard
from leanml.dashboard.suggest import Suggestion, generate_suggestions
from leanml.dashboard.web import DashboardProvider, MonitorProvider, dashboard_app

__all__ = [
    "REFERENCE_FIGURES",
    "DashboardProvider",
    "Insight",
    "MonitorProvider",
    "ModelData",
    "Report",
    "ReportData",
    "ServiceProvider",
    "Suggestion",
    "WindowPoint",
    "build_report",
    "collect",
    "dashboard_app",
    "generate_insights",
    "generate_suggestions",
    "load_benchmarks",
    "with_dashboard",
]
