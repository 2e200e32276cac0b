"""``mlops serve`` refuses what it cannot serve with a message naming the fix (no server starts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops_sessions.frontends.cli import main

# The smallest bytes the pre-flight check takes for a SavedModel (a version and one empty
# MetaGraph): enough to reach what the server checks next; TensorFlow would refuse it.
MINIMAL_GRAPH = b"\x08\x01\x12\x00"
CONFIG = """\
apiVersion: mlops/v1alpha1
project: {name: serve-cli}
models:
  tiny: {}
  other: {serve: {runtime: tfserving}}
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "mlops.yaml"
    path.write_text(CONFIG)
    return path


def _run(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    code = main(["serve", "-c", str(config), *args])
    return code, capsys.readouterr().err


def test_no_blessed_model_names_evaluate(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(config, capsys, "tiny")
    assert code == 1
    assert "no blessed run" in err and "mlops evaluate tiny" in err and "--model-dir" in err


def test_several_models_need_a_name(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(config, capsys)
    assert code == 1 and "name one" in err and "tiny" in err


def test_unknown_run_is_refused(config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, err = _run(config, capsys, "tiny", "--run", "nope")
    assert code == 1 and "no training run 'nope'" in err and "mlops train" in err


def test_run_of_another_model_is_refused(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    run_dir = tmp_path / ".mlops" / "runs" / "r1"
    (run_dir / "model").mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"run_id": "r1", "model": "other"}))
    code, err = _run(config, capsys, "tiny", "--run", "r1")
    assert code == 1 and "trained model 'other'" in err


def test_model_dir_must_be_a_saved_model(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, err = _run(config, capsys, "tiny", "--model-dir", str(tmp_path))
    assert code == 1 and "no saved_model.pb" in err


def test_tfserving_runtime_is_not_the_builtin_server(
    config: Path, capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "saved_model.pb").write_bytes(b"")
    code, err = _run(config, capsys, "other", "--model-dir", str(tmp_path / "m"))
    assert code == 1 and "runtime: mlops" in err


@pytest.mark.slow  # imports TensorFlow (seconds): only TensorFlow can refuse this one
def test_unloadable_model_fails_cleanly(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A SavedModel only TensorFlow can tell is broken ends the server with a clear one-line
    error, not a hanging unready pod (the pre-flight check: test_saved_model_check.py)."""
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "saved_model.pb").write_bytes(MINIMAL_GRAPH)
    code, err = _run(
        config, capsys, "tiny", "--model-dir", str(tmp_path / "m"), "--port", "0",
        "--grpc-port", "0",
    )  # fmt: skip
    assert code == 1 and "cannot load model" in err and "serving_default" in err
    assert len(err.strip().splitlines()) == 1, err


def test_port_in_use_is_refused_with_the_fix(
    config: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import socket

    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "saved_model.pb").write_bytes(MINIMAL_GRAPH)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, err = _run(
            config, capsys, "tiny", "--model-dir", str(tmp_path / "m"), "--host", "127.0.0.1",
            "--port", str(port), "--grpc-port", "0",
        )  # fmt: skip
    assert code == 1 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err
