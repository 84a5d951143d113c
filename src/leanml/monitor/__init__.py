"""leanml.monitor: in-process monitoring of scikit-learn text models.

``ModelMonitor.record`` costs a few hundred nanoseconds (a bounded deque append); a background
flusher turns buffered records into per-window counters and mergeable latency sketches, scores
ground truth joined by prediction id (:mod:`leanml.groundtruth`), estimates accuracy from
confidences, scores drift against the model's reference, evaluates alerts, samples resources
and writes a SQLite/PostgreSQL store that readers merge across processes.
"""

from __future__ import annotations

from leanml._ids import is_sampled, sample_hash
from leanml.config import AlertRule, MonitorConfig, default_rules
from leanml.groundtruth import GroundTruth
from leanml.monitor.alerts import AlertEvent, AlertManager, CallbackSink, LogSink, WebhookSink
from leanml.monitor.drift import DRIFT_SCORES, DriftDetector, DriftScores, Reference, oov_rate, psi
from leanml.monitor.monitor import ModelMonitor
from leanml.monitor.prometheus import CONTENT_TYPE as PROMETHEUS_CONTENT_TYPE
from leanml.monitor.prometheus import render as render_prometheus
from leanml.monitor.resources import IdleCollector, ResourceSampler, freeze_after_load
from leanml.monitor.sketch import LogSketch, QuantileSketch, ReqSketch, merge_sketches
from leanml.monitor.stats import MonitorStats
from leanml.monitor.store import MonitorStore
from leanml.monitor.wrapper import MonitoredEstimator, monitored

__all__ = [
    "DRIFT_SCORES",
    "PROMETHEUS_CONTENT_TYPE",
    "AlertEvent",
    "AlertManager",
    "AlertRule",
    "CallbackSink",
    "DriftDetector",
    "DriftScores",
    "GroundTruth",
    "IdleCollector",
    "LogSink",
    "LogSketch",
    "ModelMonitor",
    "MonitorConfig",
    "MonitorStats",
    "MonitorStore",
    "MonitoredEstimator",
    "QuantileSketch",
    "Reference",
    "ReqSketch",
    "ResourceSampler",
    "WebhookSink",
    "default_rules",
    "freeze_after_load",
    "is_sampled",
    "merge_sketches",
    "monitored",
    "oov_rate",
    "psi",
    "render_prometheus",
    "sample_hash",
]
