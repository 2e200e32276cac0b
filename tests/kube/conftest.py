"""Fixtures for the tests that run against the real control plane (tests/cluster/).

``kube_cluster`` starts one control plane for the whole session (a few seconds once the
binaries are in the cache; ``python -m tests.cluster build`` fills it, and so does
``.ci/run``). Every test gets its own namespace and a project that deploys into it, so
tests share the API server without sharing objects. ``mlops`` runs the real CLI entry
point with ``KUBECONFIG`` pointing at the control plane (or at a narrower identity, for
the RBAC tests).
"""

from __future__ import annotations

import itertools
import json
import urllib.error
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import require_real
from tests.deploy.conftest import PROJECT as DEPLOY_PROJECT
from tests.deploy.conftest import Project as DeployProject

_namespaces = itertools.count(1)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from tests.cluster import components, controlplane

    binaries = components.built()
    if binaries is None:
        # Building takes minutes: never inside a test run. `.ci/run` builds before pytest.
        require_real(
            "the test control plane is not built: run `python -m tests.cluster build` "
            "(Go toolchain; minutes once, then cached)"
        )
    assert binaries is not None
    plane = controlplane.ControlPlane(tmp_path_factory.mktemp("kube"), binaries)
    try:
        plane.start()
    except controlplane.ControlPlaneError as error:
        require_real(f"the test control plane did not start: {error}")
    try:
        yield Kube(plane)
    finally:
        plane.stop()


