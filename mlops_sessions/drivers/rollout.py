"""Drive a progressive rollout on the cluster: the canary's steps, the live analysis, and
the promotion or the abort at the end.

The decisions are :mod:`mlops_sessions.planning.rollout`'s (a pure state machine: the
driver reports each event to ``advance`` and carries out the actions it returns, and asks
``next_move`` what to do when nothing happened); this module only acts on them, under the
model's deploy Lease (:mod:`mlops_sessions.executors.kube.lease`). The objects each step
applies come from :mod:`mlops_sessions.planning.rollout_objects`; the records are kept by
:mod:`mlops_sessions.drivers.rollout_records`:

1. the revision is recorded first (status ``progressing``, its manifests the promoted set,
   plus the canary set it steps through), then the rollout state, in the ConfigMap
   ``<model>-mlops-rollout`` and in the store (:mod:`records.rollouts`);
2. each step scales the canary up (new build) and waits for it, then sets the
   VirtualService's split; the window starts when that apply returned;
3. at the end of each window the injected ``analyse(window)`` is asked (Prometheus in
   production, a fake in tests) and the answer is judged;
4. promoting: stable takes the canary's build and rolls out, then 100 % stable, then the
   canary goes to 0; aborting: 100 % stable first (one VirtualService patch), then the
   previous revision's objects with the canary at 0.

Between ticks the driver renews the Lease (so a driver killed with SIGKILL frees it within
its short margin and ``--resume`` takes over), reads operator requests (``mlops promote``,
``mlops abort``) from the rollout ConfigMap, and looks at its interrupt flag (SIGINT /
SIGTERM, set by the step): by default an interrupt aborts cleanly.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from mlops_sessions.drivers.deploy import ApplyRequest, find_record, new_record
from mlops_sessions.drivers.history import ClusterHistory, Record, StoreHistory, now
from mlops_sessions.drivers.rollout_records import (
    RolloutRecords,
    unfinished_text,
)
from mlops_sessions.errors import StepError
from mlops_sessions.executors.kube.apply import apply_objects
from mlops_sessions.executors.kube.client import Cluster, KubeError
from mlops_sessions.executors.kube.lease import DeployLocked, deploy_lock, holder_of, renew
from mlops_sessions.planning import rollout as plan
from mlops_sessions.planning import rollout_objects as objects_plan
from mlops_sessions.planning.deploy_plan import ObjectRef, next_revision, ref
from mlops_sessions.planning.live_analysis import AnalysisResult, Outcome, Window
from mlops_sessions.records import keys
from mlops_sessions.records.store import Store

Analyse = Callable[[Window], AnalysisResult]
Progress = Callable[[str], None]
Manifest = dict[str, Any]

LEASE_MARGIN_S = 30  # a killed driver's lease expires this long after its last renewal
REQUEST_POLL_S = 1.0  # how often the driver looks for `mlops promote` / `mlops abort`


@dataclass
class Interrupt:
    """Set from the step's SIGINT/SIGTERM handler; the driver looks at it every tick."""

    event: threading.Event = field(default_factory=threading.Event)
    signal_name: str = ""
    action: str = "abort"  # or "leave": stop driving, keep the state for --resume

    def trip(self, name: str) -> None:
        self.signal_name = name
        self.event.set()


@dataclass(frozen=True)
class Timing:
    """How the driver waits: the rollout deadline per apply, polls, the lease margin."""

    rollout_timeout: float
    poll: float = 1.0
    lease_margin_s: int = LEASE_MARGIN_S
    clock: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class ReleasePlan:
    """A new build about to go out progressively (built by the deploy step)."""

    app: str
    final: Sequence[Manifest]  # the promoted set: the revision's manifests
    canary: Sequence[Manifest]  # stable as it runs now, the canary on the new build
    ab: Sequence[Manifest]  # A/B matches that keep sending their cohort to the canary
    canary_replicas: int
    steps: tuple[int, ...]
    limits: plan.Limits
    spec_hash: str
    stable_image: str
    canary_image: str
    lineage: Mapping[str, Any]
    profile: str | None = None
    forced: tuple[str, ...] = ()


