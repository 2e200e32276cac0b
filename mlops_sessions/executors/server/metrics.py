"""Prometheus metrics of the model server (prometheus_client, a private registry).

Names follow Prometheus conventions (base units, ``_total`` for counters, ``_info`` for
the identity metric):

- ``mlops_serve_requests_total{model,version,endpoint,code}``
- ``mlops_serve_request_duration_seconds{model,version,endpoint}`` (histogram)
- ``mlops_serve_batch_size{model,version}`` (histogram, rows per model call)
- ``mlops_serve_model_call_duration_seconds{model,version}`` (histogram)
- ``mlops_serve_queue_depth{model,version}`` (requests waiting for the model)
- ``mlops_serve_requests_in_flight`` and ``mlops_serve_ready``
- ``mlops_serve_model_info{model,version,model_hash,git_commit}`` (always 1)

Label values come only from the served model's identity and a fixed set of endpoint
names, never from request paths, so a client cannot grow the series count.
"""

from __future__ import annotations

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)

from mlops_sessions.executors.server.settings import ModelIdentity

# Request latency buckets: sub-millisecond (batched small models) up to multi-second.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.064,
    0.128,
    0.256,
    0.512,
    1.0,
    2.5,
    5.0,
    10.0,
)
UNKNOWN = ""


def batch_buckets(max_batch_size: int) -> tuple[float, ...]:
    """Powers of two up to the largest batch, so each bucket is a distinct batching regime."""
    buckets = [1.0]
    while buckets[-1] < max_batch_size:
        buckets.append(min(buckets[-1] * 2, float(max_batch_size)))
    return tuple(buckets)


class ServerMetrics:
    """Every metric the server exports, with the served model's labels bound once."""

    def __init__(self, identity: ModelIdentity, max_batch_size: int) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.identity = identity
        reg = self.registry
        self._requests = Counter(
            "mlops_serve_requests",
            "HTTP requests to model endpoints, by model, version, endpoint and status code.",
            ["model", "version", "endpoint", "code"],
            registry=reg,
        )
        self._latency = Histogram(
            "mlops_serve_request_duration_seconds",
            "Time from request arrival to response, by endpoint.",
            ["model", "version", "endpoint"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        )
        labels = (identity.name, identity.version)
        self.batch_size = Histogram(
            "mlops_serve_batch_size",
            "Rows per model call (adaptive batching).",
            ["model", "version"],
            buckets=batch_buckets(max_batch_size),
            registry=reg,
        ).labels(*labels)
        self.model_call = Histogram(
            "mlops_serve_model_call_duration_seconds",
            "Time of one model call on a batch.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=reg,
        ).labels(*labels)
        self.queue_depth = Gauge(
            "mlops_serve_queue_depth",
            "Requests waiting for the model.",
            ["model", "version"],
            registry=reg,
        ).labels(*labels)
        self.in_flight = Gauge(
            "mlops_serve_requests_in_flight", "Model requests being handled.", registry=reg
        )
        self.ready = Gauge(
            "mlops_serve_ready",
            "1 when the model is loaded, warmed up and not draining.",
            registry=reg,
        )
        Info("mlops_serve_model", "The served model.", registry=reg).info(
            {
                "model": identity.name,
                "version": identity.version,
                "model_hash": identity.model_hash,
                "git_commit": identity.git_commit,
            }
        )
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)
        # Children cached per (served?, endpoint, code): .labels() costs a lock and a dict.
        self._children: dict[tuple[bool, str, int], tuple[Counter, Histogram]] = {}

    def observe(self, known: bool, endpoint: str, code: int, seconds: float) -> None:
        """Count one request; ``known`` is False when the path named another model/version."""
        key = (known, endpoint, code)
        children = self._children.get(key)
        if children is None:
            labels = (self.identity.name, self.identity.version) if known else (UNKNOWN, UNKNOWN)
            children = (
                self._requests.labels(*labels, endpoint, str(code)),
                self._latency.labels(*labels, endpoint),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
