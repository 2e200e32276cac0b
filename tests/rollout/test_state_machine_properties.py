"""Properties of the rollout state machine (planning.rollout's ``advance`` / ``next_move``)
over random sequences of window verdicts, interrupts, resumes, operator requests and failed
applies, driven the way drivers.rollout drives it (on a fake clock, with every state
recorded through ``as_dict`` / ``from_dict`` as the ConfigMap keeps it).

What must hold whatever happens: the canary's weight only takes the values of
``rollout.steps``, in order; an abort (operator, signal or analysis) ends at 100 % stable;
a resume after an interrupt continues from the recorded step; a promotion ends with stable
running the canary's build at 100 %; the counters never pass the limits the config allows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_sessions.planning import rollout as r
from mlops_sessions.planning.live_analysis import AnalysisResult, Outcome

STABLE = "reg/app@sha256:" + "a" * 64
CANARY = "reg/app@sha256:" + "b" * 64
T0 = 1_800_000_000.0

# One thing that happens while a rollout runs; the verdicts only when a window is due.
VERDICTS = ("pass", "fail", "inconclusive", "error", "thin-pass")
HAPPENINGS = st.sampled_from(
    (*VERDICTS, *VERDICTS, "leave", "abort-signal", "promote", "abort", "apply-fails")
)

steps_strategy = st.lists(st.integers(min_value=1, max_value=100), min_size=1, max_size=5).map(
    lambda weights: tuple(sorted(set(weights)))
)
limits_strategy = st.builds(
    r.Limits,
    interval_s=st.sampled_from((1.0, 30.0, 60.0)),
    min_requests=st.integers(min_value=1, max_value=50),
    failure_limit=st.integers(min_value=1, max_value=3),
    inconclusive_limit=st.integers(min_value=0, max_value=3),
    error_limit=st.integers(min_value=0, max_value=3),
)


@dataclass
class Run:
    """A simulated driver: the recorded state after every transition, and what it did."""

    state: r.RolloutState
    now: float = T0
    recorded: list[dict] = field(default_factory=list)
    routed_all_stable: int = 0
    left: bool = False

    def event(self, event: r.Event) -> None:
        self.now += 1.0
        self.state, actions = r.advance(self.state, event, self.now)
        for action in actions:
            if action.kind == r.RECORD:
                # As the ConfigMap keeps it: JSON text, read back into a state.
                text = json.dumps(self.state.as_dict())
                self.recorded.append(json.loads(text))
                assert r.RolloutState.from_dict(json.loads(text)) == self.state
            elif action.kind == r.ROUTE_ALL_STABLE:
                self.routed_all_stable += 1
            elif action.kind == r.LEAVE:
                self.left = True


def _result(state: r.RolloutState, verdict: str) -> AnalysisResult:
    window = state.window()
    outcome = {
        "pass": Outcome.PASSED,
        "thin-pass": Outcome.PASSED,
        "fail": Outcome.FAILED,
        "inconclusive": Outcome.INCONCLUSIVE,
        "error": Outcome.ERROR,
    }[verdict]
    # A "thin" pass has fewer canary requests than min_requests: fail closed, inconclusive.
    seen = state.limits.min_requests - 1 if verdict == "thin-pass" else state.limits.min_requests
    return AnalysisResult(outcome, window, samples={"canary": seen, "stable": 100}, reason=verdict)


def _check_invariants(state: r.RolloutState, steps: tuple[int, ...]) -> None:
    limits = state.limits
    assert state.phase in r.PHASES
    assert 0 <= state.step < len(steps)
    assert state.weights["stable"] + state.weights["canary"] == 100
    if state.phase == r.PROGRESSING:
        assert state.canary_weight == steps[state.step]
    if state.phase in (r.ABORTED, r.FAILED):
        assert state.weights == {"stable": 100, "canary": 0}
    if state.phase == r.PROMOTED:
        assert state.weights == {"stable": 100, "canary": 0}
        assert state.stable_image == CANARY
    assert state.failures <= limits.failure_limit
    assert state.inconclusive_in_row <= limits.inconclusive_limit + 1
    assert state.errors_in_row <= limits.error_limit + 1
    if state.window_start is not None and state.step_started_at is not None:
        assert state.window_start >= state.step_started_at


def _drive(steps: tuple[int, ...], limits: r.Limits, happenings: list[str]) -> Run:
    run = Run(
        r.begin(
            model="digits",
            revision=3,
            spec_hash="spec",
            steps=steps,
            stable_image=STABLE,
            canary_image=CANARY,
            limits=limits,
            now=T0,
            driver="first",
        )
    )
    for happening in happenings:
        state = run.state
        move = r.next_move(state)
        if move == r.FINISH:
            break
        before_step, before_phase = state.step, state.phase
        if happening == "leave":
            run.event(r.Interrupted("SIGTERM", "leave"))
            assert run.left and run.state == state
            # Another process reads the record and resumes: the same step and weights.
            recorded = r.RolloutState.from_dict(run.recorded[-1])
            run.left = False
            run.state = recorded
            run.event(r.Resumed("second"))
            assert (run.state.step, run.state.weights) == (state.step, state.weights)
            assert run.state.phase == state.phase and run.state.driver == "second"
        elif happening in ("abort", "abort-signal"):
            event: r.Event = (
                r.OperatorRequest("abort", "alice")
                if happening == "abort"
                else r.Interrupted("SIGINT", "abort")
            )
            run.event(event)
            assert run.state.phase == r.ABORTED
            assert run.state.weights == {"stable": 100, "canary": 0}
        elif happening == "promote":
            run.event(r.OperatorRequest("promote", "bob"))
            if before_phase == r.PROGRESSING:
                assert run.state.phase == r.PROMOTING
            else:
                assert run.state == state  # promoting already: nothing changes
        elif move == r.PROMOTE:
            failure = "canary never ready" if happening == "apply-fails" else None
            run.event(r.PromotionDone(failure))
            assert run.state.phase == (r.FAILED if failure else r.PROMOTED)
        elif move == r.APPLY_STEP:
            if happening == "apply-fails":
                run.event(r.ApplyFailed("canary never ready"))
                assert run.state.phase == r.FAILED
            else:
                run.event(r.WeightApplied())
                assert run.state.step_started_at == run.now
        elif happening in VERDICTS:
            run.now = max(run.now, state.due_at or run.now)
            run.event(r.WindowAnalysed(_result(state, happening)))
            if run.state.phase == r.ABORTED:
                assert run.routed_all_stable >= 1  # traffic moved before the record
        _check_invariants(run.state, steps)
        # The step index moves only forward, one step at a time.
        assert run.state.step in (before_step, before_step + 1)
    return run


@settings(max_examples=300, deadline=None)
@given(steps=steps_strategy, limits=limits_strategy, happenings=st.lists(HAPPENINGS, max_size=40))
def test_any_sequence_of_events_keeps_the_rollout_within_its_config(
    steps: tuple[int, ...], limits: r.Limits, happenings: list[str]
) -> None:
    run = _drive(steps, limits, happenings)
    # Every recorded canary weight is a step of the config (or 0 once ended), in order.
    weights = [rec["weights"]["canary"] for rec in run.recorded]
    progressing = [rec for rec in run.recorded if rec["phase"] == r.PROGRESSING]
    assert set(weights) <= {*steps, 0}
    indexes = [rec["step"] for rec in progressing]
    assert indexes == sorted(indexes)
    assert all(rec["weights"]["canary"] == steps[rec["step"]] for rec in progressing)


@settings(max_examples=200, deadline=None)
@given(steps=steps_strategy, limits=limits_strategy)
def test_passing_every_window_promotes_the_canary_as_stable(
    steps: tuple[int, ...], limits: r.Limits
) -> None:
    run = _drive(steps, limits, ["pass"] * (3 * len(steps) + 2))
    assert run.state.phase == r.PROMOTED
    assert run.state.stable_image == CANARY
    assert run.state.weights == {"stable": 100, "canary": 0}
    # Each step's weight was live once, in the config's order.
    live = [rec["weights"]["canary"] for rec in run.recorded if rec["phase"] == r.PROGRESSING]
    assert list(dict.fromkeys(live)) == list(steps)


@settings(max_examples=200, deadline=None)
@given(
    steps=steps_strategy,
    limits=limits_strategy,
    before=st.lists(st.sampled_from(VERDICTS), max_size=10),
)
def test_an_abort_from_any_live_state_ends_at_all_stable(
    steps: tuple[int, ...], limits: r.Limits, before: list[str]
) -> None:
    run = _drive(steps, limits, before)
    if run.state.terminal:
        return
    run.event(r.OperatorRequest("abort", "alice"))
    assert run.state.phase == r.ABORTED and run.state.ended_by == "alice"
    assert run.state.weights == {"stable": 100, "canary": 0}
    assert r.next_move(run.state) == r.FINISH
    # Once ended, nothing moves it again: a late promote or interrupt changes nothing.
    ended = run.state
    for late in (r.OperatorRequest("promote", "bob"), r.Interrupted("SIGINT", "abort")):
        assert r.advance(ended, late, run.now + 5) == (ended, ())
