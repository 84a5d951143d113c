"""The ``[serving]`` section: every knob of ``leanml serve``, validated in one place."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from leanml._validation import check_choice, check_number, param_error
from leanml.config._spec import setting

__all__ = ["ServingConfig"]


@dataclasses.dataclass(frozen=True)
class ServingConfig:
    """Settings of the HTTP service (defaults for production)."""

    SECTION: ClassVar[str] = "serving"
    ENV_PREFIX: ClassVar[str] = "LEANML_SERVING_"

    max_body_bytes: int = setting(1_048_576, "Largest request body in bytes (413 beyond).")
    max_inputs: int = setting(256, "Most texts in one predict request (413 beyond).")
    max_text_chars: int = setting(100_000, "Longest text in characters (413 beyond).")
    max_feedback_items: int = setting(1_000, "Most items in one feedback request (413 beyond).")
    cache_max_entries: int = setting(10_000, "Prediction cache entries per model; 0 disables it.")
    cache_max_bytes: int = setting(64 * 1024 * 1024, "Prediction cache bytes per model.")
    cache_ttl_s: float = setting(3600.0, "Seconds a cached prediction stays valid.")
    cache_normalize: str = setting("none", "Text normalisation of cache keys: none, strip or nfc.")
    max_batch_size: int = setting(64, "Largest micro-batch; 1 disables micro-batching.")
    max_wait_ms: float = setting(5.0, "Longest wait to fill a batch, only while saturated (ms).")
    monitoring: bool = setting(True, "Monitor every prediction (a ModelMonitor per variant).")
    variant: str = setting(
        "auto",
        "Variant to serve: auto (the registry's choice, compact when its guard passed), "
        "original or compact.",
    )
    models: tuple[str, ...] = setting((), "Only these models (comma-separated); empty = all.")
    feedback_timeout_s: float = setting(
        2.0, "How long a worker waits for the prediction's owner to join feedback."
    )
    poll_interval_s: float = setting(0.2, "How often a worker polls the store for feedback.")
    heartbeat_s: float = setting(1.0, "Worker heartbeat period in the shared store.")
    registry_watch_s: float = setting(
        2.0, "How often a worker checks the registry for a variant or version change."
    )
    warmup: int = setting(8, "Warm-up predictions per model before readiness.")
    stats_flush_s: float = setting(0.5, "Minimum seconds between the flushes /stats triggers.")
    max_header_bytes: int = setting(
        65_536, "Largest request line + headers in bytes (431 and the connection closed beyond)."
    )
    header_timeout_s: float = setting(
        10.0,
        "Seconds a client has to send a request's line and headers, from its connection or the "
        "request's first byte (408 and closed beyond).",
    )
    body_timeout_s: float = setting(
        30.0, "Seconds a client has to send a request's whole body (408 and closed beyond)."
    )
    keep_alive_s: float = setting(5.0, "Seconds an idle keep-alive connection stays open.")
    max_connections: int = setting(
        1_000, "Most concurrent connections and requests per worker (503 beyond)."
    )
    max_drain_bytes: int = setting(
        8 * 1_048_576,
        "Most bytes of a too-large body read and discarded so the client receives its 413; "
        "beyond it the connection is closed.",
    )
    access_log: bool = setting(
        False,
        "Write a JSON line per request to the leanml.access logger: route, status, latency, "
        "model, prediction ids; never texts or labels.",
    )
    access_log_sample: float = setting(
        1.0, "Share of requests the access log writes (every 5xx is written)."
    )
    admin_token: str | None = setting(
        None,
        "Bearer token of the admin endpoints; unset disables them.",
        secret=True,
        env_alias="LEANML_ADMIN_TOKEN",
    )
    feedback_token: str | None = setting(
        None,
        "Credential feedback must carry ('Authorization: Bearer <token>' or "
        "'X-Feedback-Token: <token>'); unset: feedback needs none.",
        secret=True,
        env_alias="LEANML_FEEDBACK_TOKEN",
    )
    cors_allow_origins: tuple[str, ...] = setting(
        (),
        "Origins browsers may call the API from (comma-separated, '*' for any); empty: CORS off.",
    )
    worker_metrics_port: int = setting(
        0,
        "First port of the per-worker /metrics listeners: each worker takes the first free "
        "port from it (workers 2 on one host: this port and the next), so Prometheus scrapes "
        "every worker, not whichever answers the shared port; 0: off.",
    )
    worker_metrics_host: str = setting(
        "127.0.0.1", "Interface the per-worker /metrics listeners bind (worker_metrics_port)."
    )

    shadow: str = setting(
        "on",
        "Shadow check while a compact variant serves: the original re-scores a sample of served "
        "texts off the request path (on); off saves the original's memory.",
    )
    shadow_rate: float = setting(
        0.01, "Share of served predictions the shadow check re-scores (never below 0.005)."
    )
    shadow_budget: float = setting(
        0.01,
        "CPU share of the model's time the shadow check may spend above the 0.005 floor rate.",
    )
    shadow_threshold: float | None = setting(
        None,
        "Live agreement the compact variant must keep; unset: the guard's min_agreement - 0.02.",
    )
    shadow_alpha: float = setting(
        0.01, "False-alarm probability of the sequential agreement test over an unbounded run."
    )
    shadow_interval_s: float = setting(
        2.0, "How often the shadow check merges counts through the store and decides."
    )
    fallback: str = setting(
        "auto",
        "When the live agreement test fails: auto switches to the original (every process, "
        "through the store) and records why; off only alerts.",
    )

    def __post_init__(self) -> None:
        owner = "ServingConfig"
        check_choice(self.shadow, "shadow", owner, ("on", "off"))
        check_choice(self.fallback, "fallback", owner, ("auto", "off"))
        check_number(self.shadow_rate, "shadow_rate", owner, low=0.005, high=1)
        check_number(self.shadow_budget, "shadow_budget", owner, low=0)
        check_number(
            self.shadow_alpha, "shadow_alpha", owner, low=0, high=1, low_open=True, high_open=True
        )
        check_number(self.shadow_interval_s, "shadow_interval_s", owner, low=0, low_open=True)
        if self.shadow_threshold is not None:
            check_number(
                self.shadow_threshold, "shadow_threshold", owner, low=0, high=1, low_open=True
            )
        for name in (
            "max_body_bytes",
            "max_inputs",
            "max_text_chars",
            "max_feedback_items",
            "max_header_bytes",
            "max_connections",
        ):
            check_number(getattr(self, name), name, owner, low=1, integer=True)
        check_number(
            self.worker_metrics_port, "worker_metrics_port", owner, low=0, high=65535, integer=True
        )
        if not isinstance(self.worker_metrics_host, str) or not self.worker_metrics_host:
            raise param_error("worker_metrics_host", owner, "a host name", self.worker_metrics_host)
        for name in ("cache_max_entries", "cache_max_bytes", "warmup", "max_drain_bytes"):
            check_number(getattr(self, name), name, owner, low=0, integer=True)
        check_number(self.max_batch_size, "max_batch_size", owner, low=1, integer=True)
        check_number(self.max_wait_ms, "max_wait_ms", owner, low=0)
        for name in (
            "cache_ttl_s",
            "feedback_timeout_s",
            "poll_interval_s",
            "heartbeat_s",
            "registry_watch_s",
            "header_timeout_s",
            "body_timeout_s",
            "keep_alive_s",
        ):
            check_number(getattr(self, name), name, owner, low=0, low_open=True)
        check_number(self.stats_flush_s, "stats_flush_s", owner, low=0)
        check_choice(self.cache_normalize, "cache_normalize", owner, ("none", "strip", "nfc"))
        check_choice(self.variant, "variant", owner, ("auto", "original", "compact"))
        for name in ("monitoring", "access_log"):
            if not isinstance(getattr(self, name), bool):
                raise param_error(name, owner, "a bool", getattr(self, name))
        check_number(self.access_log_sample, "access_log_sample", owner, low=0, high=1)
        for name in ("admin_token", "feedback_token"):
            token = getattr(self, name)
            if token is not None and (not isinstance(token, str) or not token):
                raise param_error(name, owner, "a non-empty string or None", "****")
        object.__setattr__(self, "models", tuple(self.models))
        origins = tuple(self.cors_allow_origins)
        if not all(isinstance(o, str) and o for o in origins):
            raise param_error("cors_allow_origins", owner, "non-empty origin strings", origins)
        object.__setattr__(self, "cors_allow_origins", origins)

    def to_dict(self) -> dict[str, Any]:
        """The settings as plain values, the tokens masked."""
        out = dataclasses.asdict(self)
        out["admin_token"] = None if self.admin_token is None else "****"
        out["feedback_token"] = None if self.feedback_token is None else "****"
        return out
