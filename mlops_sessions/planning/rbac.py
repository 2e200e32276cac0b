"""Least-privilege RBAC for whoever runs ``mlops deploy``, ``rollback``, ``promote``,
``abort``, ``status`` and cluster training: pure planning.

From the objects ``render`` produces for the selected models, and the records the product
keeps beside them (the deploy history and rollout state ConfigMaps, the deploy Lease), it
derives per namespace a ServiceAccount ``mlops-deployer``, a Role that allows exactly the
verbs mlops uses on those kinds, and the RoleBinding between them. Nothing cluster-scoped
is asked for: where the product would like to read a CRD (the TFJob operator check), it
falls back to API discovery, which every authenticated identity may read.

The Role is derived, not written by hand: a new kind in render's output is in the Role the
moment render produces it, and a kind this module does not know stops the render with the
name of the table to extend.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from mlops_sessions.errors import StepError

DEPLOYER = "mlops-deployer"

# kind -> (API group, resource) for every kind render or training produces.
RESOURCES: Mapping[str, tuple[str, str]] = {
    "ServiceAccount": ("", "serviceaccounts"),
    "ConfigMap": ("", "configmaps"),
    "Service": ("", "services"),
    "Deployment": ("apps", "deployments"),
    "HorizontalPodAutoscaler": ("autoscaling", "horizontalpodautoscalers"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets"),
    "NetworkPolicy": ("networking.k8s.io", "networkpolicies"),
    "DestinationRule": ("networking.istio.io", "destinationrules"),
    "VirtualService": ("networking.istio.io", "virtualservices"),
    "Job": ("batch", "jobs"),
    "TFJob": ("kubeflow.org", "tfjobs"),
}

# Deploy reads each object, creates or merge-patches it, and deletes what the config dropped.
APPLY_VERBS = ("create", "delete", "get", "patch")
# Records kept in the namespace: history and rollout-state ConfigMaps (read, created, patched
# by key), and the Lease that keeps two deploys of one model apart (renewed by patch, released
# by delete).
RECORD_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "configmaps", ("create", "get", "patch")),
    ("coordination.k8s.io", "leases", ("create", "delete", "get", "patch")),
)
# Following a training run: its pods are listed by the Job's label, their logs streamed.
TRAINING_RULES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("", "pods", ("list",)),
    ("", "pods/log", ("get",)),
)
TRAINING_KINDS = frozenset({"Job", "TFJob"})


def _rules(objects: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    verbs: dict[tuple[str, str], set[str]] = defaultdict(set)
    training = False
    for obj in objects:
        kind = str(obj.get("kind"))
        if kind not in RESOURCES:
            raise StepError(
                f"rbac: no API resource known for kind {kind!r}; add it to "
                "mlops_sessions/planning/rbac.py RESOURCES"
            )
        verbs[RESOURCES[kind]].update(APPLY_VERBS)
        training = training or kind in TRAINING_KINDS
    for group, resource, extra in RECORD_RULES + (TRAINING_RULES if training else ()):
        verbs[(group, resource)].update(extra)
    by_group: dict[str, list[tuple[str, tuple[str, ...]]]] = defaultdict(list)
    for (group, resource), granted in sorted(verbs.items()):
        by_group[group].append((resource, tuple(sorted(granted))))
    rules: list[dict[str, Any]] = []
    for group in sorted(by_group):
        # One rule per group and verb set keeps the Role short and easy to review.
        grouped: dict[tuple[str, ...], list[str]] = defaultdict(list)
        for resource, allowed in by_group[group]:
            grouped[allowed].append(resource)
        for allowed, resources in sorted(grouped.items(), key=lambda item: item[1]):
            rules.append({"apiGroups": [group], "resources": resources, "verbs": list(allowed)})
    return rules


def deployer_objects(
    objects_by_namespace: Mapping[str, Sequence[Mapping[str, Any]]], labels: Mapping[str, str]
) -> list[dict[str, Any]]:
    """ServiceAccount, Role and RoleBinding per namespace, for the given rendered objects."""
    out: list[dict[str, Any]] = []
    for namespace in sorted(objects_by_namespace):
        meta = {"name": DEPLOYER, "namespace": namespace, "labels": dict(labels)}
        out += [
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": dict(meta)},
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "Role",
                "metadata": dict(meta),
                "rules": _rules(objects_by_namespace[namespace]),
            },
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": dict(meta),
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "Role",
                    "name": DEPLOYER,
                },
                "subjects": [{"kind": "ServiceAccount", "name": DEPLOYER, "namespace": namespace}],
            },
        ]
    return out


def allowed(role: Mapping[str, Any]) -> set[tuple[str, str, str]]:
    """(group, resource, verb) for every permission in a Role: what tests compare with the
    requests the audit log saw."""
    return {
        (group, resource, verb)
        for rule in role.get("rules", [])
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }
