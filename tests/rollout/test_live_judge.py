"""Judging one rollout window: the gate's code on live measurements, failing closed.

Pure: TrackData in, AnalysisResult out. The property test throws arbitrary answers at the
judge (empty, zero, NaN, huge) and checks the rules that keep a bad canary from passing:
too few canary requests or a missing value is never a pass, and nothing raises.
"""

from __future__ import annotations

import math

from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_sessions.config import Threshold, ThresholdBaseline
from mlops_sessions.planning.live_analysis import (
    Outcome,
    TrackData,
    Window,
    judge,
    values_of,
)

WINDOW = Window(start=1000.0, end=1060.0, step=1, weight=50)


def _track(requests: float, errors: float = 0, p99: float = 20.0, **more: object) -> TrackData:
    return TrackData(
        requests=requests,
        errors=errors,
        latency_ms={"latency_p50_ms": p99 / 2, "latency_p95_ms": p99 * 0.9, "latency_p99_ms": p99},
        **more,  # type: ignore[arg-type]
    )


def test_a_healthy_canary_passes_with_the_gates_verdict() -> None:
    result = judge(
        WINDOW,
        _track(200, errors=1),
        _track(400, errors=2),
        {"error_rate": Threshold(max=0.01), "latency_p99_ms": Threshold(max=50)},
        min_requests=50,
    )
    assert result.outcome is Outcome.PASSED
    assert result.verdict is not None and result.verdict.passed
    assert result.samples == {"canary": 200, "stable": 400}
    assert math.isclose(result.measurements["canary"]["error_rate"] or 0, 0.005)
    assert math.isclose(result.measurements["canary"]["request_rate"] or 0, 200 / 60)


def test_a_failing_window_names_metric_value_bound_step_and_window() -> None:
    result = judge(
        WINDOW,
        _track(200, errors=30),
        _track(400),
        {"error_rate": Threshold(max=0.05)},
        min_requests=50,
    )
    assert result.outcome is Outcome.FAILED
    assert result.reason.startswith("error_rate = 0.15 violates <= 0.05 at step 2 (50% canary)")
    assert "window 60s" in result.reason


def test_too_few_canary_requests_is_inconclusive_never_a_pass() -> None:
    result = judge(WINDOW, _track(10), _track(400), {}, min_requests=50)
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "served 10 requests" in result.reason and "at least 50" in result.reason


def test_no_value_for_a_thresholded_metric_is_inconclusive() -> None:
    canary = TrackData(requests=200, errors=0, latency_ms={"latency_p99_ms": float("nan")})
    result = judge(
        WINDOW, canary, _track(400), {"latency_p99_ms": Threshold(max=50)}, min_requests=50
    )
    assert result.outcome is Outcome.INCONCLUSIVE
    assert "no canary value for latency_p99_ms" in result.reason


def test_vs_baseline_compares_with_stable_over_the_same_window() -> None:
    slow = Threshold(vs_baseline=ThresholdBaseline(max_regression_pct=20))
    ok = judge(
        WINDOW, _track(200, p99=22), _track(400, p99=20), {"latency_p99_ms": slow}, min_requests=50
    )
    assert ok.outcome is Outcome.PASSED
    bad = judge(
        WINDOW, _track(200, p99=30), _track(400, p99=20), {"latency_p99_ms": slow}, min_requests=50
    )
    assert bad.outcome is Outcome.FAILED
    assert "stable track, same window" in bad.reason


def test_without_stable_traffic_the_last_stable_window_stands_in() -> None:
    slow = Threshold(vs_baseline=ThresholdBaseline(max_regression_pct=20))
    alone = judge(WINDOW, _track(400, p99=30), _track(0), {"latency_p99_ms": slow}, min_requests=50)
    assert alone.outcome is Outcome.INCONCLUSIVE
    assert "no stable value to compare" in alone.reason
    judged = judge(
        WINDOW,
        _track(400, p99=30),
        _track(0),
        {"latency_p99_ms": slow},
        min_requests=50,
        fallback_stable=_track(300, p99=20),
    )
    assert judged.outcome is Outcome.FAILED
    assert judged.verdict is not None
    assert any("last window stands in" in note for note in judged.verdict.notes)


def test_prediction_drift_is_psi_between_the_tracks_predicted_classes() -> None:
    same = {"0": 100.0, "1": 100.0, "2": 100.0}
    shifted = {"0": 250.0, "1": 25.0, "2": 25.0}
    limit = {"prediction_drift_psi": Threshold(max=0.2)}
    calm = judge(
        WINDOW, _track(300, predictions=same), _track(300, predictions=same), limit, min_requests=50
    )
    assert calm.outcome is Outcome.PASSED
    assert calm.measurements["canary"]["prediction_drift_psi"] == 0.0
    moved = judge(
        WINDOW,
        _track(300, predictions=shifted),
        _track(300, predictions=same),
        limit,
        min_requests=50,
    )
    assert moved.outcome is Outcome.FAILED
    assert (moved.measurements["canary"]["prediction_drift_psi"] or 0) > 0.2


def test_input_drift_is_psi_of_input_bins_against_the_training_reference() -> None:
    reference = {"f0": {"0": 0.5, "1": 0.5}, "f1": {"0": 0.25, "1": 0.75}}
    matching = {"f0": {"0": 50.0, "1": 50.0}, "f1": {"0": 25.0, "1": 75.0}}
    values = values_of(_track(100, input_bins=matching, reference=reference), 60)
    assert values["drift_psi_max"] == 0.0
    skewed = {"f0": {"0": 95.0, "1": 5.0}, "f1": {"0": 25.0, "1": 75.0}}
    drifted = values_of(_track(100, input_bins=skewed, reference=reference), 60)
    assert (drifted["drift_psi_max"] or 0) > 0.5
    assert (drifted["drift_psi_mean"] or 0) < (drifted["drift_psi_max"] or 0)


numbers = st.one_of(
    st.none(),
    st.just(float("nan")),
    st.just(float("inf")),
    st.floats(min_value=0, max_value=1e9),
)


@settings(max_examples=300, deadline=None)
@given(
    canary_requests=numbers,
    canary_errors=numbers,
    stable_requests=numbers,
    p99=numbers,
    min_requests=st.integers(min_value=1, max_value=1000),
)
def test_the_judge_never_raises_and_never_passes_without_enough_traffic(
    canary_requests: float | None,
    canary_errors: float | None,
    stable_requests: float | None,
    p99: float | None,
    min_requests: int,
) -> None:
    canary = TrackData(
        requests=canary_requests, errors=canary_errors, latency_ms={"latency_p99_ms": p99}
    )
    stable = TrackData(requests=stable_requests, errors=0, latency_ms={"latency_p99_ms": 10.0})
    result = judge(
        WINDOW,
        canary,
        stable,
        {
            "error_rate": Threshold(max=0.01),
            "latency_p99_ms": Threshold(max=100, vs_baseline=ThresholdBaseline(max_regression=50)),
        },
        min_requests=min_requests,
    )
    usable = canary_requests is not None and math.isfinite(canary_requests)
    if not usable or (canary_requests or 0) < min_requests:
        assert result.outcome is Outcome.INCONCLUSIVE
    if result.outcome is Outcome.PASSED:
        assert result.verdict is not None and result.verdict.passed
        assert result.samples["canary"] >= min_requests
