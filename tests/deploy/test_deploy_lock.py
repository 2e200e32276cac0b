"""One deploy at a time: the Lease lock, against kmock's emulator over real HTTP."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

from mlops_sessions.executors.kube.lease import lease_body
from mlops_sessions.records import keys

LEASE = "coordination.k8s.io/v1/leases"
OTHER = "ci-runner@build-7 pid 4242"


def hold_lease(cluster: Any, acquired: datetime, seconds: int = 600) -> None:
    """Another deployer's lease, created through the real client as that deployer would."""
    from kubernetes import client, config

    with config.new_client_from_config(config_file=str(cluster.kubeconfig)) as api:
        client.CoordinationV1Api(api).create_namespaced_lease(
            "ml", lease_body(keys.deploy_lease("digits"), "ml", OTHER, seconds, acquired)
        )


def test_a_held_lock_stops_the_deploy_before_any_write(cluster: Any, project: Any, mlops: Any):
    project.build("v1", "model-aaa")
    hold_lease(cluster, datetime.now(timezone.utc))
    before = cluster.request_count()
    result = mlops("deploy")
    assert result.code == 1
    assert "another deploy of 'digits' is running in kmock/ml" in result.err
    assert f"held by {OTHER}" in result.err
    assert "kubectl -n ml delete lease digits-mlops-deploy" in result.err
    writes = cluster.writes(before)
    assert writes == ["POST /apis/coordination.k8s.io/v1/namespaces/ml/leases"], writes
    assert cluster.get("apps/v1/deployments", "digits-stable") is None
    lease = cluster.get(LEASE, "digits-mlops-deploy")
    assert lease is not None and lease["spec"]["holderIdentity"] == OTHER  # not taken
    # A dry run needs no lock: it still shows what would change.
    preview = mlops("deploy", "--dry-run")
    assert preview.code == 0, preview.err


def test_an_expired_lock_is_taken_over_and_released_after(cluster: Any, project: Any, mlops: Any):
    project.build("v1", "model-aaa")
    hold_lease(cluster, datetime.now(timezone.utc) - timedelta(hours=2), seconds=60)
    result = mlops("deploy", "--json")
    assert result.code == 0, result.err
    assert result.json()["deployments"][0]["status"] == "rolled-out"
    assert cluster.get(LEASE, "digits-mlops-deploy") is None


def test_the_lock_is_released_after_success_and_failure(cluster: Any, project: Any, mlops: Any):
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    assert cluster.get(LEASE, "digits-mlops-deploy") is None
    bad = project.build("v2", "model-bbb")
    cluster.controller.crashing.add(bad.split("@sha256:")[1])
    failed = mlops("deploy")
    assert failed.code != 0
    assert cluster.get(LEASE, "digits-mlops-deploy") is None
    # Nothing to change (revision 1 was restored and v1 is asked for): no lock, no write.
    before = cluster.request_count()
    project.build("v1", "model-aaa")
    again = mlops("deploy", "--json")
    assert again.code == 0, again.err
    assert again.json()["deployments"][0]["status"] == "unchanged"
    assert cluster.writes(before) == []


def test_a_lost_answer_to_our_own_lock_is_not_mistaken_for_another_deploy(
    cluster: Any, project: Any, mlops: Any
):
    project.build("v1", "model-aaa")
    # The emulator stores the Lease, then answers 500: the retried POST meets 409.
    cluster.inject("POST", "leases", [500])
    result = mlops("deploy")
    assert result.code == 0, result.err
    assert cluster.get(LEASE, "digits-mlops-deploy") is None
