"""``tracking.mlflow`` against a real MLflow tracking server on loopback (sqlite backend).

After ``mlops train`` and ``mlops evaluate`` the experiment holds the training run (params,
per-epoch history, lineage tags), the evaluation as its child run (metrics, verdict), and
the Model Registry holds the blessed model with the ``champion`` alias on it. An MLflow
that is down costs a warning, never the run or the blessing (the store is the truth).
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml


def _require_real(request: pytest.FixtureRequest, reason: str) -> None:
    shared = request.config.pluginmanager.get_plugin(
        str(Path(__file__).parent.parent / "conftest.py")
    )
    assert shared is not None
    shared.require_real(reason)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def mlflow_server(
    tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest
) -> Iterator[str]:
    """`mlflow server` on 127.0.0.1:<free port>, sqlite backend; stopped by PID."""
    binary = shutil.which("mlflow")
    try:
        import mlflow  # noqa: F401
    except ImportError:
        binary = None
    if binary is None:
        _require_real(request, "mlflow is not installed (pip install 'mlops-sessions[mlflow]')")
    root = tmp_path_factory.mktemp("mlflow")
    port = _free_port()
    log = root / "server.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(binary),
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--workers",
                "1",
                "--backend-store-uri",
                f"sqlite:///{root / 'mlflow.db'}",
                "--default-artifact-root",
                (root / "artifacts").as_uri(),
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                with direct.open(f"{url}/health", timeout=2):
                    break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    _require_real(
                        request, f"mlflow server did not start: {log.read_text()[-2000:]}"
                    )
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _track(checkout: Any, uri: str) -> None:
    doc = yaml.safe_load(checkout.config.read_text())
    doc["tracking"] = {"mlflow": {"uri": uri, "experiment": "toy-ci"}}
    checkout.config.write_text(yaml.safe_dump(doc, sort_keys=False))


@pytest.mark.slow  # the MLflow server takes ~30 s to start on a small machine
def test_runs_metrics_and_the_champion_alias_are_in_mlflow(
    checkout: Callable[..., Any], mlflow_server: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    laptop = checkout("laptop")
    _track(laptop, mlflow_server)
    for command in (
        ["init", "-q", "-b", "main"],
        ["-c", "user.email=t@example.com", "-c", "user.name=t", "add", "-A"],
        ["-c", "user.email=t@example.com", "-c", "user.name=t", "commit", "-q", "-m", "x"],
    ):
        subprocess.run(["git", *command], cwd=laptop.root, check=True, capture_output=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=laptop.root, check=True, capture_output=True, text=True
    ).stdout.strip()
    code, trained, err = laptop.mlops("train")
    assert code == 0, err
    run_id = trained["runs"][0]["run_id"]
    code, evaluated, err = laptop.mlops("evaluate")
    assert code == 0 and evaluated["models"]["toy"]["blessed"], err
    assert "tracking.mlflow" not in err, err

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    experiment = client.get_experiment_by_name("toy-ci")
    assert experiment is not None
    (train,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`mlops.kind` = 'train'"
    )
    assert train.info.run_name == run_id
    assert train.data.params["epochs"] == "3" and train.data.params["hidden"] == "8"
    assert train.data.tags["mlops.run_id"] == run_id
    assert train.data.tags["mlops.git_commit"] == commit
    assert train.data.tags["mlops.model_hash"] == trained["runs"][0]["model_hash"]
    assert train.data.tags["mlops.data.toy"]
    history = client.get_metric_history(train.info.run_id, "loss")
    assert [m.step for m in history] == [0, 1, 2], "one step per epoch"

    (evaluation,) = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`mlops.kind` = 'evaluate'"
    )
    assert evaluation.data.tags["mlflow.parentRunId"] == train.info.run_id
    assert evaluation.data.tags["mlops.verdict"] == "pass"
    expected = evaluated["models"]["toy"]["metrics"]["accuracy"]["value"]
    assert evaluation.data.metrics["accuracy"] == pytest.approx(expected)

    champion = client.get_model_version_by_alias("toy-toy", "champion")
    assert champion.tags["mlops.run_id"] == run_id
    assert champion.run_id == train.info.run_id
    assert str(champion.source).endswith(f"runs/{run_id}/model.tar.gz")


@pytest.mark.slow
def test_an_mlflow_that_is_down_is_a_warning_not_a_failure(
    checkout: Callable[..., Any], bucket: Any
) -> None:
    laptop = checkout("laptop")
    _track(laptop, "http://127.0.0.1:9")  # discard port: nothing answers
    code, _, err = laptop.mlops("train")
    assert code == 0 and "warning: tracking.mlflow: training run" in err
    assert bucket.objects("cache/train/"), "the store got the run all the same"
