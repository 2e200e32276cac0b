"""Fixtures of the alerting and dashboard tests: a project whose alerts fire within
minutes (``alerts.for`` and ``alerts.window`` of one minute), its rules as a Prometheus
rule file, and promtool."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.config import Config
from mlops_sessions.config.loader import load
from mlops_sessions.planning import alerts
from tests.conftest import require_real

PROJECT = """\
apiVersion: mlops/v1alpha1
project: {{name: shop}}
images:
  serve:
    kind: serve
    repository: registry.example.com/shop/serve
    base: {{variant: cpu, tensorflow: "2.21.0"}}
alerts:
  for: {hold}
  window: {window}
  labels: {{team: ml}}
  rule_labels: {{release: kube-prometheus-stack}}
models:
  {model}:
    image: serve
    deploy: {{namespace: ml, replicas: 2, rollout_timeout: 1m}}
    rollout:
      hosts: [{model}.ml.example.com]
      canary: {{replicas: 1}}
      steps: [50, 100]
      analysis:
        prometheus: {prometheus}
        interval: 1m
        min_requests: 20
        thresholds:
          error_rate: {{max: 0.05, vs_baseline: {{max_regression: 0.02}}}}
          latency_p95_ms: {{max: 50, vs_baseline: {{max_regression_pct: 50}}}}
          prediction_drift_psi: {{max: 0.2}}
          request_rate: {{min: 0.1}}
"""


def write_project(
    directory: Path,
    window: str = "1m",
    prometheus: str = "http://127.0.0.1:9",
    hold: str = "1m",
    model: str = "digits",
) -> Config:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "mlops.yaml"
    path.write_text(PROJECT.format(window=window, prometheus=prometheus, hold=hold, model=model))
    return load(path)


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return write_project(tmp_path / "project")


def rule_file(config: Config, path: Path, *, keep_summary: bool = True) -> Path:
    """Every model's rule groups as a Prometheus rule file (what the operator loads)."""
    groups: list[dict[str, Any]] = []
    for model in config.models.values():
        for group in alerts.rule_groups(config, model):
            if not keep_summary:
                group = {
                    **group,
                    "rules": [
                        {
                            **rule,
                            "annotations": {
                                k: v
                                for k, v in rule.get("annotations", {}).items()
                                if k != "summary"
                            },
                        }
                        if "alert" in rule
                        else rule
                        for rule in group["rules"]
                    ],
                }
            groups.append(group)
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False))
    return path


def promtool() -> str:
    found = shutil.which("promtool")
    if found is None:
        require_real("promtool (Debian's prometheus package) is not installed")
    assert found is not None
    return found


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], capture_output=True, text=True, timeout=120)
