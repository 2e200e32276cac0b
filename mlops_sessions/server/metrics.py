"""Prometheus metrics of the model server (prometheus_client, a private registry).

Names follow Prometheus conventions (base units, ``_total`` for counters, ``_info`` for
the identity metric):

- ``mlops_serve_requests_total{model,version,track,endpoint,protocol,code}``
- ``mlops_serve_request_duration_seconds{model,version,track,endpoint,protocol}`` (histogram)
- ``mlops_serve_predictions_total``, ``mlops_serve_input_bin_total`` and
  ``mlops_serve_drift_reference_share`` (:mod:`mlops_sessions.server.live`)

``track`` is the pod's rollout track (``stable``/``canary``; ``--track`` or ``MLOPS_TRACK``,
which the rendered Deployment sets from the pod's ``track`` label), so a rollout's analysis
can compare the two tracks' traffic; empty when the server runs outside a rollout.

``protocol`` is ``rest`` or ``grpc``; for gRPC, ``code`` is the HTTP status its gRPC code
maps to, so error-rate queries on ``code=~"5.."`` cover both protocols.
- ``mlops_serve_batch_size{model,version}`` (histogram, rows per model call)
- ``mlops_serve_model_call_duration_seconds{model,version}`` (histogram)
- ``mlops_serve_queue_depth{model,version}`` (requests waiting for the model)
- ``mlops_serve_requests_in_flight`` and ``mlops_serve_ready``
- ``mlops_serve_model_info{model,version,model_hash,git_commit}`` (always 1)
- ``mlops_serve_model_trained_timestamp_seconds{model,version,track}``: when the training
  run that made the model ended (its run.json's ``finished_at``), when known; the
  ``MlopsModelTooOld`` alert compares it with ``alerts.max_model_age``

Label values come only from the served model's identity and fixed sets of endpoint and
protocol names, never from request paths, so a client cannot grow the series count.

The per-request series (count and latency) are plain counters kept by :class:`RequestStats`
and turned into Prometheus samples only when ``/metrics`` is scraped: a prometheus_client
``inc()`` plus ``observe()`` takes two locks and several microseconds on every request,
which the event loop thread pays at thousands of requests per second. Requests are counted
on the event loop thread only, so no lock is needed.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Callable, Iterator

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Gauge,
    Histogram,
    Info,
    PlatformCollector,
    ProcessCollector,
    generate_latest,
)
from prometheus_client import metrics as prometheus_metrics
from prometheus_client.metrics_core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

from mlops_sessions.server.live import DriftReference, LiveStats
from mlops_sessions.server.settings import ModelIdentity

# prometheus_client's own bucket-bound formatting ("0.0005", "+Inf"), typed for mypy.
_bound_text: Callable[[float], str] = floatToGoString

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


class _Series:
    """One label set of the request metrics: counts by status code, a latency histogram."""

    __slots__ = ("buckets", "code_created", "codes", "created", "seconds")

    def __init__(self, bucket_count: int) -> None:
        self.created = time.time()
        self.codes: dict[int, int] = {}
        self.code_created: dict[int, float] = {}
        self.buckets = [0] * bucket_count  # per bucket, not cumulative; the last is +Inf
        self.seconds = 0.0


class RequestStats(Collector):
    """``mlops_serve_requests_total`` and ``mlops_serve_request_duration_seconds``.

    The names, types, labels and buckets a prometheus_client Counter and Histogram would
    expose (``_created`` samples included), counted with plain integer additions.
    """

    def __init__(self, identity: ModelIdentity) -> None:
        self._served = (identity.name, identity.version)
        self._track = identity.track
        # (known, endpoint, protocol) -> series: at most 2 x the fixed endpoint names x the
        # two protocols.
        self._series: dict[tuple[bool, str, str], _Series] = {}

    def observe(
        self, known: bool, endpoint: str, code: int, seconds: float, protocol: str = "rest"
    ) -> None:
        key = (known, endpoint, protocol)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = _Series(len(LATENCY_BUCKETS) + 1)
        series.seconds += seconds
        # bisect_left: a value equal to a bound falls into that bucket ("le" is <=).
        series.buckets[bisect.bisect_left(LATENCY_BUCKETS, seconds)] += 1
        codes = series.codes
        if code in codes:
            codes[code] += 1
        else:
            codes[code] = 1
            series.code_created[code] = time.time()

    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        yield from self._families()

    def _families(self) -> Iterator[Metric]:
        # prometheus_client.disable_created_metrics() flips this module flag; honour it like
        # the library's own Counter and Histogram do.
        with_created = getattr(prometheus_metrics, "_use_created", True)
        requests = CounterMetricFamily(
            "mlops_serve_requests",
            "Requests to model endpoints, by model, version, endpoint, protocol and status code"
            " (HTTP status; for gRPC the HTTP status its code maps to).",
            labels=["model", "version", "track", "endpoint", "protocol", "code"],
        )
        latency = HistogramMetricFamily(
            "mlops_serve_request_duration_seconds",
            "Time from request arrival to response, by endpoint.",
            labels=["model", "version", "track", "endpoint", "protocol"],
        )
        track = self._track
        bounds = [_bound_text(b) for b in (*LATENCY_BUCKETS, float("inf"))]
        for (known, endpoint, protocol), series in sorted(self._series.items()):
            model, version = self._served if known else (UNKNOWN, UNKNOWN)
            for code, count in sorted(series.codes.items()):
                created = series.code_created[code] if with_created else None
                requests.add_metric(
                    [model, version, track, endpoint, protocol, str(code)], count, created=created
                )
            cumulative = list(itertools.accumulate(series.buckets))
            latency.add_metric(
                [model, version, track, endpoint, protocol],
                [(b, float(c)) for b, c in zip(bounds, cumulative, strict=True)],
                series.seconds,
            )
            if with_created:
                labels = {
                    "model": model,
                    "version": version,
                    "track": track,
                    "endpoint": endpoint,
                    "protocol": protocol,
                }
                latency.samples.append(Sample(f"{latency.name}_created", labels, series.created))
        yield requests
        yield latency


class ServerMetrics:
    """Every metric the server exports, with the served model's labels bound once."""

    def __init__(
        self,
        identity: ModelIdentity,
        max_batch_size: int,
        reference: DriftReference | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.identity = identity
        reg = self.registry
        self.requests = RequestStats(identity)
        reg.register(self.requests)
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
        if identity.trained_at is not None:
            Gauge(
                "mlops_serve_model_trained_timestamp_seconds",
                "When the training run that made the served model ended (Unix time).",
                ["model", "version", "track"],
                registry=reg,
            ).labels(identity.name, identity.version, identity.track).set(identity.trained_at)
        # What a rollout judges besides errors and latency: predicted classes, input bins.
        self.live = LiveStats(
            {"model": identity.name, "version": identity.version, "track": identity.track},
            reference,
        )
        reg.register(self.live)
        ProcessCollector(registry=reg)
        PlatformCollector(registry=reg)

    def observe(
        self, known: bool, endpoint: str, code: int, seconds: float, protocol: str = "rest"
    ) -> None:
        """Count one request; ``known`` is False when the path named another model/version."""
        self.requests.observe(known, endpoint, code, seconds, protocol)

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST
