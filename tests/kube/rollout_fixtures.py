"""The rollout driver's tests (tests/rollout's project and helpers) on the real control plane.

tests/rollout/conftest.py reads what a rollout left on the cluster through
``cluster.get(resource, name)`` (its project deploys into namespace ``ml``). Here
``cluster`` is that same face over the real API server, in the test's own namespace, and
``project`` is tests/rollout's project deploying there. A test module takes both with
``from tests.kube.rollout_fixtures import cluster, project``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.rollout.conftest import ROLLOUT_PROJECT, RolloutProject


class RealCluster:
    """tests/rollout's reading face (``get``, ``kubeconfig``) over one namespace of the real
    API server; the product runs as its own identity (``kubeconfig``)."""

    def __init__(self, kube: Any, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self.kubeconfig: Path = kube.plane.product_kubeconfig

    def get(self, resource: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """``resource`` as tests/rollout spells it: "v1/configmaps", "apps/v1/deployments"."""
        group_version, plural = resource.rsplit("/", 1)
        root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        found: dict[str, Any] | None = self.kube.get(
            f"{root}/namespaces/{self.namespace}/{plural}/{name}"
        )
        return found


class RealRolloutProject(RolloutProject):
    """tests/rollout's project, deploying into one namespace of the real control plane."""

    def __init__(self, root: Path, namespace: str) -> None:
        self.namespace = namespace
        super().__init__(root)

    def rollout(self, *args: Any, **kwargs: Any) -> None:
        super().rollout(*args, **kwargs)
        text = self.config.read_text()
        # The real Deployment controller on KWOK takes a second or two per rollout.
        for old, new in [
            ("namespace: ml\n", f"namespace: {self.namespace}\n"),
            ("rollout_timeout: 3s", "rollout_timeout: 8s"),
        ]:
            assert old in text, old
            text = text.replace(old, new)
        self.config.write_text(text)


assert "namespace: ml\n" in ROLLOUT_PROJECT


@pytest.fixture
def cluster(kube_cluster: Any, namespace: str, monkeypatch: pytest.MonkeyPatch) -> RealCluster:
    real = RealCluster(kube_cluster, namespace)
    monkeypatch.setenv("KUBECONFIG", str(real.kubeconfig))
    return real


@pytest.fixture
def project(tmp_path: Path, namespace: str) -> RealRolloutProject:
    return RealRolloutProject(tmp_path / "project", namespace)
