"""The deploy history ConfigMap on the cluster: numbered entries and a ``current`` pointer.

One key per revision (``r000042``) and ``current``, the revision that runs. An adapter: it
keeps each entry as the text it is given and drops the oldest beyond a limit; what an
entry holds (the revision record and its encoding) and the ConfigMap's name are the deploy
driver's (:mod:`mlops_sessions.drivers.history`), so ``rollback`` works from any machine.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mlops_sessions.executors.kube.client import Cluster
from mlops_sessions.executors.kube.configmap import configmap_ref, merge_data, read_data
from mlops_sessions.planning.deploy_plan import revision_key

CURRENT = "current"
_ENTRY = re.compile(r"^r(\d{6})$")


class HistoryConfigMap:
    """One app's history ConfigMap, in the cluster's namespace."""

    def __init__(self, cluster: Cluster, name: str, labels: Mapping[str, str]) -> None:
        self.cluster = cluster
        self.ref = configmap_ref(cluster, name)
        self.labels = dict(labels)

    def read(self) -> tuple[dict[int, str], int | None]:
        """(revision -> entry text, oldest first; the current revision)."""
        data = read_data(self.cluster, self.ref)
        if data is None:
            return {}, None
        entries = {}
        for key in sorted(data):
            match = _ENTRY.match(key)
            if match:
                entries[int(match.group(1))] = data[key]
        current = data.get(CURRENT)
        return entries, int(current) if current and current.isdigit() else None

    def write(self, revision: int, entry: str, current: int | None, keep: int) -> None:
        """Store one revision's entry and the current pointer; drop the oldest beyond keep."""
        key = revision_key(revision)
        live = read_data(self.cluster, self.ref) or {}
        kept = sorted({k for k in live if _ENTRY.match(k)} | {key})
        values: dict[str, str | None] = {
            key: entry,
            CURRENT: "" if current is None else str(current),
        }
        for old in kept[: max(0, len(kept) - keep)]:
            values[old] = None
        merge_data(self.cluster, self.ref, values, self.labels)
