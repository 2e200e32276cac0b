"""Deploy records, kept twice: in the ``.mlops/`` store and on the cluster.

Every apply is a numbered revision. Its record — status, images and digests, commit, model
hash, traffic weights, manifest hash and the manifests themselves — is written

- to the store (layout and format: ``records.deployments``), *before* the first write to
  the cluster, so an interrupted deploy is never unrecorded; and
- to the cluster, in the ConfigMap ``<app>-mlops-history`` (the last ``HISTORY_LIMIT``
  revisions, one key each, and ``current``: the revision that runs), so ``rollback`` works
  from any machine, without the store and without rebuilding anything.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from typing import Any

from mlops_sessions.executors.kube.client import Cluster
from mlops_sessions.planning.deploy_plan import (
    HISTORY_LIMIT,
    ObjectRef,
    history_name,
    revision_key,
)
from mlops_sessions.planning.k8s_common import MANAGED_BY
from mlops_sessions.records import deployments
from mlops_sessions.records.io import now, stamped
from mlops_sessions.records.store import Store

__all__ = ["ClusterHistory", "Record", "StoreHistory", "now"]

Record = dict[str, Any]
_KEY = re.compile(r"^r(\d{6})$")


class StoreHistory:
    """The store's copy of one model's revisions on one cluster target (records.deployments)."""

    def __init__(self, store: Store, model: str, context: str, namespace: str) -> None:
        self.root = deployments.target_dir(store.root, model, context, namespace)
        self.store = store

    def save(self, record: Record, event: str) -> None:
        deployments.save_revision(self.root, record, event)
        paths = [
            deployments.revision_file(self.root, int(record["revision"])),
            deployments.events_file(self.root),
        ]
        # A rollback from another machine reads the revisions from the shared store.
        warning = self.store.publish(paths)
        if warning:
            print(warning, file=sys.stderr, flush=True)

    def records(self) -> list[Record]:
        return deployments.revisions(self.root)


class ClusterHistory:
    """The cluster's copy: one ConfigMap per app, in the app's namespace."""

    def __init__(self, cluster: Cluster, app: str, labels: Mapping[str, str] | None = None):
        self.cluster = cluster
        self.ref = ObjectRef("v1", "ConfigMap", cluster.namespace, history_name(app))
        self.labels = {"app": app, "app.kubernetes.io/managed-by": MANAGED_BY, **(labels or {})}

    def read(self) -> tuple[list[Record], int | None]:
        """(records oldest first, the current revision)."""
        live = self.cluster.get(self.ref)
        if live is None:
            return [], None
        data = live.get("data") or {}
        records = []
        for key in sorted(data):
            if _KEY.match(key):
                # A value edited by hand on the cluster is skipped: the other revisions
                # (and the store's copy) still let rollback work.
                decoded = deployments.decode_revision(str(data[key]))
                if decoded is not None:
                    records.append(decoded)
        current = data.get("current")
        return records, int(current) if current and current.isdigit() else None

    def write(self, record: Record, current: int | None) -> None:
        """Store one revision's record and the current pointer; drop the oldest beyond
        HISTORY_LIMIT."""
        live = self.cluster.get(self.ref)
        key = revision_key(int(record["revision"]))
        value = deployments.encode_revision(stamped(record))
        pointer = "" if current is None else str(current)
        if live is None:
            self.cluster.create(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {
                        "name": self.ref.name,
                        "namespace": self.ref.namespace,
                        "labels": dict(self.labels),
                    },
                    "data": {key: value, "current": pointer},
                }
            )
            return
        data = live.get("data") or {}
        keys = sorted({k for k in data if _KEY.match(k)} | {key})
        patch: dict[str, Any] = {key: value, "current": pointer}
        for old in keys[: max(0, len(keys) - HISTORY_LIMIT)]:
            patch[old] = None
        self.cluster.patch(self.ref, {"data": patch})