class Kube:
    """Admin access to the control plane for assertions (plain REST, no product code)."""

    def __init__(self, plane: Any) -> None:
        self.plane = plane
        self.kubeconfig: Path = plane.kubeconfig

    def get(self, path: str) -> dict[str, Any] | None:
        try:
            return dict(self.plane.request("GET", path))
        except urllib.error.HTTPError as error:
            if error.code == 404:
                return None
            raise

    def send(
        self,
        method: str,
        path: str,
        body: dict[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        return dict(self.plane.request(method, path, body, content_type))

    def deployment(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{name}")
        assert found is not None, f"Deployment {namespace}/{name} does not exist"
        return found

    def image(self, namespace: str, name: str) -> str:
        spec = self.deployment(namespace, name)["spec"]["template"]["spec"]
        return str(spec["containers"][0]["image"])

    def virtual_service(self, namespace: str, name: str) -> dict[str, Any]:
        found = self.get(
            f"/apis/networking.istio.io/v1/namespaces/{namespace}/virtualservices/{name}"
        )
        assert found is not None
        return found

    def weights(self, namespace: str, name: str) -> dict[str, int]:
        route = self.virtual_service(namespace, name)["spec"]["http"][-1]["route"]
        return {d["destination"]["subset"]: d["weight"] for d in route}

    def history(self, namespace: str, model: str) -> dict[str, Any]:
        found = self.get(f"/api/v1/namespaces/{namespace}/configmaps/{model}-mlops-history")
        assert found is not None
        data = found["data"]
        records = {k: json.loads(v) for k, v in data.items() if k.startswith("r")}
        return {"current": data["current"], "records": records}

    def mark(self) -> int:
        """Where the audit log ends now: pass it to :meth:`writes`."""
        return int(self.plane.audit_events("nobody")[1])

    def writes(self, since: int) -> list[str]:
        """The writes the product (its own identity) made after ``since``: "VERB resource/name"."""
        from tests.cluster.controlplane import PRODUCT_USER

        events, _ = self.plane.audit_events(PRODUCT_USER, since)
        return [
            f"{e['verb']} {e['objectRef']['resource']}/{e['objectRef'].get('name', '')}"
            for e in events
            if e["verb"] in ("create", "update", "patch", "delete") and e.get("objectRef")
        ]

    def requests(self, since: int) -> list[str]:
        """Every request the product (its own identity) made after ``since``, reads,
        watches and discovery included: "VERB /request/uri"."""
        from tests.cluster.controlplane import PRODUCT_USER

        events, _ = self.plane.audit_events(PRODUCT_USER, since)
        return [f"{e['verb']} {e.get('requestURI', '')}" for e in events]

    def pods(self, namespace: str, selector: str = "") -> list[dict[str, Any]]:
        query = f"?labelSelector={selector}" if selector else ""
        answer = self.get(f"/api/v1/namespaces/{namespace}/pods{query}")
        return list((answer or {}).get("items", []))

    def resource_versions(self, namespace: str) -> dict[str, str]:
        """Every object the product manages in namespace -> its resourceVersion."""
        versions: dict[str, str] = {}
        for path in (
            "/api/v1/namespaces/{ns}/serviceaccounts",
            "/api/v1/namespaces/{ns}/configmaps",
            "/api/v1/namespaces/{ns}/services",
            "/apis/apps/v1/namespaces/{ns}/deployments",
            "/apis/networking.istio.io/v1/namespaces/{ns}/virtualservices",
            "/apis/networking.istio.io/v1/namespaces/{ns}/destinationrules",
        ):
            for item in (self.get(path.format(ns=namespace)) or {}).get("items", []):
                meta = item["metadata"]
                versions[f"{path.rsplit('/', 1)[1]}/{meta['name']}"] = meta["resourceVersion"]
        return versions


@pytest.fixture
def namespace(kube_cluster: Kube) -> str:
    name = f"t{next(_namespaces)}"
    kube_cluster.send(
        "POST",
        "/api/v1/namespaces",
        {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}},
    )
    return name


# The deploy tests' project (tests/deploy/conftest.py), in the test's own namespace and
# with a rollout timeout a real controller needs.
PROJECT = (
    DEPLOY_PROJECT.replace("namespace: ml", "namespace: {namespace}")
    .replace("digits.ml.example.com", "digits.{namespace}.example.com")
    .replace("rollout_timeout: 2s", "rollout_timeout: {timeout}")
)


class Project(DeployProject):
    """The deploy tests' project (its build records and blessings), deploying model 'digits'
    into one namespace of the real control plane."""

    def __init__(self, root: Path, namespace: str) -> None:
        self.namespace = namespace
        super().__init__(root)

    def write(  # type: ignore[override]
        self,
        stable: int = 90,
        canary: int = 10,
        timeout: str = "30s",
        deploy_extra: str = "",
        header: str = "x-digits-canary",
    ) -> None:
        self.config.write_text(
            PROJECT.format(
                namespace=self.namespace,
                stable=stable,
                canary=canary,
                timeout=timeout,
                deploy_extra=deploy_extra,
                header=header,
            )
        )

    def target(self) -> Path:
        """Where the project's store keeps this namespace's deploy records."""
        from mlops_sessions.records.store import Store

        return (
            Store(self.root / ".mlops").deployments() / "digits" / f"mlops-test--{self.namespace}"
        )


@pytest.fixture
def project(tmp_path: Path, namespace: str) -> Project:
    return Project(tmp_path / "project", namespace)


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture
def mlops(
    project: Project,
    kube_cluster: Kube,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Any:
    """The `mlops` CLI on the project, against the real API server, as the product's own
    identity (so the audit log tells its requests apart: ``kube_cluster.writes``)."""
    from mlops_sessions.frontends.cli import main

    product = kube_cluster.plane.product_kubeconfig
    monkeypatch.setenv("KUBECONFIG", str(product))

    def call(*args: str, kubeconfig: Path | None = None) -> Result:
        if kubeconfig is not None:
            monkeypatch.setenv("KUBECONFIG", str(kubeconfig))
        argv = [args[0], "-c", str(project.config), *args[1:]]
        capsys.readouterr()
        try:
            code = main(argv)
        finally:
            monkeypatch.setenv("KUBECONFIG", str(product))
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return call
