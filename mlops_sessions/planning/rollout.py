"""The progressive rollout: its plan (the objects each step applies) and its state machine.

Pure and offline, on an injected clock: nothing here sleeps, reads a clock or talks to a
cluster. The driver (:mod:`mlops_sessions.drivers.rollout`) applies what this
module says, asks for a window to be analysed (:mod:`planning.live_analysis`) and feeds the
answer back through :func:`judge`. Every transition is a function from one
:class:`RolloutState` to the next, so each one is unit-tested on a fake clock.

Phases::

    progressing ──(every step passed / `mlops promote`)──> promoting ──> promoted
         │                                                    │
         └──(failure_limit failed windows, > inconclusive_limit inconclusive in a row,
             > error_limit Prometheus errors in a row, `mlops abort`, SIGINT/SIGTERM)
                                  ──> aborted          (an apply that fails: failed)

Judgement rules (docs/rollout.md):

- fail closed: a window with fewer than ``min_requests`` canary requests is inconclusive
  even when the analyser called it a pass, so a canary without traffic is never promoted;
- a window starts no earlier than the moment its step's weight took effect (the apply
  returned), so no sample of the previous step is judged;
- after a failed or inconclusive window the next one starts where it ended; after a
  Prometheus error the SAME window is asked again after :func:`error_retry_s`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from mlops_sessions.config import SHARED_METRICS, ModelConfig, units
from mlops_sessions.config.model import plain
from mlops_sessions.errors import StepError
from mlops_sessions.planning.gate import fmt
from mlops_sessions.planning.live_analysis import AnalysisResult, Outcome, Window

PROGRESSING = "progressing"
PROMOTING = "promoting"
PROMOTED = "promoted"
ABORTED = "aborted"
FAILED = "failed"
PHASES = (PROGRESSING, PROMOTING, PROMOTED, ABORTED, FAILED)
TERMINAL = frozenset({PROMOTED, ABORTED, FAILED})
# The rollout-state ConfigMap carries its phase as a label too, so that kube-state-metrics
# (``kube_configmap_labels`` with ``--metric-labels-allowlist``) can export it and an alert
# can say that the last rollout was aborted (planning/alerts.py).
PHASE_LABEL = "mlops-sessions.dev/rollout-phase"


class RolloutError(StepError):
    """A transition that the current phase does not allow (e.g. promoting an aborted one)."""


@dataclass(frozen=True)
class Limits:
    """The analysis settings the state machine judges with (from ``rollout.analysis``)."""

    interval_s: float
    min_requests: int = 20
    failure_limit: int = 1
    inconclusive_limit: int = 3
    error_limit: int = 3

    @classmethod
    def of(cls, model: ModelConfig) -> Limits:
        analysis = model.rollout.analysis if model.rollout is not None else None
        if analysis is None:
            raise StepError(
                f"model {model.name!r} has rollout.steps but no rollout.analysis; "
                "`mlops validate` names the fix"
            )
        return cls(
            interval_s=units.duration_seconds(analysis.interval),
            min_requests=analysis.min_requests,
            failure_limit=analysis.failure_limit,
            inconclusive_limit=analysis.inconclusive_limit,
            error_limit=analysis.error_limit,
        )


def error_retry_s(limits: Limits) -> float:
    """How long after a Prometheus error the same window is asked again.

    A quarter of the interval (at least 0.2 s, at most 30 s): quick enough that
    ``error_limit`` errors cost less than one more interval, slow enough not to hammer a
    Prometheus that is restarting.
    """
    return max(0.2, min(30.0, limits.interval_s / 4))


@dataclass(frozen=True)
class RolloutState:
    """Everything the rollout knows; recorded on the cluster and in the store after every
    transition, so ``--resume`` continues from it on any machine."""

    model: str
    revision: int  # the deploy revision this rollout brings in
    spec_hash: str  # rollout.steps + analysis + shared thresholds: resume needs the same
    steps: tuple[int, ...]
    stable_image: str  # what runs now and keeps running until promotion
    canary_image: str  # the new build
    limits: Limits
    started_at: float
    phase: str = PROGRESSING
    step: int = 0  # index into steps
    # The weights this phase applies (progressing: the step's; promoted/aborted: 100/0).
    weights: Mapping[str, int] = field(default_factory=dict)
    step_started_at: float | None = None  # when the step's weight took effect; None: not yet
    window_start: float | None = None  # start of the next window to judge
    window_end: float | None = None  # its end
    due_at: float | None = None  # when it is judged: its end, or a retry after an error
    failures: int = 0  # failed windows, over the whole rollout
    inconclusive_in_row: int = 0
    errors_in_row: int = 0
    measurements: tuple[Mapping[str, Any], ...] = ()  # AnalysisResult.as_dict() + outcome used
    reason: str = ""  # why the phase is what it is (one line)
    ended_by: str | None = None  # analysis | operator | signal | apply
    updated_at: float = 0.0
    driver: str = ""  # holder identity of the process driving it
    # Terminal and acted upon: promoted and recorded, or aborted and 100 % stable restored.
    # An aborted state that is not settled yet (the driver died while restoring) is
    # finished by `mlops deploy --resume` or `mlops abort`.
    settled: bool = False

    # --- views --------------------------------------------------------------------------
    @property
    def terminal(self) -> bool:
        return self.phase in TERMINAL

    @property
    def done(self) -> bool:
        return self.terminal and self.settled

    @property
    def canary_weight(self) -> int:
        return int(self.weights.get("canary", 0))

    @property
    def stable_digest(self) -> str:
        return digest(self.stable_image)

    @property
    def canary_digest(self) -> str:
        return digest(self.canary_image)

    def needs_apply(self) -> bool:
        """The step's weight is not on the cluster yet: the driver applies it next."""
        return self.phase == PROGRESSING and self.step_started_at is None

    def window(self) -> Window:
        """The window to judge next (valid once the step's weight was applied)."""
        if self.window_start is None or self.window_end is None:
            raise RolloutError(f"step {self.step + 1} of {self.model} has no window yet")
        return Window(self.window_start, self.window_end, self.step, self.canary_weight)

    def last_measurements(self) -> dict[str, dict[str, float | None]]:
        """Track -> metric -> the latest value measured (for `mlops status`)."""
        out: dict[str, dict[str, float | None]] = {}
        for item in self.measurements:
            for track, values in (item.get("measurements") or {}).items():
                out.setdefault(str(track), {}).update(values)
        return out

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = plain(self)
        data["stable_digest"] = self.stable_digest
        data["canary_digest"] = self.canary_digest
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RolloutState:
        names = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["steps"] = tuple(int(s) for s in values.get("steps") or ())
        values["limits"] = Limits(**dict(values["limits"]))
        values["weights"] = {str(k): int(v) for k, v in (values.get("weights") or {}).items()}
        values["measurements"] = tuple(values.get("measurements") or ())
        return cls(**values)


