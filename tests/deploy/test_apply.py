"""``mlops deploy`` against kmock's Kubernetes emulator: first deploy, idempotence, edits.

The emulator runs over real HTTP and the real ``kubernetes`` client talks to it; the
conftest's controller thread reports rollouts as the Deployment controller would.
"""

from __future__ import annotations

import json
from typing import Any

from mlops_sessions.records.store import Store


def history(cluster: Any) -> dict[str, Any]:
    cm = cluster.get("v1/configmaps", "digits-mlops-history")
    assert cm is not None, "the deploy history ConfigMap is missing"
    data = cm["data"]
    records = {k: json.loads(v) for k, v in data.items() if k.startswith("r")}
    return {"current": data["current"], "records": records}


def image_of(cluster: Any, name: str) -> str:
    dep = cluster.get("apps/v1/deployments", name)
    assert dep is not None
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def weights(cluster: Any) -> dict[str, int]:
    vs = cluster.get("networking.istio.io/v1/virtualservices", "digits")
    assert vs is not None
    route = vs["spec"]["http"][-1]["route"]
    return {d["destination"]["subset"]: d["weight"] for d in route}


def test_first_deploy_applies_every_object_and_records_it(cluster, project, mlops):
    ref = project.build("v1", "model-aaa")
    result = mlops("deploy", "--json")
    assert result.code == 0, result.err
    (deployed,) = result.json()["deployments"]
    assert deployed["status"] == "rolled-out"
    assert deployed["revision"] == 1
    actions = {c["object"]: c["action"] for c in deployed["changes"]}
    assert actions == {
        "ServiceAccount/ml/digits": "create",
        "ConfigMap/ml/digits-serve": "create",
        "Service/ml/digits": "create",
        "Deployment/ml/digits-stable": "create",
        "Deployment/ml/digits-canary": "create",
        "DestinationRule/ml/digits": "create",
        "VirtualService/ml/digits": "create",
    }
    assert image_of(cluster, "digits-stable") == ref
    assert image_of(cluster, "digits-canary") == ref
    assert weights(cluster) == {"stable": 90, "canary": 10}
    recorded = history(cluster)
    assert recorded["current"] == "1"
    record = recorded["records"]["r000001"]
    assert record["status"] == "rolled-out"
    assert record["digests"]["digits-stable"] == ref.split("@")[1]
    assert record["lineage"]["model_hash"] == "model-aaa"
    assert record["weights"] == {"stable": 90, "canary": 10}
    assert len(record["manifests"]) == 7
    # The store holds the same record, and an event log of the apply.
    store_dir = Store(project.root / ".mlops").deployments() / "digits" / "kmock--ml"
    stored = json.loads((store_dir / "revisions" / "r000001.json").read_text())
    assert stored["status"] == "rolled-out"
    assert stored["manifest_hash"] == record["manifest_hash"]
    events = [json.loads(x)["event"] for x in (store_dir / "events.jsonl").read_text().splitlines()]
    assert events == ["applying", "rolled-out"]
    # `mlops lineage` of the run finds the revision that rolled it out.
    from mlops_sessions.steps.lineage import deployments_of_run

    (traced,) = deployments_of_run(Store(project.root / ".mlops"), "digits", "run-v1", "model-aaa")
    assert (traced["target"], traced["revision"], traced["status"]) == (
        "kmock--ml",
        1,
        "rolled-out",
    )
    assert "stable" in traced["as"]


def test_status_shows_what_runs(cluster, project, mlops):
    ref = project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    result = mlops("status", "--json")
    assert result.code == 0, result.err
    (report,) = result.json()["models"]
    assert report["current_revision"] == 1
    assert report["weights"] == {"stable": 90, "canary": 10}
    stable = next(t for t in report["tracks"] if t["deployment"] == "digits-stable")
    assert stable["image"] == ref
    assert stable["digest"] == ref.split("@")[1]
    assert stable["ready"] == 2 and stable["replicas"] == 2
    assert stable["lineage"]["git-commit"] == "commit-v1"
    assert stable["lineage"]["model-hash"] == "model-aaa"
    text = mlops("status")
    assert "digits-stable: 2/2 ready" in text.out
    assert "commit commit-v1" in text.out and "stable 90%" in text.out


def test_second_deploy_without_change_writes_nothing(cluster, project, mlops):
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    before = cluster.request_count()
    again = mlops("deploy", "--json")
    assert again.code == 0, again.err
    (deployed,) = again.json()["deployments"]
    assert deployed["status"] == "unchanged"
    assert deployed["revision"] == 1
    assert {c["action"] for c in deployed["changes"]} == {"unchanged"}
    assert cluster.writes(before) == []
    assert history(cluster)["current"] == "1"
    assert "nothing was written" in mlops("deploy").out


