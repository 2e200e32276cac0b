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

import copy
import dataclasses
import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from mlops_sessions.config import SHARED_METRICS, ModelConfig, units
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

AB_ROUTE = "ab-canary"
WEIGHTED_ROUTE = "weighted"
# The gRPC port's routes (istio_routing): the same split, matched by port, ahead of the rest.
GRPC_AB_ROUTE = "grpc-ab-canary"
GRPC_WEIGHTED_ROUTE = "grpc-weighted"

Manifest = dict[str, Any]


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


# --- what the rollout applies -------------------------------------------------------------


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


def plain(value: Any) -> Any:
    """Dataclasses and (read-only) mappings as JSON-ready dicts and lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    return value


def progressive(model: ModelConfig) -> bool:
    """Whether deploys of model go through the steps (``rollout.steps`` non-empty)."""
    return model.rollout is not None and bool(model.rollout.steps)


def _find(objects: Sequence[Manifest], kind: str, suffix: str = "") -> Manifest | None:
    for obj in objects:
        if obj.get("kind") == kind and str(obj["metadata"]["name"]).endswith(suffix):
            return obj
    return None


def _routes(vs: Manifest) -> list[Manifest]:
    return list((vs.get("spec") or {}).get("http") or [])


def _weighted(vs: Manifest, weights: Mapping[str, int]) -> Manifest:
    """The weighted route of vs with new weights (a canary destination added if absent)."""
    return _reweighted(_routes(vs)[-1], weights)


def _reweighted(route: Manifest, weights: Mapping[str, int]) -> Manifest:
    """route with new weights (a canary destination added if absent)."""
    route = copy.deepcopy(route)
    dests = route.get("route") or []
    stable = next(d for d in dests if d["destination"].get("subset") == "stable")
    canary = next((d for d in dests if d["destination"].get("subset") == "canary"), None)
    if canary is None:
        canary = copy.deepcopy(stable)
        canary["destination"]["subset"] = "canary"
    stable["weight"] = weights["stable"]
    canary["weight"] = weights["canary"]
    route["route"] = [stable, canary]
    return route


def with_weights(
    objects: Sequence[Manifest], weights: Mapping[str, int], ab: Sequence[Manifest] = ()
) -> list[Manifest]:
    """objects with the VirtualService split by weights; ab: the A/B matches to keep
    sending to the canary (empty: no A/B route)."""
    out = copy.deepcopy(list(objects))
    vs = _find(out, "VirtualService")
    if vs is None:
        return out
    weighted = _weighted(vs, weights)
    http: list[Manifest] = []
    grpc = next((r for r in _routes(vs) if r.get("name") == GRPC_WEIGHTED_ROUTE), None)
    if grpc is not None:
        grpc = _reweighted(grpc, weights)
        if ab:
            port = grpc["match"][0]["port"]
            canary = copy.deepcopy(next(d for d in grpc["route"] if _subset(d) == "canary"))
            canary["weight"] = 100
            http.append(
                {
                    "name": GRPC_AB_ROUTE,
                    "match": [{**dict(m), "port": port} for m in ab],
                    "route": [canary],
                }
            )
        http.append(grpc)
    if ab:
        canary = copy.deepcopy(next(d for d in weighted["route"] if _subset(d) == "canary"))
        canary["weight"] = 100
        http.append({"name": AB_ROUTE, "match": [dict(m) for m in ab], "route": [canary]})
    http.append(weighted)
    vs["spec"]["http"] = http
    return out


def _subset(destination: Mapping[str, Any]) -> str:
    return str((destination.get("destination") or {}).get("subset"))


def with_canary_replicas(objects: Sequence[Manifest], replicas: int) -> list[Manifest]:
    out = copy.deepcopy(list(objects))
    canary = _find(out, "Deployment", "-canary")
    if canary is not None:
        canary["spec"]["replicas"] = replicas
    return out


def steady_state(objects: Sequence[Manifest]) -> list[Manifest]:
    """Outside a rollout: 100 % stable, no A/B route (the canary runs nothing), canary at 0."""
    return with_canary_replicas(with_weights(objects, step_weights(0)), 0)


def during(
    objects: Sequence[Manifest], canary_weight: int, canary_replicas: int, ab: Sequence[Manifest]
) -> list[Manifest]:
    """What runs during a step: the canary up, the split at the step's weight, A/B kept."""
    return with_canary_replicas(
        with_weights(objects, step_weights(canary_weight), ab), canary_replicas
    )