def digest(image: str) -> str:
    return image.split("@", 1)[1] if "@" in image else image


def step_weights(canary: int) -> dict[str, int]:
    return {"stable": 100 - canary, "canary": canary}


# --- transitions --------------------------------------------------------------------------


def begin(
    *,
    model: str,
    revision: int,
    spec_hash: str,
    steps: Sequence[int],
    stable_image: str,
    canary_image: str,
    limits: Limits,
    now: float,
    driver: str = "",
) -> RolloutState:
    """A new rollout at its first step, whose weight the driver applies next."""
    if not steps:
        raise RolloutError("a progressive rollout needs rollout.steps")
    return RolloutState(
        model=model,
        revision=revision,
        spec_hash=spec_hash,
        steps=tuple(steps),
        stable_image=stable_image,
        canary_image=canary_image,
        limits=limits,
        started_at=now,
        weights=step_weights(steps[0]),
        updated_at=now,
        driver=driver,
        reason=f"step 1/{len(steps)}: canary {steps[0]}%",
    )


def weight_applied(state: RolloutState, now: float) -> RolloutState:
    """The step's weight is live from now: the first window starts here, not earlier."""
    _need(state, PROGRESSING, "apply a step's weight")
    return dataclasses.replace(
        state,
        step_started_at=now,
        window_start=now,
        window_end=now + state.limits.interval_s,
        due_at=now + state.limits.interval_s,
        updated_at=now,
    )


