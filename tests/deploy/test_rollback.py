"""``mlops rollback``: back to the previous revision or a named one, from the records only."""

from __future__ import annotations

import json
import shutil
import time
from typing import Any

from mlops_sessions.records.store import Store


def image_of(cluster: Any, name: str) -> str:
    dep = cluster.get("apps/v1/deployments", name)
    return str(dep["spec"]["template"]["spec"]["containers"][0]["image"])


def weights(cluster: Any) -> list[int]:
    vs = cluster.get("networking.istio.io/v1/virtualservices", "digits")
    return [d["weight"] for d in vs["spec"]["http"][-1]["route"]]


def current(cluster: Any) -> str:
    return str(cluster.get("v1/configmaps", "digits-mlops-history")["data"]["current"])


def test_rollback_returns_to_the_previous_revision_and_back(cluster, project, mlops):
    first = project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    second = project.build("v2", "model-bbb")
    assert mlops("deploy").code == 0
    assert image_of(cluster, "digits-stable") == second

    result = mlops("rollback", "--json")
    assert result.code == 0, result.err
    outcome = result.json()
    assert outcome["status"] == "rolled-out"
    assert outcome["target"] == 1 and outcome["from"] == 2 and outcome["revision"] == 3
    assert image_of(cluster, "digits-stable") == first
    assert image_of(cluster, "digits-canary") == first
    assert current(cluster) == "3"
    record = json.loads(cluster.get("v1/configmaps", "digits-mlops-history")["data"]["r000003"])
    assert record["source"] == "rollback" and record["rollback_of"] == 1
    assert record["lineage"]["model_hash"] == "model-aaa"

    # Rolling back again swaps back, like `kubectl rollout undo`.
    again = mlops("rollback")
    assert again.code == 0, again.err
    assert "to revision 2" in again.out
    assert image_of(cluster, "digits-stable") == second
    # A deploy of the build the cluster already runs is then a no-op.
    assert "nothing was written" in mlops("deploy").out


def test_rollback_to_a_named_revision_restores_its_image_and_weights(cluster, project, mlops):
    first = project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    project.build("v2", "model-bbb")
    project.write(stable=50, canary=50)
    assert mlops("deploy").code == 0
    project.write(stable=0, canary=100)
    assert mlops("deploy").code == 0
    assert weights(cluster) == [0, 100]

    result = mlops("rollback", "--to", "1")
    assert result.code == 0, result.err
    assert image_of(cluster, "digits-stable") == first
    assert weights(cluster) == [90, 10]
    status = mlops("status", "--json").json()["models"][0]
    assert status["current_revision"] == 4
    assert status["weights"] == {"stable": 90, "canary": 10}
    assert [r["status"] for r in status["revisions"]] == ["rolled-out"] * 4


def test_rollback_needs_no_store_and_no_rebuild(cluster, project, mlops):
    first = project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    project.build("v2", "model-bbb")
    assert mlops("deploy").code == 0
    # Another machine: no store, no build records — only the cluster's history.
    shutil.rmtree(project.root / ".mlops")
    started = time.monotonic()
    result = mlops("rollback")
    elapsed = time.monotonic() - started
    assert result.code == 0, result.err
    assert image_of(cluster, "digits-stable") == first
    assert elapsed < 10, f"rollback took {elapsed:.1f}s"
    # The store learns about it again.
    folder = Store(project.root / ".mlops").deployments() / "digits" / "kmock--ml"
    assert (folder / "revisions" / "r000003.json").is_file()


def test_rollback_skips_a_failed_revision(cluster, project, mlops):
    first = project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    second = project.build("v2", "model-bbb")
    assert mlops("deploy").code == 0
    bad = project.build("v3-crash", "model-ccc")
    cluster.controller.crashing.add(bad.split("@sha256:")[1])
    assert mlops("deploy").code == 1  # restored to revision 2
    assert image_of(cluster, "digits-stable") == second
    result = mlops("rollback", "--json")
    assert result.code == 0, result.err
    assert result.json()["target"] == 1
    assert image_of(cluster, "digits-stable") == first


def test_rollback_to_an_unknown_revision_names_the_known_ones(cluster, project, mlops):
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    result = mlops("rollback", "--to", "7")
    assert result.code == 1
    assert "revision 7 is not recorded (revisions: 1 (rolled-out); current: 1)" in result.err
    only = mlops("rollback")
    assert only.code == 1
    assert "an earlier revision that rolled out is not recorded" in only.err


def test_rollback_without_any_deploy_says_so(cluster, project, mlops):
    result = mlops("rollback")
    assert result.code == 1
    assert "no deploy of 'digits' is recorded on kmock/ml" in result.err
    assert cluster.writes(0) == []


def test_rollback_dry_run_shows_the_diff(cluster, project, mlops):
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    second = project.build("v2", "model-bbb")
    assert mlops("deploy").code == 0
    before = cluster.request_count()
    result = mlops("rollback", "--dry-run")
    assert result.code == 0, result.err
    assert "--- cluster: Deployment/ml/digits-stable" in result.out
    assert cluster.writes(before) == []
    assert image_of(cluster, "digits-stable") == second
