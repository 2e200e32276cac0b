"""The Prometheus client of the rollout analysis against a real Prometheus: answers,
empty results, refused queries, and a Prometheus that is not there (an ERROR outcome after
bounded retries, never "no data")."""

from __future__ import annotations

import time

import pytest

from mlops_sessions.executors.observe.prometheus import (
    PrometheusError,
    QueryPolicy,
    instant,
    track_data,
)
from mlops_sessions.planning.live_analysis import Window
from tests.prometheus_server import Prometheus, free_port

FAST = QueryPolicy(timeout_s=2, attempts=2, backoff_s=0.05)


def test_a_query_returns_the_vector(prometheus: Prometheus) -> None:
    answer = instant(prometheus.url, "vector(3) + 1", time.time(), FAST)
    assert answer == [({}, 4.0)]


def test_an_unknown_series_is_an_empty_answer_not_an_error(prometheus: Prometheus) -> None:
    window = Window(start=time.time() - 30, end=time.time(), step=0, weight=10)
    data = track_data(prometheus.url, "no-such-model", "canary", window, FAST)
    assert data.requests is None and data.errors is None
    assert data.predictions == {} and data.input_bins == {}
    assert all(v is None for v in data.latency_ms.values())


def test_a_refused_query_is_an_error_at_once(prometheus: Prometheus) -> None:
    started = time.monotonic()
    with pytest.raises(PrometheusError, match="refused the query"):
        instant(prometheus.url, "sum(", time.time(), QueryPolicy(attempts=5, backoff_s=1))
    assert time.monotonic() - started < 3, "a 400 is not worth retrying"


def test_no_prometheus_is_an_error_after_bounded_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    started = time.monotonic()
    with pytest.raises(PrometheusError, match="unreachable"):
        instant(url, "up", time.time(), FAST)
    assert time.monotonic() - started < 10
