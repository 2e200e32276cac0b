"""``mlops deploy``, ``rollback`` and ``status`` against a real API server.

The objects are validated, defaulted and admitted by a real kube-apiserver; the real
Deployment controller decides when a rollout is complete, on pods the real scheduler
placed and KWOK marked Ready. Nothing here is emulated except the kubelet (KWOK).
"""

from __future__ import annotations

import time
from typing import Any

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_first_deploy_is_accepted_and_rolled_out_by_the_real_controller(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    ref = project.build("v1", "model-aaa")
    result = mlops("deploy", "--json")
    assert result.code == 0, result.err
    (deployed,) = result.json()["deployments"]
    assert deployed["status"] == "rolled-out", deployed
    ns = project.namespace
    for track in ("stable", "canary"):
        dep = kube_cluster.deployment(ns, f"digits-{track}")
        assert kube_cluster.image(ns, f"digits-{track}") == ref
        status = dep["status"]
        # The controller's own verdict, not ours: observed, updated and available.
        assert status["observedGeneration"] == dep["metadata"]["generation"]
        assert status.get("updatedReplicas") == dep["spec"]["replicas"]
        assert status.get("availableReplicas") == dep["spec"]["replicas"]
        # The server defaulted what the product leaves out, and kept what it set.
        assert dep["spec"]["strategy"]["type"] == "RollingUpdate"
    pods = kube_cluster.pods(ns)
    assert pods and all(p["spec"]["nodeName"] == "kwok-cpu-0" for p in pods)
    assert kube_cluster.weights(ns, "digits") == {"stable": 90, "canary": 10}
    assert kube_cluster.history(ns, "digits")["current"] == "1"


def test_a_second_deploy_with_nothing_changed_writes_nothing(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    before = kube_cluster.resource_versions(project.namespace)
    again = mlops("deploy", "--json")
    assert again.code == 0, again.err
    assert again.json()["deployments"][0]["status"] == "unchanged"
    # A real server's defaults (strategy, probes' periods, imagePullPolicy ...) are not
    # mistaken for changes: every object keeps its resourceVersion.
    assert kube_cluster.resource_versions(project.namespace) == before


def test_a_config_only_change_reroutes_without_restarting_pods(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    ns = project.namespace

    def replica_sets() -> dict[str, str]:
        # The controller's own count of pod-template changes. (metadata.generation is no
        # guide: a real API server bumps it on a Deployment's annotation changes too.)
        return {
            t: kube_cluster.deployment(ns, f"digits-{t}")["metadata"]["annotations"][
                "deployment.kubernetes.io/revision"
            ]
            for t in ("stable", "canary")
        }

    before = replica_sets()
    pods = {p["metadata"]["uid"] for p in kube_cluster.pods(ns)}
    project.write(stable=50, canary=50)
    result = mlops("deploy", "--json")
    assert result.code == 0, result.err
    changes = {c["object"]: c["action"] for c in result.json()["deployments"][0]["changes"]}
    assert changes[f"VirtualService/{ns}/digits"] == "patch"
    assert kube_cluster.weights(ns, "digits") == {"stable": 50, "canary": 50}
    assert replica_sets() == before
    assert {p["metadata"]["uid"] for p in kube_cluster.pods(ns)} == pods


def test_a_new_build_rolls_both_tracks_through_the_real_controller(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    second = project.build("v2", "model-bbb")
    result = mlops("deploy", "--json")
    assert result.code == 0, result.err
    assert result.json()["deployments"][0]["status"] == "rolled-out"
    ns = project.namespace
    for track in ("stable", "canary"):
        dep = kube_cluster.deployment(ns, f"digits-{track}")
        assert dep["metadata"]["generation"] == 2
        assert dep["status"]["observedGeneration"] == 2
        assert dep["status"]["updatedReplicas"] == dep["spec"]["replicas"]
    running = {
        p["spec"]["containers"][0]["image"]
        for p in kube_cluster.pods(ns)
        if not p["metadata"].get("deletionTimestamp")
    }
    assert running == {second}


def test_pods_that_never_become_ready_make_the_deploy_restore_the_previous_revision(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    good = project.build("v1", "model-aaa")
    project.write(timeout="6s")
    assert mlops("deploy").code == 0
    # A node selector no node matches: the real scheduler leaves the new pods Pending,
    # so the Deployment never completes and the deploy's own deadline catches it.
    project.write(timeout="6s", deploy_extra="      node_selector: {pool: none-such}\n")
    project.build("v2", "model-bbb")
    result = mlops("deploy", "--json")
    assert result.code == 1
    (outcome,) = result.json()["deployments"]
    assert outcome["status"] == "failed"
    assert outcome["restored_to"] == 1
    assert "rollout_timeout" in outcome["reason"]
    ns = project.namespace
    assert kube_cluster.image(ns, "digits-stable") == good
    spec = kube_cluster.deployment(ns, "digits-stable")["spec"]["template"]["spec"]
    assert "nodeSelector" not in spec  # the restore removed the field, not only the value
    recorded = kube_cluster.history(ns, "digits")
    assert recorded["records"]["r000002"]["status"] == "failed"


def test_rollback_to_the_previous_and_to_a_named_revision(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    first = project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    second = project.build("v2", "model-bbb")
    assert mlops("deploy").code == 0
    project.build("v3", "model-ccc")
    assert mlops("deploy").code == 0
    ns = project.namespace

    started = time.monotonic()
    back = mlops("rollback", "--json")
    previous_took = time.monotonic() - started
    assert back.code == 0, back.err
    assert back.json()["target"] == 2
    assert kube_cluster.image(ns, "digits-stable") == second
    assert kube_cluster.deployment(ns, "digits-stable")["status"]["updatedReplicas"] == 2

    started = time.monotonic()
    named = mlops("rollback", "--to", "1", "--json")
    named_took = time.monotonic() - started
    assert named.code == 0, named.err
    assert kube_cluster.image(ns, "digits-stable") == first
    assert kube_cluster.image(ns, "digits-canary") == first
    # Rolled out by the controller, not merely patched: every replica is the old image.
    running = {
        p["spec"]["containers"][0]["image"]
        for p in kube_cluster.pods(ns)
        if not p["metadata"].get("deletionTimestamp")
    }
    assert running == {first}
    print(f"rollback to previous {previous_took:.2f} s, to revision 1 {named_took:.2f} s")


def test_status_reads_what_the_real_cluster_runs(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    ref = project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    result = mlops("status", "--json")
    assert result.code == 0, result.err
    (report,) = result.json()["models"]
    stable = next(t for t in report["tracks"] if t["deployment"] == "digits-stable")
    assert stable["image"] == ref
    assert stable["ready"] == 2 and stable["replicas"] == 2
    assert report["weights"] == {"stable": 90, "canary": 10}


def test_two_concurrent_deploys_never_interleave(
    kube_cluster: Any, project: Any, tmp_path: Any
) -> None:
    import subprocess
    import sys

    from tests.conftest import clean_env

    project.build("v1", "model-aaa")
    env = clean_env(KUBECONFIG=str(kube_cluster.kubeconfig))
    argv = [sys.executable, "-m", "mlops_sessions", "deploy", "-c", str(project.config)]
    runs = [
        subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    results = [(r.wait(timeout=120), *r.communicate()) for r in runs]
    codes = sorted(code for code, _, _ in results)
    errors = "\n".join(err for _, _, err in results)
    # One holds the Lease and deploys; the other either waits its turn and finds nothing to
    # do, or stops before writing anything, naming the holder and how to clear it.
    assert codes[0] == 0, errors
    if codes[1] != 0:
        assert "another deploy of 'digits' is running" in errors
    recorded = kube_cluster.history(project.namespace, "digits")
    assert list(recorded["records"]) == ["r000001"]
    lease = kube_cluster.get(
        f"/apis/coordination.k8s.io/v1/namespaces/{project.namespace}/leases/digits-mlops-deploy"
    )
    assert lease is None or not lease["spec"].get("holderIdentity")


def test_fields_another_manager_changed_are_set_back_and_named_others_are_left_alone(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    ns = project.namespace
    base = f"/apis/apps/v1/namespaces/{ns}/deployments/digits-stable"
    merge = "application/merge-patch+json"
    # `kubectl scale` (the scale subresource) and `kubectl edit`, each as its own manager.
    kube_cluster.send(
        "PATCH", f"{base}/scale?fieldManager=kubectl", {"spec": {"replicas": 5}}, merge
    )
    kube_cluster.send(
        "PATCH",
        f"{base}?fieldManager=kubectl-edit",
        {"metadata": {"annotations": {"team/owner": "alice"}, "labels": {"track": "blue"}}},
        merge,
    )
    preview = mlops("deploy", "--dry-run")
    assert preview.code == 0, preview.err
    said = preview.out + preview.err
    assert "spec.replicas: setting back 5 (set by field manager 'kubectl') to 2" in said
    assert "set deploy.replicas, or deploy.autoscaling" in said
    assert (
        "metadata.labels.track: setting back 'blue' (set by field manager 'kubectl-edit')" in said
    )
    result = mlops("deploy")
    assert result.code == 0, result.err
    dep = kube_cluster.deployment(ns, "digits-stable")
    assert dep["spec"]["replicas"] == 2
    assert dep["metadata"]["labels"]["track"] == "stable"
    assert dep["metadata"]["annotations"]["team/owner"] == "alice"  # not ours: kept


def test_an_immutable_field_stops_the_deploy_before_any_write_with_the_fix(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    ns = project.namespace
    # A Deployment of the same name made by hand earlier, with another selector.
    kube_cluster.send(
        "POST",
        f"/apis/apps/v1/namespaces/{ns}/deployments?fieldManager=kubectl",
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "digits-stable"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "legacy"}},
                "template": {
                    "metadata": {"labels": {"app": "legacy"}},
                    "spec": {"containers": [{"name": "c", "image": "x/y:1"}]},
                },
            },
        },
    )
    generation = kube_cluster.deployment(ns, "digits-stable")["metadata"]["generation"]
    project.build("v1", "model-aaa")
    result = mlops("deploy")
    assert result.code == 1
    (line,) = [x for x in result.err.splitlines() if "spec.selector" in x]
    assert "field manager 'kubectl'" in line and "nothing was written" in line
    assert f"kubectl -n {ns} delete deployment digits-stable" in line
    # Nothing of the product's was created, and the stranger was not touched.
    assert kube_cluster.get(f"/api/v1/namespaces/{ns}/serviceaccounts/digits") is None
    assert kube_cluster.get(f"/api/v1/namespaces/{ns}/configmaps/digits-serve") is None
    assert kube_cluster.deployment(ns, "digits-stable")["metadata"]["generation"] == generation
    kube_cluster.send("DELETE", f"/apis/apps/v1/namespaces/{ns}/deployments/digits-stable")
    assert mlops("deploy").code == 0
