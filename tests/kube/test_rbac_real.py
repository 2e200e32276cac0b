"""The least-privilege identity ``mlops render`` writes to ``rbac/``, enforced by a real API
server: deploy, redeploy, reroute, roll a new build, drop the canary, roll back and read
status as a ServiceAccount bound only to that Role; the audit log shows every request the
product made, and each one is allowed by the Role, and the Role allows nothing else but
the deletes of kinds this flow never drops."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.conftest import image_ref

pytestmark = [pytest.mark.cluster, pytest.mark.slow]


def _deployer_kubeconfig(kube_cluster: Any, project: Any, tmp_path: Path, mlops: Any) -> Path:
    """Render the project's rbac/, apply it as admin, and log in as its ServiceAccount."""
    from tests.cluster.controlplane import kubeconfig_text

    out = tmp_path / "rendered"
    rendered = mlops("render", "--out", str(out), "--image", f"serve={image_ref('v1')}")
    assert rendered.code == 0, rendered.err
    (identity,) = (out / "rbac").iterdir()
    assert identity.name == f"{project.namespace}-mlops-deployer.yaml"
    ns = project.namespace
    paths = {
        "ServiceAccount": f"/api/v1/namespaces/{ns}/serviceaccounts",
        "Role": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
        "RoleBinding": f"/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    }
    for doc in yaml.safe_load_all(identity.read_text()):
        kube_cluster.send("POST", paths[doc["kind"]], doc)
    token = kube_cluster.send(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts/mlops-deployer/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {"expirationSeconds": 3600},
        },
    )["status"]["token"]
    path = tmp_path / "deployer.kubeconfig"
    path.write_text(
        kubeconfig_text(
            kube_cluster.plane.server, kube_cluster.plane.ca, user="mlops-deployer", token=token
        )
    )
    return path


def _used(kube_cluster: Any, namespace: str, since: int) -> set[tuple[str, str, str]]:
    events, _ = kube_cluster.plane.audit_events(
        f"system:serviceaccount:{namespace}:mlops-deployer", since
    )
    used = set()
    for event in events:
        ref = event.get("objectRef")
        if not ref:  # /version and discovery: open to every authenticated identity
            continue
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        used.add((ref.get("apiGroup", ""), resource, event["verb"]))
        assert event["responseStatus"]["code"] != 403, event
    return used


def test_the_rendered_role_allows_exactly_what_deploy_rollback_and_status_use(
    kube_cluster: Any, project: Any, mlops: Any, tmp_path: Path
) -> None:
    from mlops_sessions.planning.rbac import allowed

    deployer = _deployer_kubeconfig(kube_cluster, project, tmp_path, mlops)
    _, since = kube_cluster.plane.audit_events("nobody")
    project.build("v1", "model-aaa")
    steps = [("deploy",), ("deploy",), ("status",), ("deploy", "--dry-run")]
    for step in steps:
        result = mlops(*step, kubeconfig=deployer)
        assert result.code == 0, (step, result.err)
    project.write(stable=50, canary=50)
    assert mlops("deploy", kubeconfig=deployer).code == 0
    project.build("v2", "model-bbb")
    assert mlops("deploy", kubeconfig=deployer).code == 0
    assert mlops("rollback", kubeconfig=deployer).code == 0
    # Without a canary section the canary's Deployment goes: the delete verb is used too.
    text = project.config.read_text()
    for line in (
        "      canary: {weight: 50}\n",
        '      ab: {header: x-digits-canary, value: "always"}\n',
    ):
        assert line in text
        text = text.replace(line, "")
    project.config.write_text(text.replace("stable: {weight: 50}", "stable: {weight: 100}"))
    result = mlops("deploy", kubeconfig=deployer)
    assert result.code == 0, result.err

    used = _used(kube_cluster, project.namespace, since)
    role = kube_cluster.get(
        f"/apis/rbac.authorization.k8s.io/v1/namespaces/{project.namespace}/roles/mlops-deployer"
    )
    granted = allowed(role or {})
    assert used <= granted, f"used but not granted: {sorted(used - granted)}"
    unused = granted - used
    # What this flow does not exercise but a deploy does when the config asks for it:
    # deleting a kind the config drops, patching an object whose settings changed (a
    # Service's port, the ServiceAccount's annotations), renewing the Lease in a long
    # rollout. Every other permission was used.
    assert {verb for _, _, verb in unused} <= {"delete", "patch"}, sorted(unused)
    for must in [
        ("apps", "deployments", "patch"),
        ("apps", "deployments", "delete"),
        ("networking.istio.io", "virtualservices", "patch"),
        ("", "configmaps", "patch"),
        ("coordination.k8s.io", "leases", "create"),
        ("coordination.k8s.io", "leases", "delete"),
    ]:
        assert must in used, must
