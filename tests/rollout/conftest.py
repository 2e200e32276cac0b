"""The progressive rollout tests' project (its model rolls out in steps of one second) and
helpers to read what a rollout left on the cluster. The cluster they read is the real
control plane's (tests/kube/rollout_fixtures.py), through :class:`ClusterReader`.
"""

from __future__ import annotations

import json
from typing import Any, Protocol

from tests.deploy.conftest import FAST_API, Project


class ClusterReader(Protocol):
    """What the helpers below read through: one object by resource ("apps/v1/deployments")
    and name, or None."""

    def get(self, resource: str, name: str) -> dict[str, Any] | None: ...


ROLLOUT_PROJECT = """\
apiVersion: mlops/v1alpha1
project: {{name: shop}}
images:
  serve:
    kind: serve
    repository: registry.example.com/shop/serve
    base: {{variant: cpu, tensorflow: "2.21.0"}}
models:
  digits:
    image: serve
    deploy:
      namespace: ml
      replicas: 2
      rollout_timeout: 3s
    rollout:
      hosts: [digits.ml.example.com]
      canary: {{replicas: 1}}
      ab: {{header: x-digits-canary, value: "always"}}
      steps: {steps}
      analysis:
        prometheus: {prometheus}
        interval: {interval}
        min_requests: 20
        failure_limit: {failure_limit}
        thresholds:
          error_rate: {{max: 0.01, vs_baseline: {{max_regression: 0.005}}}}
          latency_p95_ms: {{max: 50}}
profiles:
  prod:
    models:
      digits:
        deploy:
          protected: true
"""


class RolloutProject(Project):
    def write(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        self.rollout()

    def rollout(
        self,
        steps: str = "[10, 50, 100]",
        interval: str = "1s",
        failure_limit: int = 1,
        prometheus: str = "http://127.0.0.1:9",  # nothing listens: the fakes never ask it
    ) -> None:
        self.config.write_text(
            ROLLOUT_PROJECT.format(
                steps=steps, interval=interval, failure_limit=failure_limit, prometheus=prometheus
            )
        )


def cli_args(project: Project, command: str, *rest: str) -> Any:
    from mlops_sessions.frontends.cli import build_parser

    argv = [command, "-c", str(project.config), *rest, *FAST_API]
    return build_parser(command).parse_args(argv)


def vs_routes(cluster: ClusterReader) -> list[dict[str, Any]]:
    """The REST routes; the gRPC port's (``grpc-*``, first) carry the same split."""
    vs = cluster.get("networking.istio.io/v1/virtualservices", "digits")
    assert vs is not None
    routes = list(vs["spec"]["http"])
    grpc = {r["name"][len("grpc-") :]: r for r in routes if r["name"].startswith("grpc-")}
    rest = [r for r in routes if not r["name"].startswith("grpc-")]
    assert list(grpc) == [r["name"] for r in rest]
    for route in rest:
        assert [d["weight"] for d in grpc[route["name"]]["route"]] == [
            d["weight"] for d in route["route"]
        ]
    return rest


def weights(cluster: ClusterReader) -> dict[str, int]:
    route = vs_routes(cluster)[-1]["route"]
    return {d["destination"]["subset"]: d["weight"] for d in route}


def deployment(cluster: ClusterReader, name: str) -> dict[str, Any]:
    dep = cluster.get("apps/v1/deployments", f"digits-{name}")
    assert dep is not None
    return dep


def image(cluster: ClusterReader, name: str) -> str:
    return str(deployment(cluster, name)["spec"]["template"]["spec"]["containers"][0]["image"])


def history(cluster: ClusterReader) -> tuple[str, dict[int, dict[str, Any]]]:
    cm = cluster.get("v1/configmaps", "digits-mlops-history")
    assert cm is not None
    data = cm["data"]
    records = {int(k[1:]): json.loads(v) for k, v in data.items() if k.startswith("r")}
    return data["current"], records


def rollout_state(cluster: ClusterReader) -> dict[str, Any] | None:
    cm = cluster.get("v1/configmaps", "digits-mlops-rollout")
    if cm is None or not (cm.get("data") or {}).get("state"):
        return None
    state: dict[str, Any] = json.loads(cm["data"]["state"])
    return state
