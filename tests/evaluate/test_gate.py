"""The gate's decision (planning/gate.py): every branch, no TensorFlow."""

from __future__ import annotations

import math

import pytest

from mlops_sessions.config import Threshold, ThresholdBaseline
from mlops_sessions.planning.gate import check_metric, decide, fmt

DIRECTIONS = {"accuracy": True, "loss": False, "latency_b1_p95_ms": False, "model_size_mb": False}


def _rel(reg: float | None = None, pct: float | None = None) -> Threshold:
    return Threshold(vs_baseline=ThresholdBaseline(max_regression=reg, max_regression_pct=pct))


def test_min_passes_at_the_bound_and_fails_below_with_the_gap() -> None:
    ok = decide({"accuracy": 0.95}, {"accuracy": Threshold(min=0.95)}, DIRECTIONS, None)
    assert ok.passed
    bad = decide({"accuracy": 0.90}, {"accuracy": Threshold(min=0.95)}, DIRECTIONS, None)
    assert not bad.passed
    assert bad.failure_lines() == ["FAIL accuracy: 0.9 is below the minimum 0.95 by 0.05"]


def test_max_fails_above_with_the_excess() -> None:
    verdict = decide({"loss": 0.5}, {"loss": Threshold(max=0.3)}, DIRECTIONS, None)
    assert not verdict.passed
    assert verdict.failure_lines() == ["FAIL loss: 0.5 is above the maximum 0.3 by 0.2"]
    assert decide({"loss": 0.3}, {"loss": Threshold(max=0.3)}, DIRECTIONS, None).passed


def test_min_and_max_both_reported() -> None:
    check = check_metric(
        "x",
        5.0,
        Threshold(min=6.0, max=4.0),
        True,
        None,
        baseline_exists=False,
        baseline_label="b",
        allow_first_run=False,
    )
    assert len(check.failures) == 2


def test_absolute_regression_higher_is_better() -> None:
    thresholds = {"accuracy": _rel(reg=0.02)}
    passing = decide({"accuracy": 0.93}, thresholds, DIRECTIONS, {"accuracy": 0.95})
    # 0.95 - 0.93 is 0.020000000000000018 in floats: float noise must not fail the gate.
    assert passing.passed
    check = passing.checks[0]
    assert check.baseline == 0.95
    assert check.delta == pytest.approx(-0.02)
    failing = decide(
        {"accuracy": 0.90}, thresholds, DIRECTIONS, {"accuracy": 0.95}, baseline_label="run r1"
    )
    assert not failing.passed
    (line,) = failing.failure_lines()
    assert line.startswith("FAIL accuracy: 0.9 is 0.05 lower than the baseline 0.95 (run r1)")
    assert "allowed regression is 0.02" in line
    # Improving is never a regression.
    assert decide({"accuracy": 0.99}, thresholds, DIRECTIONS, {"accuracy": 0.95}).passed


def test_absolute_regression_lower_is_better() -> None:
    thresholds = {"latency_b1_p95_ms": _rel(reg=1.0)}
    assert decide(
        {"latency_b1_p95_ms": 5.9}, thresholds, DIRECTIONS, {"latency_b1_p95_ms": 5.0}
    ).passed
    failing = decide({"latency_b1_p95_ms": 6.5}, thresholds, DIRECTIONS, {"latency_b1_p95_ms": 5.0})
    (line,) = failing.failure_lines()
    assert "1.5 higher than the baseline 5" in line
    # Getting faster passes however large the change.
    assert decide(
        {"latency_b1_p95_ms": 1.0}, thresholds, DIRECTIONS, {"latency_b1_p95_ms": 5.0}
    ).passed


def test_percent_regression_both_directions() -> None:
    acc = {"accuracy": _rel(pct=1.0)}
    assert decide({"accuracy": 0.891}, acc, DIRECTIONS, {"accuracy": 0.9}).passed  # -1.0 %
    failing = decide({"accuracy": 0.88}, acc, DIRECTIONS, {"accuracy": 0.9})
    (line,) = failing.failure_lines()
    assert "2.2222% lower than the baseline 0.9" in line and "allowed regression is 1%" in line
    loss = {"loss": _rel(pct=10.0)}
    assert decide({"loss": 0.21}, loss, DIRECTIONS, {"loss": 0.2}).passed  # +5 %
    assert not decide({"loss": 0.25}, loss, DIRECTIONS, {"loss": 0.2}).passed  # +25 %
    assert decide({"loss": 0.1}, loss, DIRECTIONS, {"loss": 0.2}).passed  # better


def test_percent_regression_against_a_zero_baseline() -> None:
    loss = {"loss": _rel(pct=10.0)}
    assert not decide({"loss": 0.01}, loss, DIRECTIONS, {"loss": 0.0}).passed
    assert decide({"loss": 0.0}, loss, DIRECTIONS, {"loss": 0.0}).passed
    check = decide({"loss": 0.01}, loss, DIRECTIONS, {"loss": 0.0}).checks[0]
    assert check.delta_pct is None and check.delta == pytest.approx(0.01)


def test_threshold_direction_overrides_the_produced_direction() -> None:
    # A custom metric declared higher-is-better, but this threshold says lower is better.
    flipped = Threshold(
        direction="lower_is_better", vs_baseline=ThresholdBaseline(max_regression=0.1)
    )
    assert not decide({"m": 1.5}, {"m": flipped}, {"m": True}, {"m": 1.0}).passed
    assert decide({"m": 0.5}, {"m": flipped}, {"m": True}, {"m": 1.0}).passed
    verdict = decide({"m": 0.5}, {"m": flipped}, {"m": True}, {"m": 1.0})
    assert verdict.as_dict()["metrics"]["m"]["direction"] == "lower_is_better"