@dataclass
class ReleaseOutcome:
    status: str  # promoted | aborted | failed | interrupted
    revision: int
    state: dict[str, Any]
    first_line: str
    report: str | None = None
    restored_to: int | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "revision": self.revision,
            "first_line": self.first_line,
            "report": self.report,
            "restored_to": self.restored_to,
            "rollout": self.state,
        }


# --- the records -------------------------------------------------------------------------


# --- the driver --------------------------------------------------------------------------


@dataclass
class _Context:
    cluster: Cluster
    store: Store
    app: str
    records: RolloutRecords
    cluster_history: ClusterHistory
    store_history: StoreHistory
    record: Record  # the revision the rollout brings in
    previous: Record  # the revision that ran before (restored on abort)
    holder: str
    timing: Timing
    analyse: Analyse | None
    interrupt: Interrupt
    progress: Progress | None
    # Whether this process has applied the canary's workloads; later steps then change
    # only the split (a resumed driver applies them once again, idempotently).
    canary_up: bool = False
    requests_read_at: float = float("-inf")

    def say(self, line: str) -> None:
        if self.progress is not None:
            self.progress(line)


def release(
    cluster: Cluster,
    store: Store,
    release_plan: ReleasePlan,
    analyse: Analyse,
    timing: Timing,
    *,
    interrupt: Interrupt | None = None,
    progress: Progress | None = None,
) -> ReleaseOutcome:
    """Bring a new build in through the steps; the outcome says promoted or aborted."""
    app = release_plan.app
    _announce(cluster, app, "changing")
    with deploy_lock(
        cluster,
        app,
        lease=keys.deploy_lease(app),
        hold_s=timing.rollout_timeout,
        margin_s=timing.lease_margin_s,
    ) as holder:
        records = RolloutRecords(cluster, store, app)
        state, _ = records.read()
        if state is not None and not state.done:
            raise StepError(unfinished_text(state))
        cluster_history = ClusterHistory(cluster, app)
        store_history = StoreHistory(store, app, cluster.context, cluster.namespace)
        recorded, current = cluster_history.read()
        previous = find_record(recorded, current) or find_record(store_history.records(), current)
        running = (previous or {}).get("images", {}).get(f"{app}-stable")
        if previous is None or running != release_plan.stable_image:
            raise StepError(
                f"what runs of {app!r} changed while the deploy was being prepared (stable "
                f"runs {running or 'nothing'}); run the deploy again"
            )
        revision = next_revision(
            [int(r["revision"]) for r in [*recorded, *store_history.records()]]
        )
        request = ApplyRequest(
            app=app,
            manifests=release_plan.final,
            lineage=release_plan.lineage,
            rollout_timeout=timing.rollout_timeout,
            profile=release_plan.profile,
            forced=release_plan.forced,
        )
        record = new_record(request, revision, release_plan.final, cluster, previous)
        record.update(
            status="progressing",
            rollout={
                "steps": list(release_plan.steps),
                "canary_manifests": [dict(o) for o in release_plan.canary],
                "ab": [dict(m) for m in release_plan.ab],
                "canary_replicas": release_plan.canary_replicas,
                "stable_image": release_plan.stable_image,
                "canary_image": release_plan.canary_image,
            },
        )
        # Recorded before the first write; `current` stays the revision stable runs.
        store_history.save(record, "progressing")
        cluster_history.write(record, current)
        state = plan.begin(
            model=app,
            revision=revision,
            spec_hash=release_plan.spec_hash,
            steps=release_plan.steps,
            stable_image=release_plan.stable_image,
            canary_image=release_plan.canary_image,
            limits=release_plan.limits,
            now=timing.clock(),
            driver=holder,
        )
        records.clear_request()
        records.save(state, "begin")
        ctx = _Context(
            cluster,
            store,
            app,
            records,
            cluster_history,
            store_history,
            record,
            previous,
            holder,
            timing,
            analyse,
            interrupt or Interrupt(),
            progress,
        )
        ctx.say(
            f"rollout of revision {revision}: stable keeps {_short(release_plan.stable_image)}, "
            f"canary {_short(release_plan.canary_image)}, steps {list(release_plan.steps)}"
        )
        return drive(ctx, state)