def test_weight_change_in_yaml_reroutes_without_restarting_pods(cluster, project, mlops):
    ref = project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    generation = cluster.get("apps/v1/deployments", "digits-stable")["metadata"]["generation"]
    project.write(stable=50, canary=50)
    before = cluster.request_count()
    result = mlops("deploy", "--json")
    assert result.code == 0, result.err
    (deployed,) = result.json()["deployments"]
    changed = {c["object"]: c["action"] for c in deployed["changes"] if c["action"] != "unchanged"}
    # Routing changes; the Deployments only get their config-hash annotation refreshed,
    # the pod template stays, so no pod restarts (the generation does not move).
    assert changed == {
        "VirtualService/ml/digits": "patch",
        "Deployment/ml/digits-stable": "patch",
        "Deployment/ml/digits-canary": "patch",
    }
    assert weights(cluster) == {"stable": 50, "canary": 50}
    assert image_of(cluster, "digits-stable") == ref
    dep = cluster.get("apps/v1/deployments", "digits-stable")
    assert dep["metadata"]["generation"] == generation
    writes = cluster.writes(before)
    assert (
        writes.count("PATCH /apis/networking.istio.io/v1/namespaces/ml/virtualservices/digits") == 1
    )
    assert not [w for w in writes if "services/" in w and "virtualservices" not in w]
    recorded = history(cluster)
    assert recorded["current"] == "2"
    assert recorded["records"]["r000002"]["weights"] == {"stable": 50, "canary": 50}


def test_ab_header_route_sends_the_slice_to_the_canary(cluster, project, mlops):
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    vs = cluster.get("networking.istio.io/v1/virtualservices", "digits")
    first = next(r for r in vs["spec"]["http"] if r["name"] == "ab-canary")
    assert first["match"] == [{"headers": {"x-digits-canary": {"exact": "always"}}}]
    assert [d["destination"]["subset"] for d in first["route"]] == ["canary"]
    assert first["route"][0]["weight"] == 100
    dr = cluster.get("networking.istio.io/v1/destinationrules", "digits")
    assert {s["name"]: s["labels"]["track"] for s in dr["spec"]["subsets"]} == {
        "stable": "stable",
        "canary": "canary",
    }
    # Renaming the header in YAML moves the slice on the next deploy.
    project.write(header="x-beta")
    assert mlops("deploy").code == 0
    vs = cluster.get("networking.istio.io/v1/virtualservices", "digits")
    ab = next(r for r in vs["spec"]["http"] if r["name"] == "ab-canary")
    assert ab["match"] == [{"headers": {"x-beta": {"exact": "always"}}}]


def test_new_image_rolls_the_deployments(cluster, project, mlops):
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    ref2 = project.build("v2", "model-bbb")
    result = mlops("deploy", "--json")
    assert result.code == 0, result.err
    assert image_of(cluster, "digits-stable") == ref2
    dep = cluster.get("apps/v1/deployments", "digits-stable")
    assert dep["metadata"]["generation"] == 2
    assert dep["status"]["observedGeneration"] == 2
    assert dep["status"]["availableReplicas"] == 2
    record = history(cluster)["records"]["r000002"]
    assert record["lineage"]["model_hash"] == "model-bbb"
    first = history(cluster)["records"]["r000001"]
    assert record["previous"] == {
        "revision": 1,
        "digests": first["digests"],
        "weights": {"stable": 90, "canary": 10},
        "manifest_hash": first["manifest_hash"],
    }


def test_dry_run_prints_the_diff_and_changes_nothing(cluster, project, mlops):
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    project.write(stable=70, canary=30)
    before = cluster.request_count()
    result = mlops("deploy", "--dry-run")
    assert result.code == 0, result.err
    assert cluster.writes(before) == []
    assert "--- cluster: VirtualService/ml/digits" in result.out
    assert "-      weight: 90" in result.out and "+      weight: 70" in result.out
    changed_lines = [
        line
        for line in result.out.splitlines()
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    # Only weights and the config-hash annotation change: no new image, no pod restart.
    assert not [line for line in changed_lines if "image" in line or "replicas" in line]
    assert weights(cluster) == {"stable": 90, "canary": 10}
    assert history(cluster)["current"] == "1"


def test_dry_run_on_an_empty_cluster_shows_new_objects_only(cluster, project, mlops):
    project.build("v1", "model-aaa")
    result = mlops("deploy", "--dry-run")
    assert result.code == 0, result.err
    assert cluster.writes(0) == []
    assert "+++ apply: Deployment/ml/digits-stable" in result.out
    assert cluster.get("v1/configmaps", "digits-mlops-history") is None


def test_dropping_the_canary_deletes_its_objects_and_rollback_brings_them_back(
    cluster, project, mlops
):
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    text = project.config.read_text()
    text = text.replace("stable: {weight: 90}", "stable: {weight: 100}")
    text = "".join(
        line + "\n"
        for line in text.splitlines()
        if "canary: {weight" not in line and "ab: {header" not in line
    )
    project.config.write_text(text)
    result = mlops("deploy", "--json")
    assert result.code == 0, result.err
    (deployed,) = result.json()["deployments"]
    actions = {c["object"]: c["action"] for c in deployed["changes"]}
    assert actions["Deployment/ml/digits-canary"] == "delete"
    assert cluster.get("apps/v1/deployments", "digits-canary") is None
    assert weights(cluster) == {"stable": 100}
    assert mlops("rollback").code == 0
    assert cluster.get("apps/v1/deployments", "digits-canary") is not None
    assert weights(cluster) == {"stable": 90, "canary": 10}
