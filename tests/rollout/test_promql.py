"""The rollout's PromQL, run by Prometheus's own engine: ``promtool test rules`` evaluates
every query :func:`live_analysis.queries` writes over input series that cover traffic, zero
traffic, an empty result, a missing track, and errors from before the window (which must
not count). Only promtool's verdict is trusted here, not a reimplementation of PromQL."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.planning.live_analysis import queries
from tests.conftest import require_real

MODEL = "digits"
WINDOW_S = 60
EVAL = "5m"  # the window's end; input series are sampled every 15s from 0
REQ = "mlops_serve_requests_total"
BUCKET = "mlops_serve_request_duration_seconds_bucket"


def _series(name: str, labels: dict[str, str], values: str) -> dict[str, str]:
    text = ",".join(f'{k}="{v}"' for k, v in labels.items())
    return {"series": f"{name}{{{text}}}", "values": values}


def _req(track: str, code: str, values: str, endpoint: str = "predict") -> dict[str, str]:
    labels = {"model": MODEL, "version": "1", "track": track, "endpoint": endpoint, "code": code}
    return _series(REQ, labels, values)


def _expect(track: str, name: str, samples: list[tuple[dict[str, str], float]]) -> dict[str, Any]:
    return {
        "expr": queries(MODEL, track, WINDOW_S)[name],
        "eval_time": EVAL,
        "exp_samples": [
            {"labels": "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}", "value": v}
            for labels, v in samples
        ],
    }


def _run_promtool(tmp_path: Path, tests: list[dict[str, Any]]) -> None:
    promtool = shutil.which("promtool")
    if promtool is None:
        require_real("promtool (Debian's prometheus package) is not installed")
    assert promtool is not None
    path = tmp_path / "rollout_test.yml"
    path.write_text(yaml.safe_dump({"rule_files": [], "tests": tests}, sort_keys=False))
    done = subprocess.run(
        [promtool, "test", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_counts_rates_and_the_window_boundary(tmp_path: Path) -> None:
    series = [
        # canary: 10 good requests per 15s all along ...
        _req("canary", "200", "0+10x20"),
        # ... and 5xx only in the first two minutes: before the window, so not counted.
        _req("canary", "500", "0+3x8 24+0x12"),
        # metadata calls are not model traffic
        _req("canary", "200", "0+100x20", endpoint="metadata"),
        # stable: 20 per 15s, 1 error per 15s inside the window
        _req("stable", "200", "0+20x20"),
        _req("stable", "503", "0+1x20"),
    ]
    exp = [
        _expect("canary", "requests", [({}, 40)]),
        _expect("canary", "errors", [({}, 0)]),
        _expect("stable", "requests", [({}, 84)]),
        _expect("stable", "errors", [({}, 4)]),
    ]
    _run_promtool(tmp_path, [{"interval": "15s", "input_series": series, "promql_expr_test": exp}])


def test_zero_traffic_empty_result_and_missing_track(tmp_path: Path) -> None:
    series = [
        _req("stable", "200", "0+0x20"),  # a track that exists but served nothing
    ]
    exp = [
        _expect("stable", "requests", [({}, 0)]),  # zero, not "no data"
        _expect("canary", "requests", []),  # missing track: an empty result
        _expect("canary", "errors", []),
        _expect("canary", "latency_p99_ms", []),
        _expect("canary", "predictions", []),
        _expect("canary", "input_bins", []),
    ]
    _run_promtool(tmp_path, [{"interval": "15s", "input_series": series, "promql_expr_test": exp}])


@pytest.mark.parametrize(
    ("metric", "expected_ms"),
    # 40 requests in the window: 20 in (0, 10ms], 20 in (10ms, 100ms]; Prometheus
    # interpolates linearly inside the bucket (computed the same way, in floats, here).
    [
        ("latency_p50_ms", 10.0),
        ("latency_p95_ms", 1000 * (0.01 + (0.95 * 40 - 20) / 20 * (0.1 - 0.01))),
        ("latency_p99_ms", 1000 * (0.01 + (0.99 * 40 - 20) / 20 * (0.1 - 0.01))),
    ],
)
def test_latency_percentiles_from_the_histogram(
    tmp_path: Path, metric: str, expected_ms: float
) -> None:
    base = {"model": MODEL, "version": "1", "track": "canary", "endpoint": "predict"}
    series = [
        _series(BUCKET, {**base, "le": "0.01"}, "0+5x20"),
        _series(BUCKET, {**base, "le": "0.1"}, "0+10x20"),
        _series(BUCKET, {**base, "le": "+Inf"}, "0+10x20"),
    ]
    exp = [_expect("canary", metric, [({}, expected_ms)])]
    _run_promtool(tmp_path, [{"interval": "15s", "input_series": series, "promql_expr_test": exp}])


def test_predicted_classes_and_input_bins_are_grouped(tmp_path: Path) -> None:
    base = {"model": MODEL, "version": "1", "track": "canary"}
    series = [
        _series("mlops_serve_predictions_total", {**base, "class": "3"}, "0+4x20"),
        _series("mlops_serve_predictions_total", {**base, "class": "7"}, "0+1x20"),
        _series("mlops_serve_input_bin_total", {**base, "feature": "f0", "bin": "0"}, "0+2x20"),
        _series("mlops_serve_input_bin_total", {**base, "feature": "f0", "bin": "1"}, "0+0x20"),
        _series(
            "mlops_serve_drift_reference_share",
            {**base, "feature": "f0", "bin": "0"},
            "0.5x20",
        ),
    ]
    exp = [
        _expect("canary", "predictions", [({"class": "3"}, 16), ({"class": "7"}, 4)]),
        _expect(
            "canary",
            "input_bins",
            [({"feature": "f0", "bin": "0"}, 8), ({"feature": "f0", "bin": "1"}, 0)],
        ),
        _expect("canary", "reference_shares", [({"feature": "f0", "bin": "0"}, 0.5)]),
    ]
    _run_promtool(tmp_path, [{"interval": "15s", "input_series": series, "promql_expr_test": exp}])