def resume(
    cluster: Cluster,
    store: Store,
    app: str,
    *,
    canary_image: str,
    spec_hash: str,
    analyse: Analyse,
    timing: Timing,
    interrupt: Interrupt | None = None,
    progress: Progress | None = None,
) -> ReleaseOutcome:
    """Continue an interrupted rollout when the canary's build and the spec are the same."""
    _announce(cluster, app, "resuming the rollout of")
    records = RolloutRecords(cluster, store, app)
    state, _ = records.read()
    if state is None or state.done:
        last = f" (the last one {state.phase}: {state.reason})" if state is not None else ""
        raise StepError(f"no interrupted rollout of {app!r} to resume{last}; deploy normally")
    problems = []
    if plan.digest(canary_image) != state.canary_digest:
        problems.append(
            f"the canary of the interrupted rollout runs {state.canary_digest}, but the build "
            f"to deploy is {plan.digest(canary_image)}"
        )
    if spec_hash != state.spec_hash:
        problems.append("rollout.steps / rollout.analysis / shared thresholds changed since")
    if problems:
        raise StepError(
            f"refusing to resume the rollout of {app!r} (revision {state.revision}): "
            + "; ".join(problems)
            + f". `mlops abort {app}` ends it (100% stable), then deploy again"
        )
    _wait_for_dead_driver(cluster, app, state, timing, progress)
    with deploy_lock(
        cluster,
        app,
        lease=keys.deploy_lease(app),
        hold_s=timing.rollout_timeout,
        margin_s=timing.lease_margin_s,
    ) as holder:
        ctx = context_for(cluster, store, app, state, holder, timing, analyse, interrupt, progress)
        state, _ = _step(ctx, state, plan.Resumed(holder))
        ctx.say(
            f"resuming revision {state.revision} at step {state.step + 1}/{len(state.steps)} "
            f"({state.phase})"
        )
        return drive(ctx, state)


def context_for(
    cluster: Cluster,
    store: Store,
    app: str,
    state: plan.RolloutState,
    holder: str,
    timing: Timing,
    analyse: Analyse | None,
    interrupt: Interrupt | None,
    progress: Progress | None,
) -> _Context:
    cluster_history = ClusterHistory(cluster, app)
    store_history = StoreHistory(store, app, cluster.context, cluster.namespace)
    recorded, _ = cluster_history.read()
    local = store_history.records()
    record = find_record(recorded, state.revision) or find_record(local, state.revision)
    if record is None or not record.get("rollout"):
        raise StepError(
            f"revision {state.revision} of {app!r} is not recorded with its rollout on the "
            "cluster or in the store; `kubectl` shows what runs, `mlops rollback` restores"
        )
    number = record.get("previous_revision")
    previous = find_record(recorded, number) or find_record(local, number)
    if previous is None:
        raise StepError(f"the revision before {state.revision} of {app!r} is not recorded")
    return _Context(
        cluster,
        store,
        app,
        RolloutRecords(cluster, store, app),
        cluster_history,
        store_history,
        record,
        previous,
        holder,
        timing,
        analyse,
        interrupt or Interrupt(),
        progress,
    )


