"""Class 4 (issue 12): deploy and rollback never change the wrong cluster.

Against kmock's emulator over real HTTP with the real ``kubernetes`` client:

- the context (and its server URL) and the namespace about to change are printed before
  the first write — and before the first progress line;
- ``deploy.context`` pins the cluster: when the kubeconfig has no such context, deploy and
  rollback are refused naming both contexts, and not one write reaches the API;
- a ``--kubeconfig`` that does not exist is refused naming it, even with a reachable
  cluster in ``$KUBECONFIG`` beside it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

PINNED_ELSEWHERE = "      context: prod-eu\n"


def test_target_is_printed_before_the_first_write(cluster: Any, project: Any, mlops: Any) -> None:
    project.build("v1", "model-aaa")
    result = mlops("deploy")
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    target = next(i for i, line in enumerate(lines) if "changing 'digits' on context" in line)
    assert f"context 'kmock' (server {cluster.url})" in lines[target]
    assert "namespace 'ml'" in lines[target]
    # Progress lines ("  created ...", "  waiting ...") follow the writes: the target is first.
    assert all(not line.startswith("  ") for line in lines[:target]), lines


def test_dry_run_names_the_cluster_it_compares_with(cluster: Any, project: Any, mlops: Any) -> None:
    project.build("v1", "model-aaa")
    result = mlops("deploy", "--dry-run")
    assert result.code == 0, result.err
    assert "comparing with 'digits' on context 'kmock'" in result.err
    assert cluster.writes() == []


def test_deploy_to_a_context_other_than_the_pinned_one_is_refused(
    cluster: Any, project: Any, mlops: Any
) -> None:
    project.write(deploy_extra=PINNED_ELSEWHERE)
    project.build("v1", "model-aaa")
    before = cluster.request_count()
    result = mlops("deploy")
    assert result.code == 1
    (line,) = result.err.strip().splitlines()
    assert "'prod-eu'" in line and "'kmock'" in line and "refusing" in line
    assert cluster.writes(before) == []
    assert cluster.get("apps/v1/deployments", "digits-stable") is None


def test_rollback_to_a_context_other_than_the_pinned_one_is_refused(
    cluster: Any, project: Any, mlops: Any
) -> None:
    project.build("v1", "model-aaa")
    assert mlops("deploy").code == 0
    project.build("v2", "model-bbb")
    assert mlops("deploy").code == 0
    project.write(deploy_extra=PINNED_ELSEWHERE)
    before = cluster.request_count()
    result = mlops("rollback")
    assert result.code == 1
    assert "'prod-eu'" in result.err and "'kmock'" in result.err
    assert cluster.writes(before) == []


def test_pinned_context_that_exists_is_used(cluster: Any, project: Any, mlops: Any) -> None:
    project.write(deploy_extra="      context: kmock\n")
    project.build("v1", "model-aaa")
    result = mlops("deploy")
    assert result.code == 0, result.err
    assert "on context 'kmock'" in result.err


def test_missing_kubeconfig_option_is_not_replaced_by_kubeconfig_variable(
    cluster: Any, project: Any, mlops: Any, tmp_path: Path
) -> None:
    project.build("v1", "model-aaa")
    missing = tmp_path / "typo-kubeconfig"
    before = cluster.request_count()
    result = mlops("deploy", "--kubeconfig", str(missing))
    assert result.code == 1
    (line,) = result.err.strip().splitlines()
    assert str(missing) in line
    assert cluster.request_count() == before  # not even a read