def test_relative_threshold_without_direction_fails_closed() -> None:
    verdict = decide({"m": 1.0}, {"m": _rel(reg=0.1)}, {}, {"m": 1.0})
    assert not verdict.passed
    assert "set thresholds.<metric>.direction" in verdict.failure_lines()[0]


def test_missing_baseline_fails_closed() -> None:
    verdict = decide(
        {"accuracy": 0.99},
        {"accuracy": _rel(reg=0.02)},
        DIRECTIONS,
        None,
        baseline_label="blessed: no blessed model of 'digits' yet",
    )
    assert not verdict.passed and not verdict.first_run
    (line,) = verdict.failure_lines()
    assert line.startswith(
        "FAIL accuracy: relative threshold (max_regression 0.02) needs a baseline"
    )
    assert "allow_first_run" in line


def test_missing_baseline_allowed_by_allow_first_run_says_so() -> None:
    verdict = decide(
        {"accuracy": 0.99},
        {"accuracy": Threshold(min=0.9, vs_baseline=ThresholdBaseline(max_regression=0.02))},
        DIRECTIONS,
        None,
        allow_first_run=True,
    )
    assert verdict.passed and verdict.first_run
    assert verdict.notes and verdict.notes[0].startswith("FIRST RUN")
    assert "allow_first_run" in verdict.checks[0].notes[0]
    as_dict = verdict.as_dict()
    assert as_dict["first_run"] is True and as_dict["result"] == "pass"


def test_allow_first_run_does_not_excuse_absolute_bounds() -> None:
    verdict = decide(
        {"accuracy": 0.5},
        {"accuracy": Threshold(min=0.9, vs_baseline=ThresholdBaseline(max_regression=0.02))},
        DIRECTIONS,
        None,
        allow_first_run=True,
    )
    assert not verdict.passed
    assert verdict.failure_lines() == ["FAIL accuracy: 0.5 is below the minimum 0.9 by 0.4"]


def test_first_run_flag_only_when_relative_thresholds_exist() -> None:
    verdict = decide(
        {"accuracy": 0.99}, {"accuracy": Threshold(min=0.9)}, DIRECTIONS, None, allow_first_run=True
    )
    assert verdict.passed and not verdict.first_run and not verdict.notes


def test_baseline_without_that_metric_fails_closed_even_with_allow_first_run() -> None:
    verdict = decide(
        {"latency_b1_p95_ms": 3.0},
        {"latency_b1_p95_ms": _rel(reg=1.0)},
        DIRECTIONS,
        {"accuracy": 0.9},
        allow_first_run=True,
        baseline_label="run r0",
    )
    assert not verdict.passed and not verdict.first_run
    assert "the baseline (run r0) has no value for this metric" in verdict.failure_lines()[0]


def test_metric_missing_from_results_fails() -> None:
    verdict = decide(
        {"accuracy": 0.99}, {"f1": Threshold(min=0.9)}, {"f1": True, **DIRECTIONS}, None
    )
    assert not verdict.passed
    assert verdict.failure_lines() == [
        "FAIL f1: was not produced by the evaluation; the threshold (min 0.9) cannot be checked"
    ]
    names = [c.metric for c in verdict.checks]
    assert names == ["accuracy", "f1"]


def test_nan_metric_fails() -> None:
    verdict = decide({"loss": math.nan}, {"loss": Threshold(max=1.0)}, DIRECTIONS, None)
    assert verdict.failure_lines()[0].startswith("FAIL loss: is NaN")


def test_metrics_without_thresholds_are_reported_and_pass() -> None:
    verdict = decide({"accuracy": 0.1, "model_size_mb": 3.0}, {}, DIRECTIONS, {"accuracy": 0.2})
    assert verdict.passed
    checks = {c.metric: c for c in verdict.checks}
    assert not checks["accuracy"].has_threshold
    assert checks["accuracy"].baseline == 0.2 and checks["accuracy"].delta == pytest.approx(-0.1)
    assert checks["accuracy"].delta_pct == pytest.approx(-50.0)
    assert checks["model_size_mb"].baseline is None


def test_verdict_dict_lists_value_threshold_baseline_delta() -> None:
    thresholds = {
        "accuracy": Threshold(min=0.9, vs_baseline=ThresholdBaseline(max_regression=0.02))
    }
    record = decide({"accuracy": 0.95}, thresholds, DIRECTIONS, {"accuracy": 0.94}).as_dict()
    entry = record["metrics"]["accuracy"]
    assert entry["value"] == 0.95 and entry["baseline"] == 0.94
    assert entry["delta"] == pytest.approx(0.01)
    assert entry["threshold"] == {
        "min": 0.9,
        "max": None,
        "max_regression": 0.02,
        "max_regression_pct": None,
    }
    assert record["passed"] is True and record["failures"] == []


def test_several_failures_each_get_a_line_in_metric_order() -> None:
    verdict = decide(
        {"accuracy": 0.5, "loss": 2.0, "model_size_mb": 1.0},
        {
            "accuracy": Threshold(min=0.9),
            "loss": Threshold(max=0.3),
            "model_size_mb": Threshold(max=20),
        },
        DIRECTIONS,
        None,
    )
    assert [line.split(":")[0] for line in verdict.failure_lines()] == [
        "FAIL accuracy",
        "FAIL loss",
    ]


def test_fmt() -> None:
    assert fmt(None) == "—"
    assert fmt(0.95) == "0.95"
    assert fmt(0.123456) == "0.1235"
    assert fmt(1234.5) == "1234"
    assert fmt(1e-5) == "1.000e-05"
    assert fmt(math.nan) == "nan"
    assert fmt(0.0) == "0"
