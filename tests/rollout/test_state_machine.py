"""The rollout state machine (planning.rollout) on a fake clock: every transition, and the
judgement rules of docs/rollout.md (fail closed, limits, windows after the weight change).

The analysis answers come from the gate's own code (planning.gate.decide), as the live
analysis builds them, so failure lines are the real ones.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from mlops_sessions.config import LIVE_METRICS, Threshold, ThresholdBaseline
from mlops_sessions.planning import gate, istio_routing
from mlops_sessions.planning import rollout as r
from mlops_sessions.planning import rollout_objects as ro
from mlops_sessions.planning.live_analysis import AnalysisResult, Outcome, Window

STABLE = "reg/app@sha256:" + "a" * 64
CANARY = "reg/app@sha256:" + "b" * 64
T0 = 1_800_000_000.0


@dataclass
class Clock:
    now: float = T0

    def advance(self, seconds: float) -> float:
        self.now += seconds
        return self.now


def limits(**kw: float) -> r.Limits:
    values = {"interval_s": 60.0, "min_requests": 20, "failure_limit": 1,
              "inconclusive_limit": 3, "error_limit": 3, **kw}  # fmt: skip
    return r.Limits(**values)  # type: ignore[arg-type]


def started(clock: Clock, steps: tuple[int, ...] = (10, 50, 100), **kw: float) -> r.RolloutState:
    state = r.begin(
        model="digits",
        revision=7,
        spec_hash="spec",
        steps=steps,
        stable_image=STABLE,
        canary_image=CANARY,
        limits=limits(**kw),
        now=clock.now,
        driver="ci@runner pid 1",
    )
    return r.weight_applied(state, clock.advance(2))


THRESHOLDS = {
    "error_rate": Threshold(max=0.01, vs_baseline=ThresholdBaseline(max_regression=0.005))
}


def result(
    state: r.RolloutState, outcome: Outcome, *, error_rate: float = 0.0, canary: int = 500
) -> AnalysisResult:
    window = state.window()
    verdict = None
    if outcome in (Outcome.PASSED, Outcome.FAILED):
        verdict = gate.decide(
            {"error_rate": error_rate}, THRESHOLDS, LIVE_METRICS, {"error_rate": 0.001},
            baseline_label="stable over the same window",
        )  # fmt: skip
        assert verdict.passed == (outcome is Outcome.PASSED)
    return AnalysisResult(
        outcome,
        window,
        measurements={"canary": {"error_rate": error_rate}, "stable": {"error_rate": 0.001}},
        samples={"canary": canary, "stable": 4000},
        verdict=verdict,
        reason="" if outcome is Outcome.PASSED else f"{outcome.value} for a reason",
    )


def at_due(clock: Clock, state: r.RolloutState) -> float:
    assert state.due_at is not None
    clock.now = max(clock.now, state.due_at)
    return clock.now


# --- begin / apply ------------------------------------------------------------------------


def test_begin_starts_at_the_first_step_whose_weight_is_not_applied_yet() -> None:
    clock = Clock()
    state = r.begin(model="digits", revision=7, spec_hash="s", steps=(10, 50, 100),
                    stable_image=STABLE, canary_image=CANARY, limits=limits(),
                    now=clock.now)  # fmt: skip
    assert state.phase == r.PROGRESSING and state.step == 0
    assert state.weights == {"stable": 90, "canary": 10}
    assert state.needs_apply() and state.window_start is None
    assert state.stable_digest == "sha256:" + "a" * 64 and state.canary_digest.endswith("b" * 64)
    with pytest.raises(r.RolloutError, match="no window yet"):
        state.window()


def test_begin_refuses_no_steps() -> None:
    with pytest.raises(r.RolloutError, match=r"needs rollout\.steps"):
        r.begin(model="m", revision=1, spec_hash="s", steps=(), stable_image=STABLE,
                canary_image=CANARY, limits=limits(), now=T0)  # fmt: skip


def test_weight_applied_opens_the_window_at_the_moment_of_the_change() -> None:
    clock = Clock()
    state = started(clock)
    assert state.step_started_at == clock.now == state.window_start
    assert state.due_at == clock.now + 60
    assert state.window() == Window(clock.now, clock.now + 60, 0, 10)
    assert not state.needs_apply()


# --- judging -------------------------------------------------------------------------------


def test_a_pass_advances_to_the_next_step_which_must_be_applied_before_it_is_judged() -> None:
    clock = Clock()
    state = started(clock)
    state = r.judge(state, result(state, Outcome.PASSED), at_due(clock, state))
    assert (state.phase, state.step, state.weights) == (
        r.PROGRESSING,
        1,
        {"stable": 50, "canary": 50},
    )
    assert state.needs_apply() and state.due_at is None
    assert len(state.measurements) == 1 and state.measurements[0]["judged"] == "passed"
    with pytest.raises(r.RolloutError, match="before the step's weight was applied"):
        r.judge(state, result(r.weight_applied(state, clock.now), Outcome.PASSED), clock.now)


def test_the_last_pass_promotes() -> None:
    clock = Clock()
    state = started(clock, steps=(50, 100))
    state = r.judge(state, result(state, Outcome.PASSED), at_due(clock, state))
    state = r.weight_applied(state, clock.advance(1))
    state = r.judge(state, result(state, Outcome.PASSED), at_due(clock, state))
    assert state.phase == r.PROMOTING and state.ended_by == "analysis"
    assert "every step passed" in state.reason
    done = r.promoted(state, clock.advance(5))
    assert done.phase == r.PROMOTED and done.terminal and not done.done
    assert done.weights == {"stable": 100, "canary": 0}
    assert done.stable_image == CANARY
    assert r.settle(done, clock.now).done


def test_a_failed_window_at_the_limit_aborts_with_metric_value_bound_step_and_window() -> None:
    clock = Clock()
    state = started(clock)
    state = r.judge(state, result(state, Outcome.PASSED), at_due(clock, state))
    state = r.weight_applied(state, clock.advance(1))
    window = state.window()
    state = r.judge(state, result(state, Outcome.FAILED, error_rate=0.2), at_due(clock, state))
    assert state.phase == r.ABORTED and state.failures == 1 and state.ended_by == "analysis"
    assert state.weights == {"stable": 100, "canary": 0}
    line = state.reason
    assert line.startswith("error_rate = 0.2 (bound <= 0.01; regression <= 0.005)"), line
    assert "step 2/3 (canary 50%)" in line
    assert r.clock_text(window.start) in line and r.clock_text(window.end) in line
    assert "above the maximum 0.01" in line


def test_failures_below_the_limit_judge_the_next_window_back_to_back() -> None:
    clock = Clock()
    state = started(clock, failure_limit=2)
    first = state.window()
    state = r.judge(state, result(state, Outcome.FAILED, error_rate=0.2), at_due(clock, state))
    assert state.phase == r.PROGRESSING and state.failures == 1 and state.step == 0
    assert state.window_start == first.end and state.due_at == first.end + 60
    state = r.judge(state, result(state, Outcome.FAILED, error_rate=0.2), at_due(clock, state))
    assert state.phase == r.ABORTED and state.failures == 2


def test_failures_count_over_the_whole_rollout_not_in_a_row() -> None:
    clock = Clock()
    state = started(clock, failure_limit=2)
    state = r.judge(state, result(state, Outcome.FAILED, error_rate=0.2), at_due(clock, state))
    state = r.judge(state, result(state, Outcome.PASSED), at_due(clock, state))
    state = r.weight_applied(state, clock.advance(1))
    state = r.judge(state, result(state, Outcome.FAILED, error_rate=0.2), at_due(clock, state))
    assert state.phase == r.ABORTED and state.failures == 2


def test_inconclusive_never_passes_and_more_than_the_limit_in_a_row_aborts() -> None:
    clock = Clock()
    state = started(clock, inconclusive_limit=2)
    for count in (1, 2):
        state = r.judge(state, result(state, Outcome.INCONCLUSIVE), at_due(clock, state))
        assert state.phase == r.PROGRESSING and state.step == 0
        assert state.inconclusive_in_row == count
    state = r.judge(state, result(state, Outcome.INCONCLUSIVE), at_due(clock, state))
    assert state.phase == r.ABORTED
    assert state.reason.startswith("3 inconclusive windows in a row (inconclusive_limit 2)")


def test_a_pass_resets_the_inconclusive_and_error_runs() -> None:
    clock = Clock()
    state = started(clock, inconclusive_limit=1, error_limit=1)
    state = r.judge(state, result(state, Outcome.INCONCLUSIVE), at_due(clock, state))
    state = r.judge(state, result(state, Outcome.ERROR), at_due(clock, state))
    assert (state.inconclusive_in_row, state.errors_in_row) == (1, 1)
    state = r.judge(state, result(state, Outcome.PASSED), at_due(clock, state))
    assert (state.inconclusive_in_row, state.errors_in_row, state.step) == (0, 0, 1)


def test_a_pass_with_too_few_canary_requests_is_inconclusive() -> None:
    clock = Clock()
    state = started(clock, min_requests=20)
    state = r.judge(state, result(state, Outcome.PASSED, canary=19), at_due(clock, state))
    assert state.step == 0 and state.inconclusive_in_row == 1
    assert state.measurements[-1]["outcome"] == "passed"
    assert state.measurements[-1]["judged"] == "inconclusive"
    assert "only 19 canary requests" in state.reason


def test_a_canary_without_traffic_is_never_promoted() -> None:
    clock = Clock()
    state = started(clock, steps=(100,), inconclusive_limit=5)
    phases = []
    while not state.terminal:
        state = r.judge(state, result(state, Outcome.PASSED, canary=0), at_due(clock, state))
        phases.append(state.phase)
    assert r.PROMOTING not in phases and state.phase == r.ABORTED
    assert len(state.measurements) == 6


def test_prometheus_errors_retry_the_same_window_and_more_than_the_limit_abort() -> None:
    clock = Clock()
    state = started(clock, error_limit=2)
    window = state.window()
    for count in (1, 2):
        moment = at_due(clock, state)
        state = r.judge(state, result(state, Outcome.ERROR), moment)
        assert state.phase == r.PROGRESSING and state.errors_in_row == count
        assert state.window() == window  # the same window is asked again
        assert state.due_at == moment + r.error_retry_s(state.limits)
    state = r.judge(state, result(state, Outcome.ERROR), at_due(clock, state))
    assert state.phase == r.ABORTED
    assert state.reason.startswith("3 Prometheus errors in a row (error_limit 2)")


def test_error_retry_is_a_quarter_interval_within_bounds() -> None:
    assert r.error_retry_s(limits(interval_s=1)) == 0.25
    assert r.error_retry_s(limits(interval_s=0.2)) == 0.2
    assert r.error_retry_s(limits(interval_s=3600)) == 30.0


def test_a_window_reaching_back_before_the_weight_change_is_refused() -> None:
    clock = Clock()
    state = started(clock)
    early = Window(state.step_started_at - 5, state.step_started_at + 55, 0, 10)  # type: ignore[operator]
    with pytest.raises(r.RolloutError, match="reaches back before the weight change"):
        r.judge(state, AnalysisResult(Outcome.PASSED, early, samples={"canary": 99}), clock.now)


# --- operator and driver transitions -------------------------------------------------------


def test_promote_skips_the_remaining_steps() -> None:
    clock = Clock()
    state = r.promote(started(clock), clock.advance(3), by="mlops promote (alice)")
    assert state.phase == r.PROMOTING and state.ended_by == "mlops promote (alice)"
    assert state.reason == "promoted by mlops promote (alice) at step 1/3"
    with pytest.raises(r.RolloutError, match="cannot promote"):
        r.promote(state, clock.now)


def test_promoted_needs_promoting() -> None:
    clock = Clock()
    with pytest.raises(r.RolloutError, match="cannot finish a promotion"):
        r.promoted(started(clock), clock.now)


@pytest.mark.parametrize("phase", ["progressing", "promoting"])
def test_abort_goes_to_100_percent_stable_from_any_live_phase(phase: str) -> None:
    clock = Clock()
    state = started(clock)
    if phase == "promoting":
        state = r.promote(state, clock.now)
    state = r.abort(state, "interrupted by SIGTERM: aborted", clock.advance(1), by="signal")
    assert (state.phase, state.ended_by) == (r.ABORTED, "signal")
    assert state.weights == {"stable": 100, "canary": 0} and state.due_at is None
    with pytest.raises(r.RolloutError, match="already ended"):
        r.abort(state, "again", clock.now)
    with pytest.raises(r.RolloutError, match="cannot judge"):
        r.judge(state, result(started(clock), Outcome.PASSED), clock.now)


def test_fail_records_an_apply_failure() -> None:
    clock = Clock()
    state = r.fail(started(clock), "step 1 could not be applied: rollout failed", clock.now)
    assert (state.phase, state.ended_by, state.weights["canary"]) == (r.FAILED, "apply", 0)
    with pytest.raises(r.RolloutError):
        r.fail(state, "again", clock.now)


def test_settle_needs_an_end() -> None:
    clock = Clock()
    with pytest.raises(r.RolloutError, match="cannot settle"):
        r.settle(started(clock), clock.now)
    aborted = r.abort(started(clock), "x", clock.now)
    assert not aborted.done and r.settle(aborted, clock.now).done


def test_state_survives_its_record_round_trip() -> None:
    clock = Clock()
    state = started(clock)
    state = r.judge(state, result(state, Outcome.PASSED), at_due(clock, state))
    again = r.RolloutState.from_dict(json.loads(json.dumps(state.as_dict())))
    assert again == state
    assert again.last_measurements() == {
        "canary": {"error_rate": 0.0},
        "stable": {"error_rate": 0.001},
    }


# --- the timing promises, simulated on the fake clock --------------------------------------


def drive(clock: Clock, state: r.RolloutState, judge_as: Outcome, apply_s: float) -> r.RolloutState:
    """A driver loop on the fake clock: apply takes apply_s, windows are judged when due."""
    while not state.terminal and state.phase != r.PROMOTING:
        if state.needs_apply():
            state = r.weight_applied(state, clock.advance(apply_s))
            continue
        window = state.window()
        assert window.start >= state.step_started_at  # type: ignore[operator]
        rate = 0.2 if judge_as is Outcome.FAILED else 0.0
        state = r.judge(state, result(state, judge_as, error_rate=rate), at_due(clock, state))
    return state


@pytest.mark.parametrize("failure_limit", [1, 2, 3])
def test_a_bad_canary_ends_within_failure_limit_intervals(failure_limit: int) -> None:
    clock = Clock()
    state = started(clock, failure_limit=failure_limit)
    changed = state.step_started_at
    state = drive(clock, state, Outcome.FAILED, apply_s=0.5)
    assert state.phase == r.ABORTED
    # The abort decision falls exactly at failure_limit x interval after the weight change;
    # the driver then makes one apply (the VirtualService to 100 % stable).
    assert clock.now - changed == pytest.approx(failure_limit * 60)  # type: ignore[operator]


def test_a_healthy_canary_promotes_after_len_steps_intervals_plus_applies() -> None:
    clock = Clock()
    start = clock.now
    state = started(clock)
    state = drive(clock, state, Outcome.PASSED, apply_s=0.5)
    assert state.phase == r.PROMOTING
    assert clock.now - start == pytest.approx(3 * 60 + 2 + 2 * 0.5)


# --- what each phase applies --------------------------------------------------------------


def objects() -> list[dict]:  # type: ignore[type-arg]
    dest = {"host": "digits.ml.svc.cluster.local", "port": {"number": 8501}}
    return [
        {"kind": "Deployment", "metadata": {"name": "digits-stable"}, "spec": {"replicas": 2}},
        {"kind": "Deployment", "metadata": {"name": "digits-canary"}, "spec": {"replicas": 1}},
        {
            "kind": "VirtualService",
            "metadata": {"name": "digits"},
            "spec": {"http": [{"name": "weighted", "route": [
                {"destination": {**dest, "subset": "stable"}, "weight": 100},
                {"destination": {**dest, "subset": "canary"}, "weight": 0},
            ]}]},
        },
    ]  # fmt: skip


AB = [{"headers": {"x-canary": {"exact": "always"}}}]


def routes(objs: list[dict]) -> list[dict]:  # type: ignore[type-arg]
    return next(o for o in objs if o["kind"] == "VirtualService")["spec"]["http"]  # type: ignore[no-any-return]


def test_during_a_step_the_split_is_the_steps_and_the_ab_cohort_goes_to_the_canary() -> None:
    during = ro.during(objects(), 50, 3, AB)
    http = routes(during)
    assert http[0]["name"] == istio_routing.AB_ROUTE and http[0]["match"] == AB
    assert [d["destination"]["subset"] for d in http[0]["route"]] == ["canary"]
    assert {d["destination"]["subset"]: d["weight"] for d in http[1]["route"]} == {
        "stable": 50,
        "canary": 50,
    }
    assert during[1]["spec"]["replicas"] == 3


def test_steady_state_is_all_stable_without_ab_and_the_canary_at_zero() -> None:
    steady = ro.steady_state(ro.during(objects(), 50, 3, AB))
    http = routes(steady)
    assert [h["name"] for h in http] == ["weighted"]
    assert {d["destination"]["subset"]: d["weight"] for d in http[0]["route"]} == {
        "stable": 100,
        "canary": 0,
    }
    assert steady[1]["spec"]["replicas"] == 0


def test_promotion_rolls_stable_first_then_routes_then_scales_the_canary_down() -> None:
    stages = ro.promotion_stages(ro.steady_state(objects()))
    names = [[o["metadata"]["name"] + "/" + o["kind"] for o in objs] for _, objs in stages]
    assert names[0] == ["digits-stable/Deployment"]
    assert names[1] == ["digits/VirtualService"]
    assert names[2] == ["digits-canary/Deployment"]


def test_spec_hash_follows_steps_and_analysis() -> None:
    from mlops_sessions.config.loader import loads

    base = """
apiVersion: mlops/v1alpha1
project: {name: p}
images: {serve: {repository: r, base: {variant: cpu, tensorflow: "2.21.0"}}}
models:
  m:
    image: serve
    rollout:
      hosts: [m.example.com]
      canary: {}
      steps: STEPS
      analysis: {prometheus: "http://prom:9090", interval: 1m}
"""
    one = loads(base.replace("STEPS", "[10, 100]")).models["m"]
    same = loads(base.replace("STEPS", "[10, 100]")).models["m"]
    other = loads(base.replace("STEPS", "[20, 100]")).models["m"]
    assert r.spec_hash(one) == r.spec_hash(same) != r.spec_hash(other)
    assert r.Limits.of(one).interval_s == 60
