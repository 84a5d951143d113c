"""leanml.serving: the HTTP service (``leanml serve``).

Core (no web imports): :class:`ModelHandle` (model + cache + batcher + monitors + its
:class:`~leanml.groundtruth.GroundTruth`), :class:`PredictionCache`, :class:`MicroBatcher`,
:class:`Service` (which keeps ground truth in the :class:`~leanml.groundtruth.FeedbackLog`).
Adapter: :func:`create_app` (a raw ASGI fast path in front of a FastAPI app with the OpenAPI
docs, admin, the Open Inference Protocol, /metrics and /health; both answer predict and feedback
through :mod:`leanml.serving.answers`); :func:`run` starts uvicorn. This package never imports
the dashboard: :mod:`leanml.app` mounts it (``leanml serve`` runs :func:`leanml.app.run`).
"""

from __future__ import annotations

from leanml.config import ServingConfig
from leanml.serving.app import ServeApp, create_app
from leanml.serving.batching import MicroBatcher
from leanml.serving.cache import PredictionCache
from leanml.serving.handle import ModelHandle
from leanml.serving.server import run
from leanml.serving.service import FeedbackOutcome, Service

__all__ = [
    "FeedbackOutcome",
    "MicroBatcher",
    "ModelHandle",
    "PredictionCache",
    "ServeApp",
    "Service",
    "ServingConfig",
    "create_app",
    "run",
]
