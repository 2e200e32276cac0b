"""ConfigMaps as small key-value records on the cluster: read one, merge keys into one.

The one create-or-patch of a ConfigMap in the package: the deploy history and the rollout
state both keep their records this way. What the values mean is the caller's.
"""

from __future__ import annotations

from collections.abc import Mapping

from mlops_sessions.executors.kube.client import Cluster
from mlops_sessions.planning.deploy_plan import ObjectRef


def configmap_ref(cluster: Cluster, name: str) -> ObjectRef:
    """The ConfigMap called name in the cluster's namespace."""
    return ObjectRef("v1", "ConfigMap", cluster.namespace, name)


def read_data(cluster: Cluster, key: ObjectRef) -> dict[str, str] | None:
    """The ConfigMap's data (an empty dict when it has none); None when it does not exist."""
    live = cluster.get(key)
    if live is None:
        return None
    return {str(k): str(v) for k, v in (live.get("data") or {}).items()}


def merge_data(
    cluster: Cluster,
    key: ObjectRef,
    values: Mapping[str, str | None],
    labels: Mapping[str, str],
) -> None:
    """Set the given keys (None removes a key) and labels, creating the ConfigMap when it
    does not exist yet; keys and labels not named are left as they are."""
    if cluster.get(key) is None:
        cluster.create(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": key.name, "namespace": key.namespace, "labels": dict(labels)},
                # A key to remove from a ConfigMap that does not exist is simply left out.
                "data": {k: v for k, v in values.items() if v is not None},
            }
        )
        return
    cluster.patch(key, {"metadata": {"labels": dict(labels)}, "data": dict(values)})
