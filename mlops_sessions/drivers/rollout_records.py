"""A progressive rollout's records and who drives it: the state and the operator's
request in the rollout ConfigMap and in the store (:mod:`mlops_sessions.records.rollouts`),
the revision records it brings in, and the deploy Lease that says whether its driver lives.

Used by the rollout driver (:mod:`mlops_sessions.drivers.rollout`) and by ``mlops status``.
"""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlops_sessions.drivers.deploy import find_record
from mlops_sessions.drivers.history import ClusterHistory, Record, StoreHistory
from mlops_sessions.errors import StepError
from mlops_sessions.executors.kube.client import Cluster
from mlops_sessions.executors.kube.configmap import configmap_ref, merge_data, read_data
from mlops_sessions.executors.kube.lease import DeployLocked, holder_of
from mlops_sessions.planning import rollout as plan
from mlops_sessions.planning.k8s_common import MANAGED_BY
from mlops_sessions.records import keys, rollouts
from mlops_sessions.records.store import Store
from mlops_sessions.reports import rollout as rollout_report


class RolloutRecords:
    """The rollout state on the cluster (ConfigMap) and in the store, written together."""

    def __init__(self, cluster: Cluster, store: Store, app: str) -> None:
        self.cluster = cluster
        self.app = app
        self.ref = configmap_ref(cluster, keys.rollout_configmap(app))
        self.target = rollouts.target_dir(store.root, app, cluster.context, cluster.namespace)

    def read(self) -> tuple[plan.RolloutState | None, dict[str, Any] | None]:
        """(the recorded state, the pending operator request)."""
        data = read_data(self.cluster, self.ref) or {}
        state = rollouts.decode(data.get(rollouts.STATE_KEY))
        request = rollouts.decode(data.get(rollouts.REQUEST_KEY))
        return (plan.RolloutState.from_dict(state) if state else None), request

    def save(self, state: plan.RolloutState, event: str) -> None:
        # The store first: a state the cluster holds is never missing from the store.
        data = state.as_dict()
        rollouts.save_state(self.target, data, event)
        self._write({rollouts.STATE_KEY: rollouts.encode(data)}, phase=state.phase)

    def request(self, action: str, by: str, revision: int) -> None:
        self._write({rollouts.REQUEST_KEY: rollouts.encode(rollouts.request(action, by, revision))})

    def clear_request(self) -> None:
        self._write({rollouts.REQUEST_KEY: ""})

    def report(self, state: plan.RolloutState) -> str:
        path = rollouts.save_report(
            self.target, state.revision, rollout_report.markdown(state.as_dict())
        )
        return str(path)

    def _write(self, values: dict[str, str], phase: str | None = None) -> None:
        labels = {"app": self.app, "app.kubernetes.io/managed-by": MANAGED_BY}
        if phase is not None:
            labels[plan.PHASE_LABEL] = phase
        merge_data(self.cluster, self.ref, values, labels)


def running_record(cluster: Cluster, store: Store, app: str) -> Record | None:
    """The revision that runs now, from the cluster's record (completed by the store's)."""
    records, current = ClusterHistory(cluster, app).read()
    local = StoreHistory(store, app, cluster.context, cluster.namespace).records()
    return find_record(records, current) or find_record(local, current)


def unfinished(cluster: Cluster, store: Store, app: str) -> plan.RolloutState | None:
    """The recorded rollout of app when it has not ended (progressing or promoting)."""
    state, _ = RolloutRecords(cluster, store, app).read()
    return state if state is not None and not state.done else None


def restored_to(cluster: Cluster, store: Store, app: str, revision: int) -> int | None:
    """What the rollout's revision record says was restored (None: promoted)."""
    recorded, _ = ClusterHistory(cluster, app).read()
    local = StoreHistory(store, app, cluster.context, cluster.namespace).records()
    record = find_record(recorded, revision) or find_record(local, revision) or {}
    value = record.get("restored_to")
    return int(value) if value is not None else None


def live_driver(cluster: Cluster, app: str, state: plan.RolloutState) -> str | None:
    """The holder of app's lease when it is the rollout's driver and its lease has not
    expired (it is alive, or died less than a lease margin ago)."""
    holder, expiry = holder_of(cluster, keys.deploy_lease(app))
    if holder is None or holder != state.driver:
        return None
    if expiry is not None and expiry <= datetime.now(timezone.utc):
        return None
    return holder


def unfinished_text(state: plan.RolloutState) -> str:
    return (
        f"a rollout of {state.model!r} (revision {state.revision}) is {state.phase} at step "
        f"{state.step + 1}/{len(state.steps)} and its driver is gone: `mlops deploy --resume` "
        f"continues it, `mlops abort {state.model}` ends it (100% stable)"
    )


def refuse_unfinished(cluster: Cluster, state: plan.RolloutState) -> StepError:
    """The error for a deploy that meets an unfinished rollout: one still driven, or one
    whose driver is gone."""
    holder, expiry = holder_of(cluster, keys.deploy_lease(state.model))
    if holder is not None and (expiry is None or expiry > datetime.now(timezone.utc)):
        return DeployLocked(
            f"a rollout of {state.model!r} (revision {state.revision}) is in progress at step "
            f"{state.step + 1}/{len(state.steps)}, driven by {holder}: wait for it, or "
            f"`mlops promote {state.model}` / `mlops abort {state.model}`"
        )
    return StepError(unfinished_text(state))


def rollout_status(cluster: Cluster, store: Store, app: str) -> dict[str, Any] | None:
    """The recorded rollout, for ``mlops status``: phase, step, weights, the last
    measurement of each metric per track, counters and the reason."""
    state, request = RolloutRecords(cluster, store, app).read()
    if state is None:
        return None
    target = rollouts.target_dir(store.root, app, cluster.context, cluster.namespace)
    report = rollouts.report_file(target, state.revision)
    return {
        "revision": state.revision,
        "phase": state.phase,
        "step": state.step + 1,
        "steps": list(state.steps),
        "weights": dict(state.weights),
        "stable_digest": state.stable_digest,
        "canary_digest": state.canary_digest,
        "failures": state.failures,
        "inconclusive_in_row": state.inconclusive_in_row,
        "errors_in_row": state.errors_in_row,
        "windows": len(state.measurements),
        "last": state.last_measurements(),
        "reason": state.reason,
        "driver": state.driver,
        "request": request,
        "report": str(report) if Path(report).exists() else None,
    }
