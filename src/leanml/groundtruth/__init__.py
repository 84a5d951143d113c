"""One ground-truth path, shared by the in-process wrapper and the server.

* :mod:`~leanml.groundtruth.ids`: ids ``<prefix>-<counter>-<tag>`` that cannot be guessed
  (a keyed 64-bit tag) and still index the join ring;
* :mod:`~leanml.groundtruth.ring`: :class:`PendingRing`, the one pending-join table;
* :mod:`~leanml.groundtruth.path`: :class:`GroundTruth`, ids + ring + the outcome of each label;
* :mod:`~leanml.groundtruth.log`: :class:`FeedbackLog`, the one durable log (labels with what
  their prediction was, so counts can be rebuilt) and the join across processes.

It sits below :mod:`leanml.monitor` and :mod:`leanml.serving` (both use it) and above the
config and errors layer; it knows no model, no monitor and no HTTP.
"""

from leanml.groundtruth.ids import IdIssuer, parse_id
from leanml.groundtruth.log import FeedbackLog, Resolver
from leanml.groundtruth.path import STATUSES, GroundTruth, Joined
from leanml.groundtruth.ring import PendingRing

__all__ = [
    "STATUSES",
    "FeedbackLog",
    "GroundTruth",
    "IdIssuer",
    "Joined",
    "PendingRing",
    "Resolver",
    "parse_id",
]
