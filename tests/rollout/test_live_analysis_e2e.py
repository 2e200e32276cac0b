"""The live analysis end to end: real `mlops serve` processes for the stable and canary
tracks, a real Prometheus scraping them, bounded load on loopback, and the window judged
by :func:`executors.observe.prometheus.analyse_window` — the code the rollout runs.

The canaries: the same good model (passes), a model whose predictions all moved to one
class (only prediction drift must fail), a model that fails on a share of its inputs
(5xx: the error rate fails), a slow model (p99 against stable fails), and a canary that
gets no traffic (inconclusive: never a pass).
"""

from __future__ import annotations

import concurrent.futures
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops_sessions.config import (
    Analysis,
    ModelConfig,
    RolloutConfig,
    Threshold,
    ThresholdBaseline,
)
from mlops_sessions.executors.observe.prometheus import analyse_window
from mlops_sessions.planning.live_analysis import Outcome, Window
from tests.prometheus_server import Prometheus
from tests.serve.conftest import MODEL, Server, _export_dense, _export_slow, start_server

pytestmark = pytest.mark.slow

THRESHOLDS = {
    "error_rate": Threshold(max=0.02),
    "latency_p99_ms": Threshold(vs_baseline=ThresholdBaseline(max_regression_pct=300)),
    "prediction_drift_psi": Threshold(max=0.5),
}
LOAD_S = 4.0
MIN_REQUESTS = 20


def _export_one_class(directory: Path) -> None:
    """Every row predicted as class 3: a drifted model that is fast and never fails."""
    import tensorflow as tf

    class OneClass(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="pixels")])  # type: ignore[untyped-decorator]
        def serve(self, pixels: Any) -> dict[str, Any]:
            rows = tf.shape(pixels)[0]
            return {"output_0": tf.one_hot(tf.fill([rows], 3), 10) + 0.0 * pixels[:, :10]}

    module = OneClass()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})


def _export_failing(directory: Path) -> None:
    """Fails (a model error, so a 500) on rows whose first pixel is above 0.7."""
    import tensorflow as tf

    class Failing(tf.Module):  # type: ignore[misc]
        @tf.function(input_signature=[tf.TensorSpec([None, 64], tf.float32, name="pixels")])  # type: ignore[untyped-decorator]
        def serve(self, pixels: Any) -> dict[str, Any]:
            check = tf.debugging.assert_less_equal(pixels[:, 0], 0.7, message="bad pixel")
            with tf.control_dependencies([check]):
                return {"output_0": tf.nn.softmax(pixels[:, :10])}

    module = Failing()
    tf.saved_model.save(module, str(directory), signatures={"serving_default": module.serve})


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("rollout-models")
    made = {}
    for name, export in (
        ("good", _export_dense),
        ("one_class", _export_one_class),
        ("failing", _export_failing),
        ("slow", lambda d: _export_slow(d, iterations=4000)),
    ):
        made[name] = root / name
        export(made[name])
    return made


def _serve(tmp: Path, model_dir: Path, track: str, prometheus: Prometheus) -> Iterator[Server]:
    with start_server(
        tmp / track, model_dir, {"batching": {"max_batch_size": 8}}, ("--track", track)
    ) as server:
        address = f"127.0.0.1:{server.port}"
        prometheus.add_target(address)
        try:
            prometheus.wait_scraped(address)
            yield server
        finally:
            prometheus.remove_target(address)


@pytest.fixture(scope="module")
def stable(
    tmp_path_factory: pytest.TempPathFactory, models: dict[str, Path], prometheus: Prometheus
) -> Iterator[Server]:
    yield from _serve(tmp_path_factory.mktemp("stable"), models["good"], "stable", prometheus)


def _load(servers: list[Server], seconds: float) -> None:
    """Bounded load: a few clients per server for `seconds`, digits-like rows."""
    rng = np.random.default_rng(0)
    deadline = time.monotonic() + seconds

    def client(server: Server, seed: int) -> None:
        local = np.random.default_rng(seed)
        while time.monotonic() < deadline:
            row = local.random(64).astype(np.float32).tolist()
            server.predict({"instances": [row]})

    with concurrent.futures.ThreadPoolExecutor(max_workers=4 * len(servers)) as pool:
        futures = [
            pool.submit(client, server, int(rng.integers(1 << 30)))
            for server in servers
            for _ in range(4)
        ]
        for future in futures:
            future.result()


def _model(prometheus: Prometheus) -> ModelConfig:
    analysis = Analysis(
        prometheus=prometheus.url, interval="5s", min_requests=MIN_REQUESTS, thresholds=THRESHOLDS
    )
    return ModelConfig(
        name=MODEL, rollout=RolloutConfig(hosts=("tiny.example",), analysis=analysis)
    )


def _judge(prometheus: Prometheus, servers: list[Server]) -> Any:
    for server in servers:  # the series exist before the window opens
        server.predict({"instances": [[0.1] * 64]})
    time.sleep(2.5)
    start = time.time()
    _load(servers, LOAD_S)
    time.sleep(2.5)  # two more scrapes see the last requests
    window = Window(start=start, end=time.time(), step=0, weight=50)
    return analyse_window(None, _model(prometheus), window)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("canary", "outcome", "failing_metric"),
    [
        ("good", Outcome.PASSED, None),
        ("one_class", Outcome.FAILED, "prediction_drift_psi"),
        ("failing", Outcome.FAILED, "error_rate"),
        ("slow", Outcome.FAILED, "latency_p99_ms"),
    ],
)
def test_a_window_is_judged_on_real_traffic(
    tmp_path: Path,
    models: dict[str, Path],
    prometheus: Prometheus,
    stable: Server,
    canary: str,
    outcome: Outcome,
    failing_metric: str | None,
) -> None:
    for server in _serve(tmp_path, models[canary], "canary", prometheus):
        result = _judge(prometheus, [stable, server])
    details = json.dumps(result.as_dict(), indent=1, default=str)
    assert result.outcome is outcome, details
    assert result.samples["canary"] >= MIN_REQUESTS, details
    if failing_metric is not None:
        assert result.verdict is not None
        failed = {check.metric for check in result.verdict.failed_checks}
        assert failing_metric in failed, details
        assert result.reason.startswith(failing_metric), details


def test_a_canary_without_traffic_is_inconclusive(
    tmp_path: Path, models: dict[str, Path], prometheus: Prometheus, stable: Server
) -> None:
    for _canary in _serve(tmp_path, models["good"], "canary", prometheus):
        result = _judge(prometheus, [stable])  # the load reaches stable only
    assert result.outcome is Outcome.INCONCLUSIVE, result.as_dict()
    assert "the canary served 0 requests" in result.reason
