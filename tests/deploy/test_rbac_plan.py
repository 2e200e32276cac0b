"""planning/rbac.py: the deployer's Role follows what render produces, offline."""

from __future__ import annotations

import pytest

from mlops_sessions.errors import StepError
from mlops_sessions.planning import rbac


def _role(kinds: list[str]) -> set[tuple[str, str, str]]:
    objects = [{"kind": kind} for kind in kinds]
    (_, role, binding) = rbac.deployer_objects({"ml": objects}, {"team": "a"})
    assert binding["roleRef"]["name"] == role["metadata"]["name"] == rbac.DEPLOYER
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": rbac.DEPLOYER, "namespace": "ml"}
    ]
    return rbac.allowed(role)


def test_every_rendered_kind_gets_exactly_the_apply_verbs_and_records_their_own() -> None:
    granted = _role(["Deployment", "VirtualService", "HorizontalPodAutoscaler"])
    assert {(g, r) for g, r, _ in granted} == {
        ("apps", "deployments"),
        ("networking.istio.io", "virtualservices"),
        ("autoscaling", "horizontalpodautoscalers"),
        ("", "configmaps"),
        ("coordination.k8s.io", "leases"),
    }
    assert {v for g, r, v in granted if r == "deployments"} == set(rbac.APPLY_VERBS)
    assert ("", "pods", "list") not in granted  # no training, no pod access


def test_training_kinds_add_reading_their_pods_and_logs() -> None:
    granted = _role(["Job", "ConfigMap"])
    assert {("", "pods", "list"), ("", "pods/log", "get"), ("batch", "jobs", "create")} <= granted
    assert ("", "pods", "delete") not in granted


def test_a_kind_without_a_known_resource_stops_with_the_table_to_extend() -> None:
    with pytest.raises(StepError, match="RESOURCES"):
        _role(["StatefulSet"])


def test_one_identity_per_namespace_in_a_stable_order() -> None:
    made = rbac.deployer_objects({"b": [{"kind": "Service"}], "a": [{"kind": "Service"}]}, {})
    assert [(o["kind"], o["metadata"]["namespace"]) for o in made] == [
        ("ServiceAccount", "a"),
        ("Role", "a"),
        ("RoleBinding", "a"),
        ("ServiceAccount", "b"),
        ("Role", "b"),
        ("RoleBinding", "b"),
    ]
