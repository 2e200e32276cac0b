"""Apply one revision of rendered manifests, wait for it, restore the previous one on failure.

The flow (``deploy`` and ``rollback`` both come through :func:`apply_revision`):

0. when something is to change, take the app's deploy lock
   (:mod:`~mlops_sessions.executors.kube.lease`) and plan again under it, so two deploys of
   one model never interleave; a dry run or a no-op takes no lock;
1. check every Secret the pods reference exists (with its key), before any write (this
   step, 4 and 5 are the adapters of :mod:`mlops_sessions.executors.kube.apply`);
2. read the history (ConfigMap ``<app>-mlops-history`` and the store, through
   :mod:`~mlops_sessions.drivers.history`) and the live objects, and plan the changes
   (:mod:`~mlops_sessions.planning.deploy_plan`); with nothing to change, stop: a repeated
   deploy writes nothing;
3. record the revision as ``applying`` in the store, then on the cluster;
4. create / merge-patch / delete, each call retried on transient errors;
5. wait for the changed Deployments to roll out until deploy.rollout_timeout;
6. on success record ``rolled-out`` and make it current; on failure re-apply the previous
   revision's recorded manifests (no rebuild), wait for that, and record ``failed`` with
   the reason and what was restored.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from mlops_sessions.drivers.history import ClusterHistory, Record, StoreHistory, now
from mlops_sessions.errors import StepError
from mlops_sessions.executors.kube import apply as kube_apply
from mlops_sessions.executors.kube.client import FIELD_MANAGER, Cluster, KubeError
from mlops_sessions.executors.kube.readiness import wait
from mlops_sessions.planning import field_owners
from mlops_sessions.planning.deploy_plan import (
    Manifest,
    deployments,
    diff_text,
    digest_of,
    images,
    manifest_hash,
    next_revision,
    ref,
    stamp,
    traffic_weights,
)
from mlops_sessions.records import keys
from mlops_sessions.records.store import Store

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ApplyRequest:
    """One revision to apply: the rendered objects and what they were made from."""

    app: str
    manifests: Sequence[Manifest]
    lineage: Mapping[str, Any]
    rollout_timeout: float
    source: str = "deploy"  # or "rollback"
    rollback_of: int | None = None
    profile: str | None = None
    forced: tuple[str, ...] = ()
    poll: float = 1.0


@dataclass
class Outcome:
    """What an apply did; ``status`` is rolled-out, unchanged, dry-run or failed."""

    status: str
    revision: int | None
    changes: list[dict[str, str]] = field(default_factory=list)
    diff: str = ""
    reason: str | None = None
    restored_to: int | None = None
    record: Record | None = None

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "status": self.status,
            "revision": self.revision,
            "changes": self.changes,
            "reason": self.reason,
            "restored_to": self.restored_to,
        }
        if self.diff:
            out["diff"] = self.diff
        if self.record is not None:
            out["record"] = {k: v for k, v in self.record.items() if k != "manifests"}
        return out


def _record(
    req: ApplyRequest,
    revision: int,
    objects: Sequence[Manifest],
    cluster: Cluster,
    previous: Record | None,
) -> Record:
    by_deployment = images(objects)
    # What ran before, in the record itself: enough to see (and undo) the change at a glance.
    before = (
        {key: previous.get(key) for key in ("revision", "digests", "weights", "manifest_hash")}
        if previous is not None
        else None
    )
    return {
        "revision": revision,
        "app": req.app,
        "source": req.source,
        "rollback_of": req.rollback_of,
        "profile": req.profile,
        "context": cluster.context,
        "namespace": cluster.namespace,
        "status": "applying",
        "reason": None,
        "previous_revision": int(previous["revision"]) if previous is not None else None,
        "previous": before,
        "restored_to": None,
        "forced": list(req.forced),
        "images": by_deployment,
        "digests": {name: digest_of(image) for name, image in by_deployment.items()},
        "weights": traffic_weights(objects),
        "manifest_hash": manifest_hash(objects),
        "lineage": dict(req.lineage),
        "started_at": now(),
        "finished_at": None,
        "changes": [],
        "manifests": [dict(o) for o in objects],
    }


def announce_target(cluster: Cluster, req: ApplyRequest, *, dry_run: bool) -> None:
    """Say which cluster and namespace are about to change, before anything is written.

    On stderr, so ``--json`` output stays one document: a human watching the deploy (or
    the CI log afterwards) sees the target before the first write, not after the damage.
    """
    verb = "comparing with" if dry_run else "changing"
    print(
        f"mlops {req.source}: {verb} {req.app!r} on context {cluster.context!r} "
        f"(server {cluster.server}), namespace {cluster.namespace!r}",
        file=sys.stderr,
        flush=True,
    )


def apply_revision(
    cluster: Cluster,
    store: Store,
    req: ApplyRequest,
    *,
    dry_run: bool = False,
    progress: Progress | None = None,
) -> Outcome:
    """Apply req as a new revision (see the module docstring for the steps)."""
    announce_target(cluster, req, dry_run=dry_run)
    # Planned once without the lock: a dry run, and a deploy with nothing to change, stay
    # read-only (a repeated deploy writes nothing, not even a lock).
    preview = _apply(cluster, store, req, dry_run=True, progress=progress)
    if dry_run:
        return preview
    if all(c.get("action") == "unchanged" for c in preview.changes):
        return Outcome("unchanged", preview.revision, preview.changes)
    from mlops_sessions.executors.kube.lease import deploy_lock

    # Held through the rollout wait and, on failure, the wait for the restored revision.
    with deploy_lock(
        cluster, req.app, lease=keys.deploy_lease(req.app), hold_s=2 * req.rollout_timeout
    ):
        return _apply(cluster, store, req, dry_run=False, progress=progress)


def _apply(
    cluster: Cluster,
    store: Store,
    req: ApplyRequest,
    *,
    dry_run: bool,
    progress: Progress | None,
) -> Outcome:
    objects = [kube_apply.with_namespace(o, cluster.namespace) for o in req.manifests]
    kube_apply.check_secrets(cluster, objects)
    cluster_history = ClusterHistory(cluster, req.app)
    store_history = StoreHistory(store, req.app, cluster.context, cluster.namespace)
    records, current = cluster_history.read()
    local = store_history.records()
    revision = next_revision([int(r["revision"]) for r in [*records, *local]])
    previous = _find(records, current) or _find(local, current)
    previous_refs = [ref(m) for m in previous["manifests"]] if previous else []

    changes = kube_apply.plan(cluster, [stamp(o, revision) for o in objects], previous_refs)
    summary = [c.as_dict() for c in changes]
    _refuse_immutable(changes, cluster.namespace)
    if dry_run:  # the preview every deploy makes first: said once, before anything is written
        _say_taken_back(changes, progress)
    if dry_run:
        diff = "".join(diff_text(c) for c in changes if c.action != "unchanged")
        return Outcome("dry-run", current, summary, diff or "")
    if all(c.action == "unchanged" for c in changes):
        return Outcome("unchanged", current, summary)

    record = _record(req, revision, objects, cluster, previous)
    record["changes"] = summary
    # The record exists before the first write to the cluster: never an unrecorded apply.
    store_history.save(record, "applying")
    try:
        cluster_history.write(record, current)
    except KubeError as exc:
        record.update(
            status="failed", reason=f"could not record on the cluster: {exc}", finished_at=now()
        )
        store_history.save(record, "failed")
        raise StepError(f"nothing was applied: {record['reason']}") from exc

    failure: str | None = None
    try:
        kube_apply.execute(cluster, changes, progress)
    except KubeError as exc:
        failure = f"apply failed: {exc}"
    if failure is None:
        try:
            result = wait(
                cluster,
                kube_apply.changed_deployments(changes),
                req.rollout_timeout,
                poll=req.poll,
                progress=progress,
            )
            failure = None if result.ok else result.reason
        except KubeError as exc:
            failure = f"watching the rollout failed: {exc}"

    if failure is None:
        record.update(status="rolled-out", finished_at=now())
        store_history.save(record, "rolled-out")
        cluster_history.write(record, revision)
        return Outcome("rolled-out", revision, summary, record=record)

    if progress is not None:
        progress(f"revision {revision} failed: {failure}")
    restored_to, note = _restore(cluster, previous, objects, req, progress)
    record.update(
        status="failed",
        reason=failure,
        restored_to=restored_to,
        restore=note,
        finished_at=now(),
    )
    store_history.save(record, "failed")
    try:
        cluster_history.write(record, restored_to if restored_to is not None else revision)
    except KubeError as exc:
        note += f"; the failure could not be recorded on the cluster ({exc})"
        record["restore"] = note
        store_history.save(record, "failed")
    return Outcome(
        "failed", revision, summary, reason=failure, restored_to=restored_to, record=record
    )


def _refuse_immutable(changes: Sequence[Any], namespace: str) -> None:
    """Stop before any write when a patch would change a field Kubernetes keeps fixed."""
    for change in changes:
        if change.action != "patch" or change.live is None:
            continue
        path = field_owners.immutable_change(change.ref.kind, change.live, change.patch)
        if path is None:
            continue
        owners = field_owners.owners_of(change.live, path, FIELD_MANAGER)
        made_by = f" (it was set by field manager {', '.join(map(repr, owners))})" if owners else ""
        raise StepError(
            f"{change.ref}: its {path} differs from what mlops renders{made_by}, and Kubernetes "
            "cannot change that field on a live object; nothing was written. Delete the object "
            f"(kubectl -n {namespace} delete {change.ref.kind.lower()} {change.ref.name}) and "
            "deploy again: the deploy creates it anew"
        )


def _say_taken_back(changes: Sequence[Any], progress: Progress | None) -> None:
    """Name every field this apply sets back that another field manager had changed."""
    for change in changes:
        if change.action != "patch" or change.live is None:
            continue
        for field_change in field_owners.taken_back(change.live, change.patch, FIELD_MANAGER):
            hint = field_owners.hint_for(field_change.path)
            line = f"{change.ref}: {field_change.message(hint)}"
            if progress is not None:
                progress(line)
            else:
                print(f"mlops deploy: {line}", file=sys.stderr)


def new_record(
    req: ApplyRequest,
    revision: int,
    objects: Sequence[Manifest],
    cluster: Cluster,
    previous: Record | None,
) -> Record:
    """The record of a revision about to be applied (status ``applying``)."""
    return _record(
        req,
        revision,
        [kube_apply.with_namespace(o, cluster.namespace) for o in objects],
        cluster,
        previous,
    )


def find_record(records: Sequence[Record], revision: int | None) -> Record | None:
    return _find(records, revision)


def _find(records: Sequence[Record], revision: int | None) -> Record | None:
    if revision is None:
        return None
    return next((r for r in records if int(r["revision"]) == revision), None)


def _restore(
    cluster: Cluster,
    previous: Record | None,
    failed_objects: Sequence[Manifest],
    req: ApplyRequest,
    progress: Progress | None,
) -> tuple[int | None, str]:
    """Re-apply the previous revision's recorded manifests; (revision restored, note)."""
    if previous is None:
        return None, "no previous revision to restore (first deploy); the new objects stay"
    number = int(previous["revision"])
    objects = [kube_apply.with_namespace(o, cluster.namespace) for o in previous["manifests"]]
    try:
        changes = kube_apply.plan(
            cluster, [stamp(o, number) for o in objects], [ref(o) for o in failed_objects]
        )
        kube_apply.execute(cluster, changes, progress)
        result = wait(
            cluster,
            kube_apply.changed_deployments(changes),
            req.rollout_timeout,
            poll=req.poll,
            progress=progress,
        )
    except KubeError as exc:
        return None, f"restoring revision {number} failed too: {exc}"
    if not result.ok:
        return number, f"revision {number} re-applied but not healthy: {result.reason}"
    return number, f"revision {number} restored"