def only(objects: Sequence[Manifest], kinds_and_names: Sequence[tuple[str, str]]) -> list[Manifest]:
    """The objects whose (kind, name suffix) is listed, in the listed order."""
    out = []
    for kind, suffix in kinds_and_names:
        obj = _find(objects, kind, suffix)
        if obj is not None:
            out.append(copy.deepcopy(obj))
    return out


def promotion_stages(final: Sequence[Manifest]) -> list[tuple[str, list[Manifest]]]:
    """The order a promotion applies the promoted set in, each stage waited for before the
    next: stable takes the canary's build and rolls out (the split untouched), then 100 %
    stable, then the canary to 0. Objects a stage leaves out are not touched by it."""
    rest = [
        copy.deepcopy(o)
        for o in final
        if o.get("kind") != "VirtualService"
        and not (o.get("kind") == "Deployment" and str(o["metadata"]["name"]).endswith("-canary"))
    ]
    return [
        ("stable takes the canary's build", rest),
        ("100% stable", only(final, [("VirtualService", "")])),
        # The rest of final went out in the stages before: only the canary is left.
        ("canary scaled to 0", only(final, [("Deployment", "-canary")])),
    ]


def step_plan(
    objects: Sequence[Manifest], steps: Sequence[int], canary_replicas: int, ab: Sequence[Manifest]
) -> list[tuple[str, list[Manifest]]]:
    """(name, objects it changes) for each step, then promote and abort: what `mlops render`
    shows of a rollout. The first step also scales the canary up."""
    plan: list[tuple[str, list[Manifest]]] = []
    for index, weight in enumerate(steps):
        changed = during(objects, weight, canary_replicas, ab)
        picks = [("VirtualService", "")]
        if index == 0:
            picks.insert(0, ("Deployment", "-canary"))
        plan.append((f"step-{index + 1}-canary-{weight}", only(changed, picks)))
    final = steady_state(objects)
    plan.append(
        ("promote", only(final, [("Deployment", "-stable"), ("VirtualService", ""),
                                 ("Deployment", "-canary")]))
    )  # fmt: skip
    plan.append(("abort", only(final, [("VirtualService", ""), ("Deployment", "-canary")])))
    return plan


def canary_set(final: Sequence[Manifest], running: Sequence[Manifest]) -> list[Manifest]:
    """The objects a rollout steps through: the promoted set, but with the stable
    Deployment exactly as the running revision recorded it (stable keeps what runs now,
    byte for byte, until the promotion)."""
    stable_now = _find(running, "Deployment", "-stable")
    if stable_now is None:
        raise StepError("the running revision has no stable Deployment to keep")
    out = []
    for obj in final:
        if obj.get("kind") == "Deployment" and str(obj["metadata"]["name"]).endswith("-stable"):
            out.append(copy.deepcopy(stable_now))
        else:
            out.append(copy.deepcopy(obj))
    return out


def running_image(record: Mapping[str, Any] | None, app: str) -> str | None:
    """The stable track's image in a revision record (None: nothing runs)."""
    if not record:
        return None
    image = (record.get("images") or {}).get(f"{app}-stable")
    return str(image) if image else None


def render_plan(
    model: ModelConfig, objects: Sequence[Manifest]
) -> list[tuple[str, list[Manifest]]]:
    """What ``mlops render`` shows of model's rollout (empty without rollout.steps): per
    step the objects it applies, then the promotion's and the abort's."""
    from mlops_sessions.planning import istio_routing

    if not progressive(model):
        return []
    assert model.rollout is not None and model.rollout.canary is not None
    ab = istio_routing.ab_matches(model.rollout)
    return step_plan(objects, model.rollout.steps, model.rollout.canary.replicas, ab)
