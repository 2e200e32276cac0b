"""Gate configuration errors are caught when mlops.yaml loads, not when the gate runs."""

from __future__ import annotations

import pytest

from mlops_sessions.config.loader import loads
from mlops_sessions.errors import ConfigError

HEAD = """\
apiVersion: mlops/v1alpha1
project: {name: t}
models:
  m:
    evaluate:
      dataset: code:heldout
"""


def _load(evaluate_tail: str):  # type: ignore[no-untyped-def]
    return loads(HEAD + evaluate_tail, file="mlops.yaml", env={})


def test_threshold_on_a_metric_never_produced_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        _load(
            "      metrics: [accuracy]\n"
            "      thresholds:\n"
            "        f1: {min: 0.9}\n"
            "        latency_b1_p95_ms: {max: 10}\n"
            "        drift_psi_max: {max: 0.2}\n"
        )
    text = str(caught.value)
    assert "3 problems in config" in text
    assert (
        "mlops.yaml:9:9 models.m.evaluate.thresholds.f1: threshold for 'f1', "
        "a metric this evaluation never produces" in text
    )
    assert "threshold for 'latency_b1_p95_ms'" in text and "threshold for 'drift_psi_max'" in text
    assert "add it to evaluate.metrics (or evaluate.latency / evaluate.drift)" in text


def test_threshold_typo_gets_a_suggestion() -> None:
    with pytest.raises(ConfigError, match="did you mean 'accuracy'"):
        _load("      thresholds:\n        acuracy: {min: 0.9}\n")


def test_relative_threshold_with_baseline_none_is_a_config_error() -> None:
    with pytest.raises(
        ConfigError,
        match=r"a relative threshold needs a baseline, but evaluate\.baseline is 'none'",
    ):
        _load(
            "      baseline: none\n"
            "      thresholds:\n"
            "        accuracy: {vs_baseline: {max_regression: 0.01}}\n"
        )


def test_produced_metrics_and_their_directions() -> None:
    config = _load(
        "      metrics: [accuracy, loss,\n"
        "                {name: calib, function: 'code:calib', higher_is_better: false}]\n"
        "      latency: {batch_sizes: [4]}\n"
        "      drift: {reference: code:train}\n"
        "      thresholds:\n"
        "        latency_b4_p99_ms: {max: 10}\n"
        "        calib: {vs_baseline: {max_regression_pct: 5}}\n"
        "        model_size_mb: {max: 5}\n"
    )
    evaluate = config.models["m"].evaluate
    assert evaluate is not None
    assert evaluate.produced_metrics() == {
        "model_size_mb": False,
        "accuracy": True,
        "loss": False,
        "calib": False,
        "latency_b4_p50_ms": False,
        "latency_b4_p95_ms": False,
        "latency_b4_p99_ms": False,
        "drift_psi_max": False,
        "drift_psi_mean": False,
    }
    assert evaluate.baseline == "blessed" and evaluate.allow_first_run is False