def drive(ctx: _Context, state: plan.RolloutState) -> ReleaseOutcome:
    """Run the state machine to its end: report each event, carry out the actions."""
    timing = ctx.timing
    tick = max(0.02, min(1.0, state.limits.interval_s / 10, timing.poll))
    last_renew = timing.clock()
    while not state.terminal:
        state = _take_requests(ctx, state)
        if ctx.interrupt.event.is_set() and ctx.interrupt.action == "leave":
            state, _ = _step(ctx, state, plan.Interrupted(ctx.interrupt.signal_name, "leave"))
            line = (
                f"{ctx.app}: interrupted by {ctx.interrupt.signal_name or 'a signal'} at step "
                f"{state.step + 1}/{len(state.steps)}; the rollout is left as it is: "
                f"`mlops deploy --resume` continues it, `mlops abort {ctx.app}` ends it"
            )
            return ReleaseOutcome("interrupted", state.revision, state.as_dict(), line)
        move = plan.next_move(state)
        if move == plan.FINISH:
            break
        if move == plan.PROMOTE:
            ctx.say(f"promoting revision {state.revision}: {state.reason}")
            state, _ = _step(ctx, state, plan.PromotionDone(_promote(ctx)))
            continue
        if move == plan.APPLY_STEP:
            failure = _apply_step(ctx, state)
            if failure is not None:
                state, _ = _step(ctx, state, plan.ApplyFailed(failure))
                break
            state, _ = _step(ctx, state, plan.WeightApplied())
            ctx.say(
                f"step {state.step + 1}/{len(state.steps)}: canary {state.canary_weight}% "
                f"for {state.limits.interval_s:g}s"
            )
            continue
        moment = timing.clock()
        due = state.due_at
        assert due is not None
        if moment >= due:
            result = _analyse(ctx, state.window())
            state, _ = _step(ctx, state, plan.WindowAnalysed(result))
            ctx.say(f"{result.outcome.value}: {state.reason}")
            continue
        timing.sleep(min(tick, due - moment))
        if timing.clock() - last_renew >= max(0.5, timing.lease_margin_s / 3):
            renew(ctx.cluster, ctx.app, ctx.holder, lease=keys.deploy_lease(ctx.app))
            last_renew = timing.clock()
    return _finish(ctx, state)


def _step(
    ctx: _Context, state: plan.RolloutState, event: plan.Event
) -> tuple[plan.RolloutState, bool]:
    """Report event to the state machine and carry out its actions: (next state, whether
    anything changed)."""
    after, actions = plan.advance(state, event, ctx.timing.clock())
    for action in actions:
        if action.kind == plan.RECORD:
            ctx.records.save(after, action.detail)
        elif action.kind == plan.ROUTE_ALL_STABLE:
            _all_stable_now(ctx)
        # plan.LEAVE: the caller stops driving and says how to go on.
    return after, bool(actions)


def _take_requests(ctx: _Context, state: plan.RolloutState) -> plan.RolloutState:
    """An interrupt or an operator's request, turned into a transition."""
    now_ = ctx.timing.clock()
    if ctx.interrupt.event.is_set() and ctx.interrupt.action == "abort" and not state.terminal:
        state, _ = _step(ctx, state, plan.Interrupted(ctx.interrupt.signal_name, "abort"))
        return state
    # Operator requests are read at most once a second (a GET per tick would load the API
    # server for nothing); an interrupt above is seen every tick.
    if now_ - ctx.requests_read_at < REQUEST_POLL_S:
        return state
    ctx.requests_read_at = now_
    _, request = ctx.records.read()
    if not request or int(request.get("revision", -1)) != state.revision:
        return state
    ctx.records.clear_request()
    by = str(request.get("by") or "operator")
    state, _ = _step(ctx, state, plan.OperatorRequest(str(request.get("action")), by))
    return state


def _analyse(ctx: _Context, window: Window) -> AnalysisResult:
    if ctx.analyse is None:
        raise StepError("no live analysis is available to judge the rollout's windows")
    try:
        return ctx.analyse(window)
    except Exception as exc:  # an analyser that breaks is a Prometheus error, not a pass
        return AnalysisResult(Outcome.ERROR, window, reason=f"{type(exc).__name__}: {exc}")


