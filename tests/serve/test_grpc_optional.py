"""The first ``mlops serve`` a newcomer tries works without TF Serving's gRPC protos.

``pip install -e '.[dev]'`` cannot install tensorflow-serving-api (it would pull a second
TensorFlow; docs/serving.md), so here ``mlops serve`` runs with ``tensorflow_serving``
hidden from the interpreter (``sys.modules`` blocks its import, as if it were not
installed):

- gRPC only by default (no ``--grpc-port``, no ``serve.grpc_port``): one warning line, and
  the server serves REST;
- gRPC asked for (``--grpc-port``, or ``serve.grpc_port`` in the model or in ``defaults``):
  refused in one line naming the install, before any server starts.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.serve.conftest import MODEL, free_port

# Run the CLI as `python -m mlops_sessions` does, with tensorflow_serving not importable.
HIDDEN = (
    "import runpy, sys; sys.modules['tensorflow_serving'] = None; "
    "runpy.run_module('mlops_sessions', run_name='__main__', alter_sys=True)"
)


def _command(config: Path, *args: str) -> list[str]:
    return [sys.executable, "-c", HIDDEN, "serve", "-c", str(config), MODEL, *args]


def _config(directory: Path, model: dict[str, Any], defaults: dict[str, Any] | None = None) -> Path:
    doc: dict[str, Any] = {"apiVersion": "mlops/v1alpha1", "project": {"name": "grpc-optional"}}
    if defaults:
        doc["defaults"] = defaults
    doc["models"] = {MODEL: model}
    path = directory / "mlops.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


ASKED = {
    "flag": ({}, None, ("--grpc-port", "8500"), "--grpc-port 8500"),
    "model": ({"serve": {"grpc_port": 8501}}, None, (), "serve.grpc_port: 8501"),
    "defaults": ({}, {"serve": {"grpc_port": 8502}}, (), "serve.grpc_port: 8502"),
}


@pytest.mark.parametrize("how", list(ASKED))
def test_grpc_asked_for_without_its_protos_is_refused_in_one_line(how: str, tmp_path: Path) -> None:
    model, defaults, flags, named = ASKED[how]
    config = _config(tmp_path, model, defaults)
    # Refused before any model loads: an export that passes the pre-flight check will do.
    export = tmp_path / "export"
    export.mkdir()
    (export / "saved_model.pb").write_bytes(b"\x08\x01\x12\x00")
    result = subprocess.run(
        [*_command(config, "--model-dir", str(export), "--port", "0"), *flags],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert named in lines[0] and "tensorflow-serving-api" in lines[0], lines
    assert "pip install --no-deps tensorflow-serving-api" in lines[0]
    assert "--grpc-port 0" in lines[0]  # and the way to serve REST only


@pytest.mark.slow  # starts a real server on a real SavedModel (TensorFlow import: seconds)
def test_default_grpc_without_its_protos_serves_rest_with_one_warning(
    dense_model: Path, tmp_path: Path
) -> None:
    config = _config(tmp_path, {"serve": {"port": free_port()}})
    process = subprocess.Popen(
        [*_command(config, "--model-dir", str(dense_model), "--json")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"TF_CPP_MIN_LOG_LEVEL": "3", "PATH": "/usr/bin:/bin", **_python_env()},
    )  # fmt: skip
    try:
        assert process.stdout is not None
        ready = json.loads(process.stdout.readline())
        assert ready["event"] == "ready" and "grpc" not in ready, ready
        import urllib.request

        body = json.dumps({"instances": [[0.0] * 64]}).encode()
        with urllib.request.urlopen(ready["predict"], data=body, timeout=30) as answer:
            assert len(json.loads(answer.read())["predictions"][0]) == 10
    finally:
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    warned = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warned) == 1, err
    assert "serving REST only" in warned[0] and "8500" in warned[0], warned
    assert "tensorflow-serving-api" in warned[0] and "serve.grpc_port" in warned[0]
    assert process.returncode == 0, err


def _python_env() -> dict[str, str]:
    """What the interpreter needs from the environment (HOME for caches, PYTHONPATH)."""
    import os

    return {k: v for k in ("HOME", "PYTHONPATH", "VIRTUAL_ENV") if (v := os.environ.get(k))}