def effective_outcome(state: RolloutState, result: AnalysisResult) -> tuple[Outcome, str]:
    """The analyser's outcome, made stricter where the rules demand (fail closed)."""
    if result.outcome is Outcome.PASSED:
        seen = int(result.samples.get("canary", 0))
        if seen < state.limits.min_requests:
            return Outcome.INCONCLUSIVE, (
                f"only {seen} canary requests in the window, fewer than "
                f"min_requests {state.limits.min_requests}: not judged, never a pass"
            )
    return result.outcome, result.reason


def judge(state: RolloutState, result: AnalysisResult, now: float) -> RolloutState:
    """Take one analysed window into account: advance, wait for another window, or abort."""
    _need(state, PROGRESSING, "judge a window")
    if state.step_started_at is None:
        raise RolloutError("a window was judged before the step's weight was applied")
    if result.window.start < state.step_started_at:
        raise RolloutError(
            f"window starting at {result.window.start} reaches back before the weight change "
            f"at {state.step_started_at}: it would count samples of the previous step"
        )
    outcome, reason = effective_outcome(state, result)
    record = {**result.as_dict(), "judged": outcome.value, "judged_reason": reason, "at": now}
    base = dataclasses.replace(state, measurements=(*state.measurements, record), updated_at=now)
    limits = state.limits
    where = _where(state, result.window)
    if outcome is Outcome.PASSED:
        base = dataclasses.replace(base, inconclusive_in_row=0, errors_in_row=0)
        if state.step + 1 >= len(state.steps):
            return dataclasses.replace(
                base,
                phase=PROMOTING,
                reason=f"every step passed (last: {where})",
                ended_by="analysis",
            )
        nxt = state.step + 1
        return dataclasses.replace(
            base,
            step=nxt,
            weights=step_weights(state.steps[nxt]),
            step_started_at=None,
            window_start=None,
            window_end=None,
            due_at=None,
            reason=f"step {nxt + 1}/{len(state.steps)}: canary {state.steps[nxt]}%",
        )
    if outcome is Outcome.FAILED:
        failures = state.failures + 1
        first = failure_line(result, where)
        base = dataclasses.replace(base, failures=failures, inconclusive_in_row=0, errors_in_row=0)
        if failures >= limits.failure_limit:
            return _ended(base, ABORTED, first, "analysis")
        return _next_window(base, result.window, f"{first} ({failures}/{limits.failure_limit})")
    if outcome is Outcome.INCONCLUSIVE:
        count = state.inconclusive_in_row + 1
        base = dataclasses.replace(base, inconclusive_in_row=count, errors_in_row=0)
        text = f"inconclusive {where}: {reason or 'no usable data'}"
        if count > limits.inconclusive_limit:
            return _ended(
                base,
                ABORTED,
                f"{count} inconclusive windows in a row (inconclusive_limit "
                f"{limits.inconclusive_limit}); last: {text}",
                "analysis",
            )
        return _next_window(base, result.window, text)
    # Outcome.ERROR: Prometheus could not be asked; the same window is asked again.
    count = state.errors_in_row + 1
    base = dataclasses.replace(base, errors_in_row=count)
    text = f"Prometheus error {where}: {reason or 'no answer'}"
    if count > limits.error_limit:
        return _ended(
            base,
            ABORTED,
            f"{count} Prometheus errors in a row (error_limit {limits.error_limit}); last: {text}",
            "analysis",
        )
    return dataclasses.replace(base, due_at=now + error_retry_s(limits), reason=text)


def promote(state: RolloutState, now: float, *, by: str = "operator") -> RolloutState:
    """Skip the remaining steps (``mlops promote``): stable takes the canary next."""
    _need(state, PROGRESSING, "promote")
    return dataclasses.replace(
        state,
        phase=PROMOTING,
        reason=f"promoted by {by} at step {state.step + 1}/{len(state.steps)}",
        ended_by=by,
        updated_at=now,
    )


def promoted(state: RolloutState, now: float) -> RolloutState:
    """Stable runs the canary's build, takes 100 %, the canary scaled to 0."""
    _need(state, PROMOTING, "finish a promotion")
    return dataclasses.replace(
        state,
        phase=PROMOTED,
        weights=step_weights(0),
        stable_image=state.canary_image,
        updated_at=now,
    )