def _rollout_info(ctx: _Context) -> dict[str, Any]:
    return dict(ctx.record.get("rollout") or {})


def _apply_step(ctx: _Context, state: plan.RolloutState) -> str | None:
    info = _rollout_info(ctx)
    objects = objects_plan.during(
        info["canary_manifests"], state.canary_weight, int(info["canary_replicas"]), info["ab"]
    )
    revision = int(ctx.record["revision"])
    timing = ctx.timing
    # The canary is up and ready before it gets any traffic; then the split changes.
    if not ctx.canary_up:
        workloads = [o for o in objects if o.get("kind") != "VirtualService"]
        failure = apply_objects(
            ctx.cluster,
            workloads,
            revision,
            timeout=timing.rollout_timeout,
            poll=timing.poll,
            progress=ctx.progress,
        )
        if failure is not None:
            return failure
        ctx.canary_up = True
    return apply_objects(
        ctx.cluster,
        objects_plan.only(objects, [("VirtualService", "")]),
        revision,
        timeout=timing.rollout_timeout,
        poll=timing.poll,
        progress=ctx.progress,
    )


def _promote(ctx: _Context) -> str | None:
    final = list(ctx.record["manifests"])
    revision = int(ctx.record["revision"])
    stale = _stale_refs([*ctx.previous["manifests"], *_canary_manifests(ctx)], final)
    stages = objects_plan.promotion_stages(final)
    for index, (name, objects) in enumerate(stages):
        ctx.say(f"promotion: {name}")
        failure = apply_objects(
            ctx.cluster,
            objects,
            revision,
            timeout=ctx.timing.rollout_timeout,
            poll=ctx.timing.poll,
            progress=ctx.progress,
            delete=stale if index == len(stages) - 1 else (),
        )
        if failure is not None:
            return f"{name}: {failure}"
    return None


def _canary_manifests(ctx: _Context) -> list[Manifest]:
    return list(_rollout_info(ctx).get("canary_manifests") or [])


def _stale_refs(before: Sequence[Manifest], after: Sequence[Manifest]) -> list[ObjectRef]:
    keep = {ref(o) for o in after}
    out: list[ObjectRef] = []
    for obj in before:
        key = ref(obj)
        if key not in keep and key not in out:
            out.append(key)
    return out


def _all_stable_now(ctx: _Context) -> str | None:
    """One VirtualService patch: 100 % stable, no A/B route (the abort's first move)."""
    restore = objects_plan.steady_state(ctx.previous["manifests"])
    failure = apply_objects(
        ctx.cluster,
        objects_plan.only(restore, [("VirtualService", "")]),
        int(ctx.previous["revision"]),
        timeout=ctx.timing.rollout_timeout,
        poll=ctx.timing.poll,
        progress=ctx.progress,
    )
    ctx.say("aborted: 100% stable" if failure is None else f"abort: routing failed: {failure}")
    return failure


def _abort(ctx: _Context) -> str | None:
    """100 % stable at once, then the previous revision's objects, the canary at 0."""
    restore = objects_plan.steady_state(ctx.previous["manifests"])
    number = int(ctx.previous["revision"])
    timing = ctx.timing
    first = _all_stable_now(ctx)
    stale = _stale_refs([*ctx.record["manifests"], *_canary_manifests(ctx)], restore)
    rest = apply_objects(
        ctx.cluster,
        restore,
        number,
        timeout=timing.rollout_timeout,
        poll=timing.poll,
        progress=ctx.progress,
        delete=stale,
    )
    return first or rest


