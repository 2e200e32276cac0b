"""The pure half of apply: merge patches, no-op detection, rollout rules, revision choice."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_sessions.planning.deploy_plan import (
    LAST_APPLIED,
    covers,
    merge_patch,
    pick_target,
    plan_changes,
    readiness,
    ref,
    secret_uses,
    stamp,
    traffic_weights,
)


def deployment(image: str = "r/x@sha256:" + "a" * 64, replicas: int = 2) -> dict:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "ml", "labels": {"app": "d"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "d"}},
            "template": {"spec": {"containers": [{"name": "c", "image": image}]}},
        },
    }


def test_server_defaults_do_not_count_as_a_change():
    desired = deployment()
    live = json.loads(json.dumps(desired))
    live["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"] = "IfNotPresent"
    live["spec"]["progressDeadlineSeconds"] = 600
    live["status"] = {"replicas": 2}
    assert covers(live, desired)
    assert merge_patch(live, desired, desired) == {}


def test_fields_the_server_omits_when_empty_are_no_change():
    desired = deployment()
    desired["spec"]["paused"] = False
    desired["spec"]["template"]["spec"]["containers"][0]["resources"] = {}
    live = deployment()  # Go's omitempty drops false and {} from the answer
    assert covers(live, desired)
    assert merge_patch(live, desired, desired) == {}
    desired["spec"]["paused"] = True
    assert merge_patch(live, desired, desired) == {"spec": {"paused": True}}


def test_changed_list_is_replaced_and_dropped_keys_are_deleted():
    previous = deployment()
    previous["metadata"]["labels"]["team"] = "a"
    live = json.loads(json.dumps(previous))
    live["metadata"]["labels"]["added-by-someone"] = "x"
    desired = deployment(image="r/x@sha256:" + "b" * 64)
    patch = merge_patch(live, desired, previous)
    assert patch["metadata"] == {"labels": {"team": None}}
    assert patch["spec"] == {
        "template": {"spec": {"containers": desired["spec"]["template"]["spec"]["containers"]}}
    }


def test_restamping_an_unchanged_object_is_no_change():
    live = stamp(deployment(), 1)
    (change,) = plan_changes([stamp(deployment(), 2)], {ref(live): live})
    assert change.action == "unchanged"
    (change,) = plan_changes([stamp(deployment(replicas=3), 2)], {ref(live): live})
    assert change.action == "patch"
    assert change.patch["spec"] == {"replicas": 3}
    assert (
        json.loads(change.patch["metadata"]["annotations"][LAST_APPLIED])["spec"]["replicas"] == 3
    )


def test_objects_dropped_from_the_set_are_deleted():
    canary = deployment()
    canary["metadata"]["name"] = "d-canary"
    changes = plan_changes([], {ref(canary): canary}, [ref(canary)])
    assert [(c.action, str(c.ref)) for c in changes] == [("delete", "Deployment/ml/d-canary")]


def test_rollout_rules():
    dep = deployment()
    dep["metadata"]["generation"] = 2
    dep["status"] = {"observedGeneration": 1}
    assert "waiting for the controller" in readiness(dep).message
    dep["status"] = {"observedGeneration": 2, "updatedReplicas": 1, "replicas": 3}
    assert readiness(dep).message == "d: 1 of 2 replicas updated"
    dep["status"] = {"observedGeneration": 2, "updatedReplicas": 2, "replicas": 3}
    assert readiness(dep).message == "d: 1 old replicas pending termination"
    dep["status"] = {
        "observedGeneration": 2,
        "updatedReplicas": 2,
        "replicas": 2,
        "availableReplicas": 1,
    }
    assert not readiness(dep).done
    dep["status"]["availableReplicas"] = 2
    assert readiness(dep).done
    dep["status"]["conditions"] = [
        {"type": "Progressing", "reason": "ProgressDeadlineExceeded", "message": "too slow"}
    ]
    assert readiness(dep).failed == "d: too slow"


def test_pick_target_prefers_the_last_good_different_revision():
    history = [
        {"revision": 1, "status": "rolled-out", "manifest_hash": "a"},
        {"revision": 2, "status": "rolled-out", "manifest_hash": "b"},
        {"revision": 3, "status": "failed", "manifest_hash": "c"},
        {"revision": 4, "status": "rolled-out", "manifest_hash": "a"},
    ]
    assert pick_target(history, 4, None)["revision"] == 2
    assert pick_target(history, 2, None)["revision"] == 1
    assert pick_target(history, 4, 3)["revision"] == 3
    assert pick_target(history, 1, None) is None
    assert pick_target(history, 4, 9) is None


def test_secret_uses_and_weights():
    dep = deployment()
    container = dep["spec"]["template"]["spec"]["containers"][0]
    container["env"] = [
        {"name": "A", "valueFrom": {"secretKeyRef": {"name": "s1", "key": "k"}}},
        {"name": "B", "valueFrom": {"secretKeyRef": {"name": "s2", "key": "k", "optional": True}}},
    ]
    container["envFrom"] = [{"secretRef": {"name": "s3"}}]
    assert [(u.secret, u.key) for u in secret_uses([dep])] == [("s1", "k"), ("s3", None)]
    vs = {
        "kind": "VirtualService",
        "spec": {
            "http": [
                {"match": [{}], "route": [{"destination": {"subset": "canary"}, "weight": 100}]},
                {
                    "route": [
                        {"destination": {"subset": "stable"}, "weight": 80},
                        {"destination": {"subset": "canary"}, "weight": 20},
                    ]
                },
            ]
        },
    }
    assert traffic_weights([vs]) == {"stable": 80, "canary": 20}


def _apply_merge_patch(target, patch):
    """RFC 7386, as the API server applies application/merge-patch+json."""
    if not isinstance(patch, dict):
        return patch
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _apply_merge_patch(out.get(key), value)
    return out


_keys = st.sampled_from(["a", "b", "c", "d"])
_leaf = st.one_of(st.integers(-3, 3), st.booleans(), st.sampled_from(["x", "y", ""]))
_docs = st.recursive(
    _leaf,
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(_keys, inner, max_size=4)),
    max_leaves=12,
)
_objects = st.dictionaries(_keys, _docs, max_size=4)


@settings(max_examples=300, deadline=None)
@given(live=_objects, desired=_objects, previous=_objects)
def test_the_patch_takes_any_live_object_to_the_desired_one(live, desired, previous):
    patched = _apply_merge_patch(live, merge_patch(live, desired, previous))
    assert covers(patched, desired)
    # Applying again changes nothing: the second apply of the same config is a no-op.
    assert merge_patch(patched, desired, desired) == {}
    # Keys we applied before and dropped are gone; keys nobody applied are kept.
    for key in live:
        if key not in desired:
            assert (key in patched) == (key not in previous)
