"""A whole progressive rollout on real parts: `mlops deploy` drives it on kmock's
Kubernetes emulator, tests/rollout/router.py routes a bounded load by the VirtualService
the rollout itself writes to two real `mlops serve` processes (stable, canary), a real
Prometheus scrapes them, and each step is judged by the real analysis
(executors.observe.prometheus through drivers.cluster.analyser_for). No fake anywhere in the
judgement: a good canary is promoted, a canary answering 5xx is aborted at its first step.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops_sessions.records.store import Store, write_json_atomic
from mlops_sessions.steps import deploy as deploy_step
from tests.deploy.conftest import FAST_API, image_ref
from tests.prometheus_server import Prometheus
from tests.rollout.router import Router, vs_reader
from tests.rollout.test_live_analysis_e2e import _export_failing, _serve
from tests.serve.conftest import MODEL, Server, _export_dense

pytestmark = pytest.mark.slow

PROJECT = """\
apiVersion: mlops/v1alpha1
project: {{name: shop}}
images:
  serve:
    repository: registry.example.com/shop/serve
    base: {{variant: cpu, tensorflow: "2.21.0"}}
models:
  {model}:
    image: serve
    deploy: {{namespace: ml, replicas: 1, rollout_timeout: 5s}}
    rollout:
      hosts: [tiny.example.com]
      canary: {{replicas: 1}}
      steps: [50, 100]
      analysis:
        prometheus: {prometheus}
        interval: 5s
        min_requests: 10
        thresholds:
          error_rate: {{max: 0.02}}
"""


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("e2e-models")
    made = {"good": root / "good", "failing": root / "failing"}
    _export_dense(made["good"])
    _export_failing(made["failing"])
    return made


def release(root: Path, tag: str) -> None:
    """Record a pushed, blessed build of image 'serve' carrying model-<tag>."""
    store = Store(root / ".mlops")
    write_json_atomic(
        store.builds() / "serve" / "latest.json",
        {"image": image_ref(tag), "model_hash": f"model-{tag}", "run_id": f"run-{tag}"},
    )
    store.bless(MODEL, {"model": MODEL, "run_id": f"run-{tag}", "model_hash": f"model-{tag}"})


def deploy(config: Path) -> int:
    from mlops_sessions.frontends.cli import build_parser

    args = build_parser("deploy").parse_args(["deploy", "-c", str(config), *FAST_API])
    return deploy_step.run(args)  # the real analysis: Prometheus


class Load:
    """A bounded load (about 40 requests a second) through the router while it runs."""

    def __init__(self, router: Router) -> None:
        self.router = router
        self.stop = threading.Event()
        self.threads = [threading.Thread(target=self.client, args=(s,)) for s in range(4)]

    def client(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        while not self.stop.is_set():
            row = rng.random(64).astype(np.float32).tolist()
            body = json.dumps({"instances": [row]}).encode()
            self.router.route(f"/v1/models/{MODEL}:predict", body)
            time.sleep(0.1)

    def __enter__(self) -> Load:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(10)


def servers(
    tmp: Path, models: dict[str, Path], canary: str, prometheus: Prometheus
) -> Iterator[tuple[Server, Server]]:
    for stable in _serve(tmp / "s", models["good"], "stable", prometheus):
        for canary_server in _serve(tmp / "c", models[canary], "canary", prometheus):
            yield stable, canary_server


@pytest.mark.parametrize(("canary", "code"), [("good", 0), ("failing", 1)])
def test_a_rollout_judged_on_the_traffic_it_routes(
    tmp_path: Path,
    models: dict[str, Path],
    prometheus: Prometheus,
    cluster: Any,
    capsys: pytest.CaptureFixture[str],
    canary: str,
    code: int,
) -> None:
    config = tmp_path / "project" / "mlops.yaml"
    config.parent.mkdir()
    config.write_text(PROJECT.format(model=MODEL, prometheus=prometheus.url))
    release(config.parent, "v1")
    assert deploy(config) == 0  # first deploy: straight to stable
    release(config.parent, "v2")
    for stable, canary_server in servers(tmp_path, models, canary, prometheus):
        router = Router(
            vs_reader(str(cluster.kubeconfig), MODEL, "ml"),
            {"stable": stable.url, "canary": canary_server.url},
        )
        capsys.readouterr()
        with Load(router):
            assert deploy(config) == code
        err = capsys.readouterr().err
    state_cm = cluster.get("v1/configmaps", f"{MODEL}-mlops-rollout")
    assert state_cm is not None
    state = json.loads(state_cm["data"]["state"])
    judged = [(m["window"]["weight"], m["judged"]) for m in state["measurements"]]
    if canary == "good":
        assert state["phase"] == "promoted", err
        assert judged == [(50, "passed"), (100, "passed")], err
        assert router.counts["canary"] > 0 and router.counts["stable"] > 0
    else:
        assert state["phase"] == "aborted", err
        assert judged == [(50, "failed")], err
        first = err.split(f"mlops deploy: {MODEL}: ", 1)[1].splitlines()[0]
        assert first.startswith("error_rate = "), first
        assert "(bound <= 0.02) at step 1/2 (canary 50%), window" in first
    canary_values = state["measurements"][0]["measurements"]["canary"]
    assert state["measurements"][0]["samples"]["canary"] >= 10
    assert canary_values["error_rate"] is not None