# --- reading what runs --------------------------------------------------------------------


def history(cluster: Cluster, store: Store, app: str) -> tuple[list[Record], int | None]:
    """Revision records (cluster's, completed by the store's) oldest first, and current."""
    records, current = ClusterHistory(cluster, app).read()
    have = {int(r["revision"]) for r in records}
    local = StoreHistory(store, app, cluster.context, cluster.namespace).records()
    merged = records + [r for r in local if int(r["revision"]) not in have]
    merged.sort(key=lambda r: int(r["revision"]))
    return merged, current


def live_status(
    cluster: Cluster, store: Store, app: str, fallback: Sequence[Manifest]
) -> dict[str, Any]:
    """What runs now: per Deployment image, digest, lineage and ready replicas; weights."""
    records, current = history(cluster, store, app)
    record = _find(records, current)
    objects = [
        kube_apply.with_namespace(o, cluster.namespace)
        for o in (record["manifests"] if record else fallback)
    ]
    tracks = []
    for dep in deployments(objects):
        key = ref(dep)
        live = cluster.get(key)
        if live is None:
            tracks.append({"deployment": key.name, "present": False})
            continue
        pod = (live.get("spec") or {}).get("template") or {}
        containers = (pod.get("spec") or {}).get("containers") or [{}]
        image = str(containers[0].get("image", ""))
        status = live.get("status") or {}
        annotations = {
            **(pod.get("metadata") or {}).get("annotations", {}),
            **((live.get("metadata") or {}).get("annotations") or {}),
        }
        tracks.append(
            {
                "deployment": key.name,
                "present": True,
                "image": image,
                "digest": digest_of(image),
                "revision": annotations.get("mlops-sessions.dev/revision"),
                "lineage": {
                    k.split("/", 1)[1]: v
                    for k, v in annotations.items()
                    if k.startswith("mlops-sessions.dev/") and "last-applied" not in k
                },
                "replicas": int((live.get("spec") or {}).get("replicas", 1)),
                "ready": int(status.get("readyReplicas") or 0),
                "available": int(status.get("availableReplicas") or 0),
            }
        )
    weights: dict[str, int] = {}
    for obj in objects:
        if obj.get("kind") == "VirtualService":
            live_vs = cluster.get(ref(obj))
            weights = traffic_weights([live_vs]) if live_vs else {}
    return {
        "app": app,
        "context": cluster.context,
        "namespace": cluster.namespace,
        "current_revision": current,
        "record": {k: v for k, v in (record or {}).items() if k != "manifests"} or None,
        "tracks": tracks,
        "weights": weights,
        "revisions": [
            {
                k: r.get(k)
                for k in (
                    "revision",
                    "status",
                    "source",
                    "reason",
                    "finished_at",
                    "manifest_hash",
                    "weights",
                    "images",
                )
            }
            for r in records
        ],
    }