def abort(state: RolloutState, reason: str, now: float, *, by: str = "operator") -> RolloutState:
    """Back to 100 % stable (``mlops abort``, a signal, ``rollback`` during a rollout)."""
    if state.terminal:
        raise RolloutError(f"the rollout of {state.model} already ended ({state.phase})")
    return _ended(dataclasses.replace(state, updated_at=now), ABORTED, reason, by)


def settle(state: RolloutState, now: float) -> RolloutState:
    """The end was acted upon (promotion recorded, or the abort's restore applied)."""
    if not state.terminal:
        raise RolloutError(f"cannot settle the rollout of {state.model}: it is {state.phase}")
    return dataclasses.replace(state, settled=True, updated_at=now)


def fail(state: RolloutState, reason: str, now: float) -> RolloutState:
    """An apply of the rollout itself failed (e.g. the canary never became ready)."""
    if state.terminal:
        raise RolloutError(f"the rollout of {state.model} already ended ({state.phase})")
    return _ended(dataclasses.replace(state, updated_at=now), FAILED, reason, "apply")


def _ended(state: RolloutState, phase: str, reason: str, by: str) -> RolloutState:
    return dataclasses.replace(
        state,
        phase=phase,
        reason=reason,
        ended_by=by,
        weights=step_weights(0),
        due_at=None,
    )


def _next_window(state: RolloutState, previous: Window, reason: str) -> RolloutState:
    # Back to back: the next window starts where the judged one ended (never earlier than
    # the weight change, which that window already respected).
    start = max(previous.end, state.step_started_at or previous.end)
    end = start + state.limits.interval_s
    return dataclasses.replace(state, window_start=start, window_end=end, due_at=end, reason=reason)


def _need(state: RolloutState, phase: str, what: str) -> None:
    if state.phase != phase:
        raise RolloutError(f"cannot {what}: the rollout of {state.model} is {state.phase}")


def clock_text(moment: float) -> str:
    return datetime.fromtimestamp(moment, timezone.utc).strftime("%H:%M:%SZ")


def _where(state: RolloutState, window: Window) -> str:
    return (
        f"at step {window.step + 1}/{len(state.steps)} (canary {window.weight}%), window "
        f"{clock_text(window.start)}-{clock_text(window.end)} ({window.seconds:.0f}s)"
    )


def failure_line(result: AnalysisResult, where: str) -> str:
    """The first line of a failed rollout: metric, value, bound, step and window."""
    verdict = result.verdict
    if verdict is not None and verdict.failed_checks:
        check = verdict.failed_checks[0]
        bound = check.threshold_text() or "its threshold"
        return f"{check.metric} = {fmt(check.value)} (bound {bound}) {where}: {check.failures[0]}"
    return f"analysis failed {where}: {result.reason or 'no reason given'}"


# --- what a resumed rollout must agree with -----------------------------------------------


