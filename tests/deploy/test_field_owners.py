"""planning/field_owners.py: which fields a deploy sets back from another manager, and which
immutable field changes it refuses, on managedFields as a real API server writes them."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from mlops_sessions.planning import field_owners

LIVE: dict[str, Any] = {
    "metadata": {
        "labels": {"track": "blue", "team": "a"},
        "managedFields": [
            {
                "manager": "mlops-sessions",
                "operation": "Update",
                "fieldsV1": {
                    "f:metadata": {"f:labels": {"f:track": {}}},
                    "f:spec": {"f:selector": {}, "f:template": {}},
                },
            },
            {
                "manager": "kubectl",
                "operation": "Update",
                "subresource": "scale",
                "fieldsV1": {"f:spec": {"f:replicas": {}}},
            },
            {
                "manager": "kubectl-edit",
                "operation": "Update",
                "fieldsV1": {"f:metadata": {"f:labels": {"f:track": {}, "f:team": {}}}},
            },
            {
                "manager": "kube-controller-manager",
                "operation": "Update",
                "fieldsV1": {
                    "f:metadata": {"f:annotations": {"f:deployment.kubernetes.io/revision": {}}}
                },
            },
        ],
    },
    "spec": {"replicas": 5, "selector": {"matchLabels": {"app": "x"}}},
}


def test_fields_owned_by_others_that_the_patch_changes_are_named() -> None:
    patch = {"metadata": {"labels": {"track": "stable"}}, "spec": {"replicas": 2}}
    found = {(t.path, t.manager) for t in field_owners.taken_back(LIVE, patch, "mlops-sessions")}
    assert found == {("metadata.labels.track", "kubectl-edit"), ("spec.replicas", "kubectl")}


def test_unchanged_values_our_own_fields_and_controllers_are_not_named() -> None:
    patch = {
        "metadata": {
            "labels": {"team": "a"},
            "annotations": {"deployment.kubernetes.io/revision": "9"},
        }
    }
    assert field_owners.taken_back(LIVE, patch, "mlops-sessions") == []


@given(st.integers(min_value=0, max_value=50))
def test_replicas_are_named_exactly_when_they_differ(replicas: int) -> None:
    found = field_owners.taken_back(LIVE, {"spec": {"replicas": replicas}}, "mlops-sessions")
    assert bool(found) == (replicas != 5)
    if found:
        assert "deploy.autoscaling" in field_owners.hint_for(found[0].path)


def test_a_different_selector_is_an_immutable_change_and_the_same_is_not() -> None:
    new = {"spec": {"selector": {"matchLabels": {"app": "y"}}}}
    assert field_owners.immutable_change("Deployment", LIVE, new) == "spec.selector"
    same = {"spec": {"selector": {"matchLabels": {"app": "x"}}}}
    assert field_owners.immutable_change("Deployment", LIVE, same) is None
    assert field_owners.immutable_change("ConfigMap", LIVE, new) is None
    assert field_owners.owners_of(LIVE, "spec.selector", "kubectl") == ["mlops-sessions"]


def test_a_dropped_key_someone_else_changed_is_named_as_removed() -> None:
    (found,) = field_owners.taken_back(
        LIVE, {"metadata": {"labels": {"team": None}}}, "mlops-sessions"
    )
    assert found.manager == "kubectl-edit"
    assert found.message().startswith("metadata.labels.team: removing 'a'")
