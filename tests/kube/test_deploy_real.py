"""``mlops deploy``, ``rollback`` and ``status`` against a real API server.

The objects are validated, defaulted and admitted by a real kube-apiserver; the real
Deployment controller decides when a rollout is complete, on pods the real scheduler
placed and KWOK marked Ready. Nothing here is emulated except the kubelet (KWOK).
"""

from __future__ import annotations

import json
import shutil
import time
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def test_first_deploy_is_accepted_and_rolled_out_by_the_real_controller(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    ref = project.build("v1", "model-aaa")
    ns = project.namespace
    # A dry run on an empty namespace shows new objects only, and writes nothing.
    mark = kube_cluster.mark()
    preview = mlops("deploy", "--dry-run")
    assert preview.code == 0, preview.err
    assert f"+++ apply: Deployment/{ns}/digits-stable" in preview.out
    assert kube_cluster.writes(mark) == []
    result = mlops("deploy", "--json")
    assert result.code == 0, result.err
    (deployed,) = result.json()["deployments"]
    assert deployed["status"] == "rolled-out", deployed
    assert deployed["revision"] == 1
    assert {c["object"]: c["action"] for c in deployed["changes"]} == {
        f"{kind}/{ns}/{name}": "create"
        for kind, name in [
            ("ServiceAccount", "digits"),
            ("ConfigMap", "digits-serve"),
            ("Service", "digits"),
            ("Deployment", "digits-stable"),
            ("Deployment", "digits-canary"),
            ("DestinationRule", "digits"),
            ("VirtualService", "digits"),
        ]
    }
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
    # The A/B cohort goes to the canary first; the DestinationRule names both subsets.
    vs = kube_cluster.virtual_service(ns, "digits")
    ab = next(r for r in vs["spec"]["http"] if r["name"] == "ab-canary")
    assert ab["match"] == [{"headers": {"x-digits-canary": {"exact": "always"}}}]
    assert [(d["destination"]["subset"], d["weight"]) for d in ab["route"]] == [("canary", 100)]
    dr = kube_cluster.get(f"/apis/networking.istio.io/v1/namespaces/{ns}/destinationrules/digits")
    assert dr is not None
    assert {s["name"]: s["labels"]["track"] for s in dr["spec"]["subsets"]} == {
        "stable": "stable",
        "canary": "canary",
    }
    # The cluster's history and the store hold the same record; the store an event log.
    recorded = kube_cluster.history(ns, "digits")
    assert recorded["current"] == "1"
    record = recorded["records"]["r000001"]
    assert record["status"] == "rolled-out"
    assert record["digests"]["digits-stable"] == ref.split("@")[1]
    assert record["lineage"]["model_hash"] == "model-aaa"
    assert record["weights"] == {"stable": 90, "canary": 10}
    assert len(record["manifests"]) == 7
    stored = json.loads((project.target() / "revisions" / "r000001.json").read_text())
    assert (stored["status"], stored["manifest_hash"]) == ("rolled-out", record["manifest_hash"])
    events = (project.target() / "events.jsonl").read_text().splitlines()
    assert [json.loads(x)["event"] for x in events] == ["applying", "rolled-out"]
    # `mlops lineage` of the run finds the revision that rolled it out.
    from mlops_sessions.records.store import Store
    from mlops_sessions.steps.lineage import deployments_of_run

    (traced,) = deployments_of_run(Store(project.root / ".mlops"), "digits", "run-v1", "model-aaa")
    assert (traced["target"], traced["revision"], traced["status"]) == (
        f"mlops-test--{ns}",
        1,
        "rolled-out",
    )
    assert "stable" in traced["as"]


def test_a_second_deploy_with_nothing_changed_writes_nothing(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    before = kube_cluster.resource_versions(project.namespace)
    mark = kube_cluster.mark()
    again = mlops("deploy", "--json")
    assert again.code == 0, again.err
    (deployed,) = again.json()["deployments"]
    assert (deployed["status"], deployed["revision"]) == ("unchanged", 1)
    assert {c["action"] for c in deployed["changes"]} == {"unchanged"}
    assert "nothing was written" in mlops("deploy").out
    # Not one write request (the audit log of the product's identity), and a real server's
    # defaults (strategy, probes' periods, imagePullPolicy ...) are not mistaken for changes:
    # every object keeps its resourceVersion.
    assert kube_cluster.writes(mark) == []
    assert kube_cluster.resource_versions(project.namespace) == before
    assert kube_cluster.history(project.namespace, "digits")["current"] == "1"


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
    project.write(stable=50, canary=50, header="x-beta")
    # The dry run shows the diff against the live objects and writes nothing.
    mark = kube_cluster.mark()
    preview = mlops("deploy", "--dry-run")
    assert preview.code == 0, preview.err
    assert f"--- cluster: VirtualService/{ns}/digits" in preview.out
    assert "-      weight: 90" in preview.out and "+      weight: 50" in preview.out
    changed_lines = [
        line
        for line in preview.out.splitlines()
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    # Only routing and the config-hash annotation change: no new image, no pod restart.
    assert not [line for line in changed_lines if "image" in line or "replicas" in line]
    assert kube_cluster.writes(mark) == []
    assert kube_cluster.weights(ns, "digits") == {"stable": 90, "canary": 10}

    mark = kube_cluster.mark()
    result = mlops("deploy", "--json")
    assert result.code == 0, result.err
    changed = {
        c["object"]: c["action"]
        for c in result.json()["deployments"][0]["changes"]
        if c["action"] != "unchanged"
    }
    # Routing changes; the Deployments only get their config-hash annotation refreshed.
    assert changed == {
        f"VirtualService/{ns}/digits": "patch",
        f"Deployment/{ns}/digits-stable": "patch",
        f"Deployment/{ns}/digits-canary": "patch",
    }
    writes = kube_cluster.writes(mark)
    assert writes.count("patch virtualservices/digits") == 1, writes
    assert not [w for w in writes if w.startswith(("patch services/", "create services/"))]
    assert kube_cluster.weights(ns, "digits") == {"stable": 50, "canary": 50}
    # The A/B slice moved with the header renamed in YAML.
    vs = kube_cluster.virtual_service(ns, "digits")
    ab = next(r for r in vs["spec"]["http"] if r["name"] == "ab-canary")
    assert ab["match"] == [{"headers": {"x-beta": {"exact": "always"}}}]
    assert replica_sets() == before
    assert {p["metadata"]["uid"] for p in kube_cluster.pods(ns)} == pods
    recorded = kube_cluster.history(ns, "digits")
    assert recorded["current"] == "2"
    assert recorded["records"]["r000002"]["weights"] == {"stable": 50, "canary": 50}


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
    records = kube_cluster.history(ns, "digits")["records"]
    first, record = records["r000001"], records["r000002"]
    assert record["lineage"]["model_hash"] == "model-bbb"
    assert record["previous"] == {
        "revision": 1,
        "digests": first["digests"],
        "weights": {"stable": 90, "canary": 10},
        "manifest_hash": first["manifest_hash"],
    }


def test_pods_that_never_become_ready_make_the_deploy_restore_the_previous_revision(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    first = project.build("v1", "model-aaa")
    project.write(timeout="6s")
    assert mlops("deploy").code == 0
    good = project.build("v2", "model-bbb")
    assert mlops("deploy").code == 0
    # A node selector no node matches: the real scheduler leaves the new pods Pending,
    # so the Deployment never completes and the deploy's own deadline catches it.
    project.write(timeout="6s", deploy_extra="      node_selector: {pool: none-such}\n")
    project.build("v3", "model-ccc")
    result = mlops("deploy", "--json")
    assert result.code == 1
    (outcome,) = result.json()["deployments"]
    assert outcome["status"] == "failed"
    assert outcome["restored_to"] == 2
    assert "did not finish within 6s (deploy.rollout_timeout)" in outcome["reason"]
    ns = project.namespace
    assert kube_cluster.image(ns, "digits-stable") == good
    dep = kube_cluster.deployment(ns, "digits-stable")
    assert "nodeSelector" not in dep["spec"]["template"]["spec"]  # the field, not the value
    assert dep["metadata"]["annotations"]["mlops-sessions.dev/revision"] == "2"
    recorded = kube_cluster.history(ns, "digits")
    assert recorded["current"] == "2"
    failed = recorded["records"]["r000003"]
    assert (failed["status"], failed["restored_to"]) == ("failed", 2)
    stored = json.loads((project.target() / "revisions" / "r000003.json").read_text())
    assert stored["status"] == "failed"
    # The Lease is released after a failure too.
    lease = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/digits-mlops-deploy"
    assert kube_cluster.get(lease) is None
    # A rollback skips the failed revision: back to 1, the last good one before 2.
    back = mlops("rollback", "--json")
    assert back.code == 0, back.err
    assert back.json()["target"] == 1
    assert kube_cluster.image(ns, "digits-stable") == first


def test_rollback_to_the_previous_and_to_a_named_revision(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    first = project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    second = project.build("v2", "model-bbb")
    project.write(stable=50, canary=50)
    assert mlops("deploy").code == 0
    third = project.build("v3", "model-ccc")
    project.write(stable=0, canary=100)
    assert mlops("deploy").code == 0
    ns = project.namespace

    mark = kube_cluster.mark()
    preview = mlops("rollback", "--dry-run")
    assert preview.code == 0, preview.err
    assert f"--- cluster: Deployment/{ns}/digits-stable" in preview.out
    assert kube_cluster.writes(mark) == []
    assert kube_cluster.image(ns, "digits-stable") == third

    started = time.monotonic()
    back = mlops("rollback", "--json")
    previous_took = time.monotonic() - started
    assert back.code == 0, back.err
    outcome = back.json()
    assert outcome["status"] == "rolled-out"
    assert (outcome["target"], outcome["from"], outcome["revision"]) == (2, 3, 4)
    assert kube_cluster.image(ns, "digits-stable") == second
    assert kube_cluster.image(ns, "digits-canary") == second
    assert kube_cluster.weights(ns, "digits") == {"stable": 50, "canary": 50}
    assert kube_cluster.deployment(ns, "digits-stable")["status"]["updatedReplicas"] == 2
    recorded = kube_cluster.history(ns, "digits")
    assert recorded["current"] == "4"
    record = recorded["records"]["r000004"]
    assert (record["source"], record["rollback_of"]) == ("rollback", 2)
    assert record["lineage"]["model_hash"] == "model-bbb"

    # Rolling back again swaps back, like `kubectl rollout undo`; a deploy of the build
    # and config the cluster then runs is a no-op.
    again = mlops("rollback")
    assert again.code == 0, again.err
    assert "to revision 3" in again.out
    assert kube_cluster.image(ns, "digits-stable") == third
    assert "nothing was written" in mlops("deploy").out

    # Another machine: no store, no build records, only the cluster's history.
    shutil.rmtree(project.root / ".mlops")
    started = time.monotonic()
    named = mlops("rollback", "--to", "1", "--json")
    named_took = time.monotonic() - started
    assert named.code == 0, named.err
    assert named_took < 10, f"rollback took {named_took:.1f}s"
    assert kube_cluster.image(ns, "digits-stable") == first
    assert kube_cluster.image(ns, "digits-canary") == first
    assert kube_cluster.weights(ns, "digits") == {"stable": 90, "canary": 10}
    # Rolled out by the controller, not merely patched: every replica is the old image.
    running = {
        p["spec"]["containers"][0]["image"]
        for p in kube_cluster.pods(ns)
        if not p["metadata"].get("deletionTimestamp")
    }
    assert running == {first}
    assert (project.target() / "revisions" / "r000006.json").is_file()  # the store learns
    status = mlops("status", "--json").json()["models"][0]
    assert status["current_revision"] == 6
    assert [r["status"] for r in status["revisions"]] == ["rolled-out"] * 6
    unknown = mlops("rollback", "--to", "7")
    assert unknown.code == 1
    assert "revision 7 is not recorded (revisions: 1 (rolled-out)" in unknown.err
    print(f"rollback to previous {previous_took:.2f} s, to revision 1 {named_took:.2f} s")


def test_rollback_and_status_before_there_is_anything_to_go_back_to(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    ns = project.namespace
    mark = kube_cluster.mark()
    status = mlops("status")
    assert status.code == 0, status.err
    assert f"digits on mlops-test/{ns}: revision - (no deploy recorded)" in status.out
    report = mlops("status", "--json").json()["models"][0]
    assert report["current_revision"] is None
    assert [t["present"] for t in report["tracks"]] == [False, False]
    nothing = mlops("rollback")
    assert nothing.code == 1
    assert f"no deploy of 'digits' is recorded on mlops-test/{ns}" in nothing.err
    assert kube_cluster.writes(mark) == []
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    only = mlops("rollback")
    assert only.code == 1
    assert "an earlier revision that rolled out is not recorded" in only.err


def test_dropping_the_canary_deletes_its_objects_and_rollback_brings_them_back(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    ns = project.namespace
    text = project.config.read_text().replace("stable: {weight: 90}", "stable: {weight: 100}")
    project.config.write_text(
        "".join(
            line + "\n"
            for line in text.splitlines()
            if "canary: {weight" not in line and "ab: {header" not in line
        )
    )
    result = mlops("deploy", "--json")
    assert result.code == 0, result.err
    actions = {c["object"]: c["action"] for c in result.json()["deployments"][0]["changes"]}
    assert actions[f"Deployment/{ns}/digits-canary"] == "delete"
    path = f"/apis/apps/v1/namespaces/{ns}/deployments/digits-canary"
    assert kube_cluster.get(path) is None
    assert kube_cluster.weights(ns, "digits") == {"stable": 100}
    assert mlops("rollback").code == 0
    assert kube_cluster.get(path) is not None
    assert kube_cluster.weights(ns, "digits") == {"stable": 90, "canary": 10}


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
    assert stable["digest"] == ref.split("@")[1]
    assert stable["ready"] == 2 and stable["replicas"] == 2
    assert stable["lineage"]["git-commit"] == "commit-v1"
    assert stable["lineage"]["model-hash"] == "model-aaa"
    assert report["current_revision"] == 1
    assert report["weights"] == {"stable": 90, "canary": 10}
    text = mlops("status")
    assert "digits-stable: 2/2 ready" in text.out
    assert "commit commit-v1" in text.out and "stable 90%" in text.out


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


OTHER = "ci-runner@build-7 pid 4242"


def _hold_lease(kube_cluster: Any, namespace: str, acquired: datetime, seconds: int) -> None:
    """Another deployer's Lease, as that deployer's client would create it."""
    from mlops_sessions.executors.kube.lease import lease_body
    from mlops_sessions.records import keys

    body = lease_body(keys.deploy_lease("digits"), namespace, OTHER, seconds, acquired)
    kube_cluster.send("POST", f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases", body)


def test_a_held_lease_stops_the_deploy_and_an_expired_one_is_taken_over(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    project.build("v1", "model-aaa")
    ns = project.namespace
    lease = f"/apis/coordination.k8s.io/v1/namespaces/{ns}/leases/digits-mlops-deploy"
    _hold_lease(kube_cluster, ns, datetime.now(timezone.utc), 600)
    mark = kube_cluster.mark()
    result = mlops("deploy")
    assert result.code == 1
    assert f"another deploy of 'digits' is running in mlops-test/{ns}" in result.err
    assert f"held by {OTHER}" in result.err
    assert f"kubectl -n {ns} delete lease digits-mlops-deploy" in result.err
    # Its only write was the attempt to take the Lease, which the server refused.
    assert kube_cluster.writes(mark) == ["create leases/digits-mlops-deploy"]
    assert kube_cluster.get(f"/apis/apps/v1/namespaces/{ns}/deployments/digits-stable") is None
    held = kube_cluster.get(lease)
    assert held is not None and held["spec"]["holderIdentity"] == OTHER  # not taken
    # A dry run needs no lock: it still shows what would change.
    assert mlops("deploy", "--dry-run").code == 0
    # Expired (acquired two hours ago for a minute): taken over, and released after.
    kube_cluster.send("DELETE", lease)
    _hold_lease(kube_cluster, ns, datetime.now(timezone.utc) - timedelta(hours=2), 60)
    taken = mlops("deploy", "--json")
    assert taken.code == 0, taken.err
    assert taken.json()["deployments"][0]["status"] == "rolled-out"
    assert kube_cluster.get(lease) is None


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
