"""What deploy refuses, before it writes anything: bad config, unknown images, missing
secrets, ungated models, failed scans and dirty builds to a protected profile."""

from __future__ import annotations

import json

from mlops_sessions.records.store import Store

SECRETS = """\
      secrets:
        - {env: API_TOKEN, secret: digits-api, key: token}
"""


def test_weights_not_adding_to_100_are_a_config_error(cluster, project, mlops):
    project.build("v1", "model-aaa")
    project.write(stable=90, canary=20)
    result = mlops("deploy")
    assert result.code == 2
    assert "weights add up to 110, not 100" in result.err
    assert "mlops.yaml:" in result.err  # located in the file
    assert cluster.writes(0) == []


def test_unknown_image_name_is_refused(cluster, project, mlops):
    project.build("v1", "model-aaa")
    result = mlops("deploy", "--image", "nope=registry.example.com/x@sha256:" + "0" * 64)
    assert result.code == 1
    assert "no image named 'nope' under 'images:'" in result.err
    assert cluster.calls() == []


def test_image_without_a_build_record_is_refused(cluster, project, mlops):
    result = mlops("deploy")
    assert result.code == 1
    assert "no image digest recorded for image 'serve'" in result.err
    assert cluster.calls() == []


def test_missing_secret_is_reported_before_anything_is_applied(cluster, project, mlops):
    project.build("v1", "model-aaa")
    project.write(deploy_extra=SECRETS)
    result = mlops("deploy")
    assert result.code == 1
    assert "nothing was applied" in result.err
    assert "Secret 'digits-api' (used by Deployment/digits-stable" in result.err
    assert "kubectl -n ml create secret generic digits-api" in result.err
    assert cluster.writes(0) == []
    # A Secret without the key is refused the same way.
    cluster.put_secret("digits-api", {"other": "eA=="})
    result = mlops("deploy")
    assert result.code == 1
    assert "Secret 'digits-api' has no key 'token'" in result.err
    assert cluster.writes(0) == []
    cluster.put_secret("digits-api", {"token": "eA=="})
    assert mlops("deploy").code == 0
    dep = cluster.get("apps/v1/deployments", "digits-stable")
    env = dep["spec"]["template"]["spec"]["containers"][0]["env"]
    wanted = {"secretKeyRef": {"name": "digits-api", "key": "token"}}
    assert {"name": "API_TOKEN", "valueFrom": wanted} in env


def test_ungated_model_is_refused_unless_forced(cluster, project, mlops):
    project.build("v1", "model-aaa")  # blessed
    project.build("v2", "model-bbb", bless=False)  # the latest build carries an ungated model
    result = mlops("deploy")
    assert result.code == 1
    assert "did not pass the gate" in result.err
    assert "--force" in result.err
    assert cluster.calls() == []
    forced = mlops("deploy", "--force", "--json")
    assert forced.code == 0, forced.err
    assert "--force overrides" in forced.err
    (outcome,) = forced.json()["deployments"]
    assert "did not pass the gate" in outcome["record"]["forced"][0]


def test_never_blessed_model_is_refused(cluster, project, mlops):
    project.build("v1", "model-aaa", bless=False)
    result = mlops("deploy")
    assert result.code == 1
    assert "has no blessed run" in result.err


def test_failed_scan_is_refused(cluster, project, mlops):
    project.build("v1", "model-aaa")
    project.scan(passed=False)
    result = mlops("deploy")
    assert result.code == 1
    assert "image 'serve' failed its scan" in result.err
    assert "CVE-2026-0001" in result.err
    project.scan(passed=True)
    assert mlops("deploy").code == 0


def test_dirty_build_is_refused_for_a_protected_profile(cluster, project, mlops):
    project.build("v1", "model-aaa", dirty=True)
    result = mlops("deploy", "--profile", "prod")
    assert result.code == 1
    assert "built from a dirty git tree and profile 'prod' is protected" in result.err
    # The same build may go to an unprotected target.
    assert mlops("deploy").code == 0
    store = Store(project.root / ".mlops")
    record = json.loads(
        (store.deployments() / "digits" / "kmock--ml" / "revisions" / "r000001.json").read_text()
    )
    assert record["forced"] == []
