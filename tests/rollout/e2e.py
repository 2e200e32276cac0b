"""The parts of a whole progressive rollout on real parts, for
tests/kube/test_rollout_real.py and benchmarks/cluster.py: the project (steps 50 then 100,
judged by a real Prometheus), the exported good and failing models, two real
`mlops serve` processes (stable, canary) and a bounded load through tests/rollout/router.py,
which routes by the VirtualService the rollout itself writes. There the real API server
holds the objects and the real analysis judges each step; no fake anywhere.
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
from tests.deploy.conftest import image_ref
from tests.prometheus_server import Prometheus
from tests.rollout.router import Router
from tests.rollout.test_live_analysis_e2e import _export_failing, _serve
from tests.serve.conftest import MODEL, Server, _export_dense

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
