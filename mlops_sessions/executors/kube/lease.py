"""One deploy at a time per app and namespace: a coordination.k8s.io Lease as the lock.

Two deploys of the same model racing (two CI pipelines, a person and a pipeline) would each
read the same history, pick the same revision number and interleave their writes. Before
it reads anything, the deploy driver creates the app's Lease (its name is a record name,
:func:`mlops_sessions.records.keys.deploy_lease`, passed in by the driver); the API
server refuses a second create (409 AlreadyExists), so exactly one deploy holds it. The
Lease names its holder and lasts the rollout timeout plus a margin: a deploy whose process
died is not waited for forever, its lease is taken over once it has expired. The holder
deletes it when done, whatever the outcome.

Needs ``create``, ``get`` and ``delete`` on ``leases`` in the namespace (see docs/deploy.md).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import socket
import threading
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

from mlops_sessions.errors import StepError
from mlops_sessions.executors.kube.client import Cluster, KubeError
from mlops_sessions.planning.deploy_plan import ObjectRef

MARGIN_S = 120  # on top of the rollout timeout: restoring the previous revision takes time
_TIME = "%Y-%m-%dT%H:%M:%S.%fZ"  # a Kubernetes MicroTime


class DeployLocked(StepError):
    """Another deploy of the same app holds the lease."""


def holder_identity() -> str:
    try:
        user = getpass.getuser()
    except (KeyError, OSError):
        user = "unknown"
    return f"{user}@{socket.gethostname()} pid {os.getpid()}"


def lease_body(
    name: str, namespace: str, holder: str, seconds: int, now: datetime
) -> dict[str, Any]:
    stamp = now.astimezone(timezone.utc).strftime(_TIME)
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {"app.kubernetes.io/managed-by": "mlops-sessions"},
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": seconds,
            "acquireTime": stamp,
            "renewTime": stamp,
        },
    }


def expires_at(lease: dict[str, Any]) -> datetime | None:
    """When a lease stops counting; None if it does not say (then it never expires)."""
    spec = lease.get("spec") or {}
    stamp = spec.get("renewTime") or spec.get("acquireTime")
    seconds = spec.get("leaseDurationSeconds")
    if not stamp or seconds is None:
        return None
    try:
        moment = datetime.strptime(str(stamp), _TIME).replace(tzinfo=timezone.utc)
    except ValueError:
        try:
            moment = datetime.fromisoformat(str(stamp).replace("Z", "+00:00"))
        except ValueError:
            return None
    return moment + timedelta(seconds=int(seconds))


@contextlib.contextmanager
def deploy_lock(
    cluster: Cluster, app: str, *, lease: str, hold_s: float, margin_s: int = MARGIN_S
) -> Iterator[str]:
    """Hold the app's deploy lease for the block; yields the holder identity.

    A progressive rollout outlasts any fixed hold: it passes a short margin and calls
    :func:`renew` as it goes, so a driver killed mid-rollout frees the lease soon after.
    """
    holder = holder_identity()
    if threading.current_thread() is not threading.main_thread():
        # Two deploys in one process (threads) must not take each other's lease for
        # their own, nor delete it on release.
        holder += f" thread {threading.get_ident()}"
    name = lease
    seconds = int(hold_s) + margin_s
    key = ObjectRef("coordination.k8s.io/v1", "Lease", cluster.namespace, name)
    body = lease_body(name, cluster.namespace, holder, seconds, datetime.now(timezone.utc))
    if not _try_create(cluster, key, body):
        current = cluster.get(key) or {}
        expiry = expires_at(current)
        if (current.get("spec") or {}).get("holderIdentity") == holder:
            pass  # our own create, whose answer was lost and whose retry met 409
        elif expiry is None or expiry > datetime.now(timezone.utc):
            spec = current.get("spec") or {}
            until = f"; it expires at {expiry.isoformat()}" if expiry else ""
            raise DeployLocked(
                f"another deploy of '{app}' is running in {cluster.context}/{cluster.namespace}: "
                f"held by {spec.get('holderIdentity', 'unknown')} since "
                f"{spec.get('acquireTime', '?')}{until}. Wait for it to finish; if that "
                f"deploy died, `kubectl -n {cluster.namespace} delete lease {name}` frees it"
            )
        else:
            # Expired: its holder is gone. Take it over; if another deploy is faster, it wins.
            cluster.delete(key)
            if not _try_create(cluster, key, body):
                raise DeployLocked(
                    f"another deploy of '{app}' took over the expired lock {name} first; "
                    "run again once it has finished"
                )
    try:
        yield holder
    finally:
        _release(cluster, key, holder)


def renew(cluster: Cluster, app: str, holder: str, *, lease: str) -> None:
    """Move the lease's renewTime to now: the holder is alive (a rollout's heartbeat)."""
    key = ObjectRef("coordination.k8s.io/v1", "Lease", cluster.namespace, lease)
    stamp = datetime.now(timezone.utc).strftime(_TIME)
    current = cluster.get(key)
    if current is None or (current.get("spec") or {}).get("holderIdentity") != holder:
        raise DeployLocked(
            f"the deploy lock {key.name} of '{app}' is no longer held by {holder} (it expired "
            "or was deleted); stopping rather than racing another deploy"
        )
    cluster.patch(key, {"spec": {"renewTime": stamp}})


def holder_of(cluster: Cluster, lease: str) -> tuple[str | None, datetime | None]:
    """(holder, expiry) of the lease; (None, None) when nobody holds it."""
    key = ObjectRef("coordination.k8s.io/v1", "Lease", cluster.namespace, lease)
    current = cluster.get(key)
    if current is None:
        return None, None
    return (current.get("spec") or {}).get("holderIdentity"), expires_at(current)


def _try_create(cluster: Cluster, key: ObjectRef, body: dict[str, Any]) -> bool:
    """Create the lease; False when it already exists (409), retrying other errors."""
    from kubernetes.client.exceptions import ApiException

    def post() -> bool:
        try:
            cluster.raw_create(key, body)
        except ApiException as exc:
            if exc.status == 409:
                return False
            raise
        return True

    return cluster.call(f"creating the deploy lock {key}", post)


def _release(cluster: Cluster, key: ObjectRef, holder: str) -> None:
    """Delete the lease if this process still holds it (never someone else's)."""
    try:
        current = cluster.get(key)
        if current and (current.get("spec") or {}).get("holderIdentity") == holder:
            cluster.delete(key)
    except KubeError:
        # The lease expires on its own; a failure to release must not hide the deploy's
        # own outcome.
        pass
