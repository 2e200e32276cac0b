"""Failed rollouts restore the previous revision; API faults are retried or recorded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from mlops_sessions.records.store import Store


def history(cluster: Any) -> dict[str, Any]:
    data = cluster.get("v1/configmaps", "digits-mlops-history")["data"]
    records = {k: json.loads(v) for k, v in data.items() if k.startswith("r")}
    return {"current": data["current"], "records": records}


def image_of(cluster: Any, name: str) -> str:
    dep = cluster.get("apps/v1/deployments", name)
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def store_record(project: Any, revision: int) -> dict[str, Any]:
    folder = Store(project.root / ".mlops").deployments() / "digits" / "kmock--ml"
    path: Path = folder / "revisions" / f"r{revision:06d}.json"
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def test_crashing_rollout_restores_the_previous_revision(cluster, project, mlops):
    good = project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    bad = project.build("v2-crash", "model-bbb")
    cluster.controller.crashing.add(bad.split("@sha256:")[1])
    result = mlops("deploy")
    assert result.code == 1
    assert "timed out progressing" in result.err
    assert "revision 1 restored" in result.err
    assert image_of(cluster, "digits-stable") == good
    assert image_of(cluster, "digits-canary") == good
    recorded = history(cluster)
    assert recorded["current"] == "1"
    failed = recorded["records"]["r000002"]
    assert failed["status"] == "failed"
    assert failed["restored_to"] == 1
    assert "ProgressDeadlineExceeded" not in failed["reason"]  # the message, not the code
    assert "timed out progressing" in failed["reason"]
    assert store_record(project, 2)["status"] == "failed"
    # The restored Deployment is healthy again.
    dep = cluster.get("apps/v1/deployments", "digits-stable")
    assert dep["status"]["availableReplicas"] == 2
    assert dep["metadata"]["annotations"]["mlops-sessions.dev/revision"] == "1"


def test_failed_first_deploy_is_recorded_with_nothing_to_restore(cluster, project, mlops):
    bad = project.build("v1-crash", "model-aaa")
    cluster.controller.crashing.add(bad.split("@sha256:")[1])
    result = mlops("deploy")
    assert result.code == 1
    assert "no previous revision to restore" in result.err
    record = history(cluster)["records"]["r000001"]
    assert record["status"] == "failed" and record["restored_to"] is None


def test_conflicts_and_server_errors_are_retried(cluster, project, mlops):
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    ref2 = project.build("v2", "model-bbb")
    cluster.inject("PATCH", "deployments", [409, 500, 503])
    before = cluster.request_count()
    result = mlops("deploy", "--json")
    assert result.code == 0, result.err
    assert image_of(cluster, "digits-stable") == ref2
    patches = [w for w in cluster.writes(before) if w.startswith("PATCH") and "deployments" in w]
    # Two Deployments patched once each, plus three failed tries of the first.
    assert len(patches) == 5


def test_a_create_whose_answer_was_lost_becomes_a_patch(cluster, project, mlops):
    ref = project.build("v1", "model-aaa")
    # The emulator stores the Deployment, then answers 500: the retried POST meets 409.
    cluster.inject("POST", "deployments", [500])
    before = cluster.request_count()
    result = mlops("deploy")
    assert result.code == 0, result.err
    calls = [
        c
        for c in cluster.calls(before)
        if "deployments/digits-stable" in c or c == "POST /apis/apps/v1/namespaces/ml/deployments"
    ]
    # Planned twice (a read-only preview, then again under the deploy lock), then applied.
    assert calls[:5] == [
        "GET /apis/apps/v1/namespaces/ml/deployments/digits-stable",
        "GET /apis/apps/v1/namespaces/ml/deployments/digits-stable",
        "POST /apis/apps/v1/namespaces/ml/deployments",
        "POST /apis/apps/v1/namespaces/ml/deployments",
        "PATCH /apis/apps/v1/namespaces/ml/deployments/digits-stable",
    ]
    assert image_of(cluster, "digits-stable") == ref


def test_slow_responses_time_out_and_are_retried(cluster, project, mlops):
    project.build("v1", "model-aaa")
    cluster.inject("GET", "deployments", [3.0])
    fast = ["--api-timeout", "0.5", "--api-retries", "4", "--api-backoff", "0.02"]
    result = mlops("deploy", "--json", api=fast)
    assert result.code == 0, result.err
    (outcome,) = result.json()["deployments"]
    assert outcome["status"] == "rolled-out"


def test_persistent_errors_stop_the_apply_and_restore(cluster, project, mlops):
    good = project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    project.build("v2", "model-bbb")
    project.write(stable=60, canary=40)
    # Deployments patch fine (new image), then the VirtualService never can.
    cluster.inject("PATCH", "virtualservices", [500] * 3)
    api = ["--api-timeout", "2", "--api-retries", "3", "--api-backoff", "0.02"]
    result = mlops("deploy", "--json", api=api)
    assert result.code == 1
    (outcome,) = result.json()["deployments"]
    assert outcome["reason"].startswith(
        "apply failed: patching VirtualService/ml/digits failed after 3 attempts: HTTP 500"
    )
    assert outcome["restored_to"] == 1
    assert image_of(cluster, "digits-stable") == good
    vs = cluster.get("networking.istio.io/v1/virtualservices", "digits")
    route = vs["spec"]["http"][-1]["route"]
    assert [d["weight"] for d in route] == [90, 10]
    assert store_record(project, 2)["status"] == "failed"
    assert history(cluster)["current"] == "1"


def test_unreachable_cluster_points_at_render(project, mlops, tmp_path, monkeypatch):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    kubeconfig = tmp_path / "nowhere.yaml"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "current-context": "gone",
                "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
            }
        )
    )
    monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
    project.build("v1", "model-aaa")
    api = ["--api-timeout", "1", "--api-retries", "2", "--api-backoff", "0.01"]
    result = mlops("deploy", api=api)
    assert result.code == 1
    assert "no Kubernetes cluster reachable (context 'gone'" in result.err
    assert "mlops render" in result.err
    assert "Traceback" not in result.err


def test_a_restore_that_fails_too_is_recorded(cluster, project, mlops):
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    project.write(stable=60, canary=40)
    cluster.inject("PATCH", "virtualservices", [500] * 6)
    api = ["--api-timeout", "2", "--api-retries", "3", "--api-backoff", "0.02"]
    result = mlops("deploy", "--json", api=api)
    assert result.code == 1
    (outcome,) = result.json()["deployments"]
    assert outcome["restored_to"] is None
    assert "restoring revision 1 failed too" in outcome["record"]["restore"]
    record = store_record(project, 2)
    assert record["status"] == "failed"
    assert "restoring revision 1 failed too" in record["restore"]


def test_no_kubeconfig_and_no_cluster_gives_a_clear_error(project, mlops, tmp_path, monkeypatch):
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing.yaml"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    project.build("v1", "model-aaa")
    result = mlops("deploy")
    assert result.code == 1
    assert "no Kubernetes login found" in result.err
    assert "mlops render" in result.err
