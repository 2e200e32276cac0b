"""``mlops promote`` and ``mlops abort`` of a progressive rollout: ask the process that
drives it (a request in the rollout ConfigMap, answered at its next tick), or, when its
driver is gone (its Lease expired), take the Lease and drive the rollout to the end here.
"""

from __future__ import annotations

import dataclasses

from mlops_sessions.drivers.rollout import (
    Progress,
    ReleaseOutcome,
    Timing,
    context_for,
    drive,
    outcome_of,
)
from mlops_sessions.drivers.rollout_records import RolloutRecords, live_driver, restored_to
from mlops_sessions.errors import StepError
from mlops_sessions.executors.kube.client import Cluster
from mlops_sessions.executors.kube.lease import deploy_lock
from mlops_sessions.planning import rollout as plan
from mlops_sessions.records import keys
from mlops_sessions.records.store import Store


def operator_request(
    cluster: Cluster,
    store: Store,
    app: str,
    action: str,
    by: str,
    timing: Timing,
    *,
    wait_s: float,
    progress: Progress | None = None,
) -> ReleaseOutcome:
    """``mlops promote`` / ``mlops abort``: ask the driving process, or act when none lives."""
    records = RolloutRecords(cluster, store, app)
    state, _ = records.read()
    if state is None or state.done:
        last = f"; the last one {state.phase}: {state.reason}" if state is not None else ""
        raise StepError(f"no rollout of {app!r} is in progress{last}")
    holder = live_driver(cluster, app, state)
    if holder is not None:
        records.request(action, by, state.revision)
        if progress is not None:
            progress(f"asked {holder} to {action} revision {state.revision}; waiting")
        deadline = timing.clock() + wait_s
        while timing.clock() < deadline:
            state, _ = records.read()
            if state is None:
                raise StepError(f"the rollout record of {app!r} disappeared")
            if state.done:
                return outcome_of(records, state, restored_to(cluster, store, app, state.revision))
            if live_driver(cluster, app, state) is None:
                # The driver died before acting (its lease expired): act here instead.
                if progress is not None:
                    progress(f"{holder} stopped renewing its lease; taking over")
                break
            timing.sleep(max(0.05, min(1.0, timing.poll)))
        else:
            raise StepError(
                f"asked the driving process ({holder}) to {action} the rollout of {app!r}, but "
                f"it has not finished within {wait_s:g}s; `mlops status {app}` shows where it is"
            )
        records.clear_request()
    with deploy_lock(
        cluster,
        app,
        lease=keys.deploy_lease(app),
        hold_s=timing.rollout_timeout,
        margin_s=timing.lease_margin_s,
    ) as me:
        ctx = context_for(cluster, store, app, state, me, timing, None, None, progress)
        # An ended rollout that was not acted upon (its driver died) is finished as it was
        # decided: the state machine ignores a request once the rollout has ended.
        state, _ = plan.advance(state, plan.OperatorRequest(action, by), timing.clock())
        state = dataclasses.replace(state, driver=me)
        records.save(state, action)
        return drive(ctx, state)
