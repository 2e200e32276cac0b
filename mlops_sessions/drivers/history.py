"""Deploy records, kept twice: in the ``.mlops/`` store and on the cluster.

Every apply is a numbered revision. Its record (status, images and digests, commit, model
hash, traffic weights, manifest hash and the manifests themselves) is written

- to the store (layout and format: :mod:`mlops_sessions.records.deployments`), *before* the
  first write to the cluster, so an interrupted deploy is never unrecorded; and
- to the cluster, in the history ConfigMap (name: :func:`records.keys.history_configmap`;
  the last ``HISTORY_LIMIT`` revisions and ``current``, the revision that runs), so
  ``rollback`` works from any machine, without the store and without rebuilding anything.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

from mlops_sessions.executors.kube.client import Cluster
from mlops_sessions.executors.kube.history import HistoryConfigMap
from mlops_sessions.planning.deploy_plan import HISTORY_LIMIT
from mlops_sessions.planning.k8s_common import MANAGED_BY
from mlops_sessions.records import deployments, keys
from mlops_sessions.records.io import now, stamped
from mlops_sessions.records.store import Store

__all__ = ["ClusterHistory", "Record", "StoreHistory", "now"]

Record = dict[str, Any]


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
        self.configmap = HistoryConfigMap(
            cluster,
            keys.history_configmap(app),
            {"app": app, "app.kubernetes.io/managed-by": MANAGED_BY, **(labels or {})},
        )

    def read(self) -> tuple[list[Record], int | None]:
        """(records oldest first, the current revision)."""
        entries, current = self.configmap.read()
        records = []
        for text in entries.values():
            # A value edited by hand on the cluster is skipped: the other revisions (and the
            # store's copy) still let rollback work.
            decoded = deployments.decode_revision(text)
            if decoded is not None:
                records.append(decoded)
        return records, current

    def write(self, record: Record, current: int | None) -> None:
        """Store one revision's record and the current pointer; drop the oldest beyond
        HISTORY_LIMIT."""
        self.configmap.write(
            int(record["revision"]),
            deployments.encode_revision(stamped(record)),
            current,
            HISTORY_LIMIT,
        )
