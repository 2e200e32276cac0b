"""The Grafana dashboard: what `mlops dashboard` prints, the ConfigMap render ships, the
panels the issue asks for with mlops.yaml's thresholds as lines, and every query valid
PromQL (checked by promtool)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.config import Config
from mlops_sessions.frontends.cli import main
from mlops_sessions.planning import alerts, dashboard
from tests.observe.conftest import run_promtool

PANELS = [
    "Requests",
    "Errors",
    "Latency percentiles",
    "Batch sizes",
    "Traffic per track and canary weight",
    "Drift",
]


def _panels(board: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["title"]: p for p in board["panels"] if p["type"] != "row"}


def _lines(panel: dict[str, Any]) -> list[float]:
    defaults = panel["fieldConfig"]["defaults"]
    assert defaults["custom"]["thresholdsStyle"]["mode"] == "line"
    return [s["value"] for s in defaults["thresholds"]["steps"] if s["value"] is not None]


def test_the_panels_and_the_thresholds_of_mlops_yaml(config: Config) -> None:
    board = dashboard.dashboard(config)
    panels = _panels(board)
    assert list(panels) == PANELS
    # analysis.thresholds of the fixture: error_rate max 0.05, latency_p95_ms max 50,
    # prediction_drift_psi max 0.2, request_rate min 0.1.
    assert _lines(panels["Errors"]) == [0.05]
    assert _lines(panels["Latency percentiles"]) == [50]
    assert _lines(panels["Drift"]) == [0.2]
    assert _lines(panels["Requests"]) == [0.1]
    # The panels read the recorded series the alerts fire on.
    window = alerts.window_text(config.alerts)
    exprs = [t["expr"] for t in panels["Errors"]["targets"]]
    assert exprs == [alerts.recorded("error_rate", window) + '{model="digits"}']
    assert board["uid"] == "mlops-shop"


def test_mlops_dashboard_prints_and_writes_the_json(
    config: Config, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["dashboard", "-c", str(config.source_file)]) == 0
    printed = capsys.readouterr().out
    assert json.loads(printed) == dashboard.dashboard(config)
    out = tmp_path / "out" / "board.json"
    assert main(["dashboard", "-c", str(config.source_file), "--out", str(out)]) == 0
    assert out.read_text() == printed
    assert str(out) in capsys.readouterr().out


def test_render_ships_it_in_a_configmap_for_grafanas_sidecar(config: Config) -> None:
    assert main(["render", "-c", str(config.source_file), "--image", _image()]) == 0
    folder = config.root / "k8s" / "rendered" / "default" / "monitoring"
    assert sorted(p.name for p in folder.iterdir()) == [
        "digits-prometheusrule.yaml",
        "shop-dashboard.yaml",
    ]
    (cm,) = list(yaml.safe_load_all((folder / "shop-dashboard.yaml").read_text()))
    assert cm["kind"] == "ConfigMap"
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(cm["data"]["shop-mlops.json"]) == dashboard.dashboard(config)
    rendered = (config.root / "k8s" / "rendered" / "default" / "all.yaml").read_text()
    assert "PrometheusRule" not in rendered  # all.yaml stays what a deploy applies


def _image() -> str:
    return "serve=registry.example.com/shop/serve@sha256:" + "ab" * 32


def test_every_dashboard_query_is_valid_promql(config: Config, tmp_path: Path) -> None:
    queries = dashboard.queries(config)
    assert len(queries) >= 10
    rules = [{"record": f"dashboard:query_{i}", "expr": q} for i, q in enumerate(queries)]
    path = tmp_path / "queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = run_promtool("check", "rules", str(path))
    assert done.returncode == 0, done.stdout + done.stderr
