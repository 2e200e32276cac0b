"""What ``mlops deploy`` and ``rollback`` refuse, and where they say they write, against a
real API server: bad config, unknown images, missing secrets, ungated models, failed scans,
dirty builds to a protected profile, and a ``deploy.context`` that is not the kubeconfig's.

Each refusal is checked in the API server's audit log, under the product's own identity:
nothing written (and, where the product must not even look, nothing asked). The overrides
that then deploy (``--force``, a Secret that appears, a passing scan, an unprotected
profile) are rolled out by the real controller.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SECRETS = """\
      secrets:
        - {env: API_TOKEN, secret: digits-api, key: token}
"""
PINNED_ELSEWHERE = "      context: prod-eu\n"


def _put_secret(kube_cluster: Any, namespace: str, data: dict[str, str]) -> None:
    path = f"/api/v1/namespaces/{namespace}/secrets"
    if kube_cluster.get(f"{path}/digits-api") is not None:
        kube_cluster.send("DELETE", f"{path}/digits-api")
    kube_cluster.send(
        "POST",
        path,
        {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "digits-api"},
            "data": {k: base64.b64encode(v.encode()).decode() for k, v in data.items()},
        },
    )


def test_refusals_before_the_cluster_is_asked_anything(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    mark = kube_cluster.mark()
    # No build recorded yet.
    result = mlops("deploy")
    assert result.code == 1
    assert "no image digest recorded for image 'serve'" in result.err
    project.build("v1", "model-aaa")
    unknown = mlops("deploy", "--image", "nope=registry.example.com/x@sha256:" + "0" * 64)
    assert unknown.code == 1
    assert "no image named 'nope' under 'images:'" in unknown.err
    project.write(stable=90, canary=20)
    bad = mlops("deploy")
    assert bad.code == 2
    assert "weights add up to 110, not 100" in bad.err
    assert "mlops.yaml:" in bad.err  # located in the file
    assert kube_cluster.requests(mark) == []


def test_a_missing_secret_or_key_is_reported_before_anything_is_applied(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    ns = project.namespace
    project.build("v1", "model-aaa")
    project.write(deploy_extra=SECRETS)
    mark = kube_cluster.mark()
    result = mlops("deploy")
    assert result.code == 1
    assert "nothing was applied" in result.err
    assert "Secret 'digits-api' (used by Deployment/digits-stable" in result.err
    assert f"kubectl -n {ns} create secret generic digits-api" in result.err
    _put_secret(kube_cluster, ns, {"other": "x"})
    result = mlops("deploy")
    assert result.code == 1
    assert "Secret 'digits-api' has no key 'token'" in result.err
    assert kube_cluster.writes(mark) == []
    _put_secret(kube_cluster, ns, {"token": "x"})
    assert mlops("deploy").code == 0
    env = kube_cluster.deployment(ns, "digits-stable")["spec"]["template"]["spec"]["containers"][0][
        "env"
    ]
    wanted = {"secretKeyRef": {"name": "digits-api", "key": "token"}}
    assert {"name": "API_TOKEN", "valueFrom": wanted} in env


def test_an_ungated_model_is_refused_unless_forced_and_a_never_blessed_one_always(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    project.build("v0", "model-000", bless=False)
    never = mlops("deploy")
    assert never.code == 1
    assert "has no blessed run" in never.err
    project.build("v1", "model-aaa")  # blessed
    project.build("v2", "model-bbb", bless=False)  # the latest build carries an ungated model
    mark = kube_cluster.mark()
    result = mlops("deploy")
    assert result.code == 1
    assert "did not pass the gate" in result.err
    assert "--force" in result.err
    assert kube_cluster.requests(mark) == []
    forced = mlops("deploy", "--force", "--json")
    assert forced.code == 0, forced.err
    assert "--force overrides" in forced.err
    (outcome,) = forced.json()["deployments"]
    assert "did not pass the gate" in outcome["record"]["forced"][0]
    assert outcome["status"] == "rolled-out"


def test_a_failed_scan_and_a_dirty_build_for_a_protected_profile_are_refused(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    project.build("v1", "model-aaa", dirty=True)
    project.scan(passed=False)
    mark = kube_cluster.mark()
    result = mlops("deploy")
    assert result.code == 1
    assert "image 'serve' failed its scan" in result.err
    assert "CVE-2026-0001" in result.err
    project.scan(passed=True)
    protected = mlops("deploy", "--profile", "prod")
    assert protected.code == 1
    assert "built from a dirty git tree and profile 'prod' is protected" in protected.err
    assert kube_cluster.writes(mark) == []
    # The same build may go to an unprotected target.
    assert mlops("deploy").code == 0
    record = json.loads((project.target() / "revisions" / "r000001.json").read_text())
    assert record["forced"] == []


def test_the_target_is_named_before_the_first_write_and_a_pinned_context_is_kept(
    kube_cluster: Any, project: Any, mlops: Any
) -> None:
    ns = project.namespace
    project.build("v1", "model-aaa")
    preview = mlops("deploy", "--dry-run")
    assert preview.code == 0, preview.err
    assert "comparing with 'digits' on context 'mlops-test'" in preview.err
    project.write(deploy_extra="      context: mlops-test\n")  # pinned, and it exists
    result = mlops("deploy")
    assert result.code == 0, result.err
    lines = result.err.splitlines()
    target = next(i for i, line in enumerate(lines) if "changing 'digits' on context" in line)
    assert f"context 'mlops-test' (server {kube_cluster.plane.server})" in lines[target]
    assert f"namespace '{ns}'" in lines[target]
    # Progress lines ("  created ...", "  waiting ...") follow the writes: the target is first.
    assert all(not line.startswith("  ") for line in lines[:target]), lines
    project.build("v2", "model-bbb")
    assert mlops("deploy").code == 0
    # Pinned to a context the kubeconfig does not have: deploy and rollback are refused.
    project.write(deploy_extra=PINNED_ELSEWHERE)
    project.build("v3", "model-ccc")
    mark = kube_cluster.mark()
    refused = mlops("deploy")
    assert refused.code == 1
    (line,) = refused.err.strip().splitlines()
    assert "'prod-eu'" in line and "'mlops-test'" in line and "refusing" in line
    back = mlops("rollback")
    assert back.code == 1
    assert "'prod-eu'" in back.err and "'mlops-test'" in back.err
    assert kube_cluster.writes(mark) == []


def test_a_missing_kubeconfig_option_is_not_replaced_by_the_kubeconfig_variable(
    kube_cluster: Any, project: Any, mlops: Any, tmp_path: Path
) -> None:
    project.build("v1", "model-aaa")
    missing = tmp_path / "typo-kubeconfig"
    mark = kube_cluster.mark()
    result = mlops("deploy", "--kubeconfig", str(missing))
    assert result.code == 1
    (line,) = result.err.strip().splitlines()
    assert str(missing) in line
    assert kube_cluster.requests(mark) == []  # not even a read