def spec_hash(model: ModelConfig) -> str:
    """What a resumed rollout must still agree with: steps, analysis, shared thresholds."""
    rollout = model.rollout
    shared = {}
    if model.evaluate is not None:
        shared = {
            name: plain(bound)
            for name, bound in model.evaluate.thresholds.items()
            if name in SHARED_METRICS
        }
    doc = {
        "steps": list(rollout.steps) if rollout else [],
        "analysis": plain(rollout.analysis) if rollout and rollout.analysis else None,
        "shared": shared,
    }
    text = json.dumps(doc, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


# --- events in, actions out ---------------------------------------------------------------
# The driver reports what happened as an event; :func:`advance` returns the next state and
# what the driver must do about it, and :func:`next_move` what it does next when nothing
# happened. The driver decides nothing itself.


@dataclass(frozen=True)
class WeightApplied:
    """The step's objects are on the cluster and ready; its split is live from now."""


@dataclass(frozen=True)
class ApplyFailed:
    """Applying the step's objects failed (e.g. the canary never became ready)."""

    reason: str


@dataclass(frozen=True)
class WindowAnalysed:
    """The live analysis of the window that was due."""

    result: AnalysisResult


@dataclass(frozen=True)
class Interrupted:
    """SIGINT/SIGTERM: ``abort`` ends the rollout, ``leave`` stops driving it as it is."""

    signal: str = ""
    action: str = "abort"


@dataclass(frozen=True)
class Resumed:
    """A new driver (``mlops deploy --resume``) took over the recorded rollout."""

    driver: str


@dataclass(frozen=True)
class OperatorRequest:
    """``mlops promote`` or ``mlops abort``, by whom."""

    action: str  # promote | abort
    by: str


@dataclass(frozen=True)
class PromotionDone:
    """The promotion's stages were applied; reason is None when they all succeeded."""

    failure: str | None = None


Event = (
    WeightApplied
    | ApplyFailed
    | WindowAnalysed
    | Interrupted
    | Resumed
    | OperatorRequest
    | PromotionDone
)

# What the driver does about a transition.
RECORD = "record"  # save the state (the action's detail names the event)
ROUTE_ALL_STABLE = "route-all-stable"  # one VirtualService patch: 100 % stable, now
LEAVE = "leave"  # stop driving; the state stays recorded for --resume

# What the driver does next when no event came in (next_move).
APPLY_STEP = "apply-step"  # apply the step's weight (scaling the canary up first)
ANALYSE = "analyse"  # wait until due_at, then analyse state.window()
PROMOTE = "promote"  # apply the promotion's stages
FINISH = "finish"  # terminal: record the end, restore the previous revision if not promoted


@dataclass(frozen=True)
class Action:
    kind: str
    detail: str = ""


def next_move(state: RolloutState) -> str:
    """What the driver does next for state, when no event is pending."""
    if state.terminal:
        return FINISH
    if state.phase == PROMOTING:
        return PROMOTE
    if state.needs_apply():
        return APPLY_STEP
    return ANALYSE


def advance(
    state: RolloutState, event: Event, now: float
) -> tuple[RolloutState, tuple[Action, ...]]:
    """The state after event and the actions the driver takes for it, in order.

    Events that the phase does not allow change nothing (no action): an operator's promote
    of a rollout that is promoting already, an interrupt after the end.
    """
    if isinstance(event, Interrupted):
        if event.action == "leave":
            # Whatever the phase, the state is recorded as it is for --resume to go on from.
            return state, (Action(RECORD, "interrupted"), Action(LEAVE, event.signal))
        if state.terminal:
            return state, ()
        name = event.signal or "a signal"
        ended = abort(state, f"interrupted by {name}: aborted", now, by="signal")
        return ended, (Action(RECORD, "interrupted"),)
    if isinstance(event, OperatorRequest):
        if event.action == "abort" and not state.terminal:
            return abort(state, f"aborted by {event.by}", now, by=event.by), (
                Action(RECORD, "abort"),
            )
        if event.action == "promote" and state.phase == PROGRESSING:
            return promote(state, now, by=event.by), (Action(RECORD, "promote"),)
        return state, ()
    if isinstance(event, Resumed):
        resumed = dataclasses.replace(state, driver=event.driver, updated_at=now)
        return resumed, (Action(RECORD, "resumed"),)
    if isinstance(event, WeightApplied):
        return weight_applied(state, now), (Action(RECORD, "step"),)
    if isinstance(event, ApplyFailed):
        failed = fail(state, f"step {state.step + 1} could not be applied: {event.reason}", now)
        return failed, (Action(RECORD, "failed"),)
    if isinstance(event, WindowAnalysed):
        judged = judge(state, event.result, now)
        record = Action(RECORD, f"window-{event.result.outcome.value}")
        if judged.phase == ABORTED:
            # Traffic first, the record right after: a bad canary loses its share within
            # one apply of the verdict.
            return judged, (Action(ROUTE_ALL_STABLE), record)
        return judged, (record,)
    if isinstance(event, PromotionDone):
        done = (
            promoted(state, now)
            if event.failure is None
            else fail(state, f"promotion failed: {event.failure}", now)
        )
        return done, (Action(RECORD, done.phase),)
    raise RolloutError(f"unknown rollout event {event!r}")
