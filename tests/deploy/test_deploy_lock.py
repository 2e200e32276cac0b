"""One deploy at a time: the Lease lock when the API server loses an answer (kmock's
emulator over real HTTP). A held, an expired and a released Lease are tested against the
real API server in tests/kube/test_deploy_real.py."""

from __future__ import annotations

from typing import Any

LEASE = "coordination.k8s.io/v1/leases"


def test_a_lost_answer_to_our_own_lock_is_not_mistaken_for_another_deploy(
    cluster: Any, project: Any, mlops: Any
):
    project.build("v1", "model-aaa")
    # The emulator stores the Lease, then answers 500: the retried POST meets 409.
    cluster.inject("POST", "leases", [500])
    result = mlops("deploy")
    assert result.code == 0, result.err
    assert cluster.get(LEASE, "digits-mlops-deploy") is None
