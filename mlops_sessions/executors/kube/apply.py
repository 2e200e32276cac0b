"""Apply objects to the cluster: check the Secrets they use, plan the changes against what
is live, create / merge-patch / delete, and wait for the changed Deployments.

Adapters that act and return facts (a failure text, or None). The revision records, the
lock and the restore on failure are the deploy driver's (:mod:`mlops_sessions.drivers.deploy`).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence

from mlops_sessions.errors import StepError
from mlops_sessions.executors.kube.client import Cluster, KubeError
from mlops_sessions.executors.kube.readiness import wait
from mlops_sessions.planning.deploy_plan import (
    Change,
    Manifest,
    ObjectRef,
    plan_changes,
    ref,
    secret_uses,
    stamp,
)

Progress = Callable[[str], None]


def with_namespace(obj: Manifest, namespace: str) -> Manifest:
    out = copy.deepcopy(obj)
    out.setdefault("metadata", {}).setdefault("namespace", namespace)
    return out


def check_secrets(cluster: Cluster, objects: Sequence[Manifest]) -> None:
    """Refuse, before anything is written, when a referenced Secret or key is missing."""
    problems = []
    seen: dict[str, Manifest | None] = {}
    for use in secret_uses(objects):
        if use.secret not in seen:
            seen[use.secret] = cluster.get(ObjectRef("v1", "Secret", cluster.namespace, use.secret))
        secret = seen[use.secret]
        if secret is None:
            problems.append(
                f"Secret {use.secret!r} (used by {use.used_by}) does not exist in namespace "
                f"{cluster.namespace!r}"
            )
        elif use.key is not None and use.key not in {
            **(secret.get("data") or {}),
            **(secret.get("stringData") or {}),
        }:
            problems.append(f"Secret {use.secret!r} has no key {use.key!r} (used by {use.used_by})")
    if problems:
        names = sorted({p.split("'")[1] for p in problems})
        raise StepError(
            "nothing was applied: the cluster lacks secrets the pods need:\n  - "
            + "\n  - ".join(problems)
            + f"\n    hint: create them first, e.g. `kubectl -n {cluster.namespace} create secret "
            f"generic {names[0]} --from-literal=KEY=VALUE`"
        )


def _live(cluster: Cluster, refs: Sequence[ObjectRef]) -> dict[ObjectRef, Manifest | None]:
    return {key: cluster.get(key) for key in refs}


def plan(
    cluster: Cluster, stamped: Sequence[Manifest], previous_refs: Sequence[ObjectRef]
) -> list[Change]:
    refs = list(dict.fromkeys([ref(o) for o in stamped] + list(previous_refs)))
    return plan_changes(stamped, _live(cluster, refs), previous_refs)


def execute(cluster: Cluster, changes: Sequence[Change], progress: Progress | None) -> None:
    for change in changes:
        if change.action == "create" and change.desired is not None:
            cluster.create(change.desired)
        elif change.action == "patch":
            cluster.patch(change.ref, change.patch)
        elif change.action == "delete":
            cluster.delete(change.ref)
        else:
            continue
        if progress is not None:
            progress(
                f"{change.action}d {change.ref}"
                if change.action != "patch"
                else f"patched {change.ref}"
            )


def changed_deployments(changes: Sequence[Change]) -> list[ObjectRef]:
    return [
        c.ref for c in changes if c.ref.kind == "Deployment" and c.action in ("create", "patch")
    ]


def apply_objects(
    cluster: Cluster,
    objects: Sequence[Manifest],
    revision: int,
    *,
    timeout: float,
    poll: float,
    progress: Progress | None = None,
    delete: Sequence[ObjectRef] = (),
) -> str | None:
    """Create/patch objects stamped with revision, delete the refs in ``delete`` that are
    not among them, and wait for the changed Deployments: the failure, or None.

    The building block of a progressive rollout (:mod:`mlops_sessions.drivers.rollout`),
    which applies one revision in stages: objects left out are not touched.
    """
    applied = [with_namespace(o, cluster.namespace) for o in objects]
    try:
        changes = plan(cluster, [stamp(o, revision) for o in applied], list(delete))
        execute(cluster, changes, progress)
        result = wait(cluster, changed_deployments(changes), timeout, poll=poll, progress=progress)
    except KubeError as exc:
        return f"apply failed: {exc}"
    return None if result.ok else result.reason