def _finish(ctx: _Context, state: plan.RolloutState) -> ReleaseOutcome:
    record = ctx.record
    revision = int(record["revision"])
    summary = _summary(state)
    if state.phase == plan.PROMOTED:
        record.update(status="rolled-out", reason=state.reason, finished_at=now(), rollout={
            **_rollout_info(ctx), **summary})  # fmt: skip
        ctx.store_history.save(record, "rolled-out")
        ctx.cluster_history.write(record, revision)
        state = plan.settle(state, ctx.timing.clock())
        ctx.records.save(state, "promoted")
        line = f"{ctx.app}: revision {revision} promoted ({state.reason})"
        return outcome_of(ctx.records, state, None, line)
    failure = _abort(ctx)
    previous = int(ctx.previous["revision"])
    note = (
        f"revision {previous} restored (100% stable, canary at 0)"
        if failure is None
        else f"restoring revision {previous} failed: {failure}"
    )
    record.update(
        status="failed",
        reason=state.reason,
        restored_to=previous,
        restore=note,
        finished_at=now(),
        rollout={**_rollout_info(ctx), **summary},
    )
    ctx.store_history.save(record, "failed")
    try:
        ctx.cluster_history.write(record, previous)
    except KubeError as exc:
        record["restore"] = f"{note}; the failure could not be recorded on the cluster ({exc})"
        ctx.store_history.save(record, "failed")
    state = plan.settle(state, ctx.timing.clock())
    ctx.records.save(state, state.phase)
    return outcome_of(ctx.records, state, previous)


def outcome_of(
    records: RolloutRecords,
    state: plan.RolloutState,
    restored_to: int | None,
    line: str | None = None,
) -> ReleaseOutcome:
    report = records.report(state)
    if line is None:
        line = (
            f"{state.model}: revision {state.revision} promoted ({state.reason})"
            if state.phase == plan.PROMOTED
            else state.reason
        )
    return ReleaseOutcome(state.phase, state.revision, state.as_dict(), line, report, restored_to)


def _summary(state: plan.RolloutState) -> dict[str, Any]:
    data = state.as_dict()
    return {
        k: data[k]
        for k in (
            "phase",
            "step",
            "weights",
            "failures",
            "inconclusive_in_row",
            "errors_in_row",
            "measurements",
            "ended_by",
            "reason",
            "stable_digest",
            "canary_digest",
            "spec_hash",
        )
    }


def _wait_for_dead_driver(
    cluster: Cluster,
    app: str,
    state: plan.RolloutState,
    timing: Timing,
    progress: Progress | None,
) -> None:
    """A resumed rollout's previous driver may have died holding the lease: wait for it to
    expire (it stops being renewed when the driver dies), never take it over early."""
    holder, expiry = holder_of(cluster, keys.deploy_lease(app))
    if holder is None or holder != state.driver or expiry is None:
        return  # free, or someone else's: deploy_lock decides
    left = (expiry - datetime.now(timezone.utc)).total_seconds()
    if left <= 0:
        return
    if progress is not None:
        progress(f"the interrupted driver {holder} holds the deploy lock; waiting {left:.0f}s")
    deadline = timing.clock() + left + 1
    while timing.clock() < deadline:
        holder_now, expiry_now = holder_of(cluster, keys.deploy_lease(app))
        if holder_now != holder:
            return
        if expiry_now is not None and expiry_now <= datetime.now(timezone.utc):
            return
        timing.sleep(0.25)
    raise DeployLocked(
        f"the deploy lock of {app!r} is still renewed by {holder}: the rollout's driver "
        "is alive; let it finish, or `mlops abort` it"
    )


def _announce(cluster: Cluster, app: str, verb: str) -> None:
    print(
        f"mlops deploy: {verb} {app!r} on context {cluster.context!r} (server "
        f"{cluster.server}), namespace {cluster.namespace!r}",
        file=sys.stderr,
        flush=True,
    )


def _short(image: str) -> str:
    return image.rsplit("@sha256:", 1)[-1][:12] if "@sha256:" in image else image
