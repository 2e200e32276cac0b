"""``mlops serve`` on a signed model, for real: it verifies, says so, and serves.

The refusals are tested in-process (tests/signing/test_model_gate.py: nothing starts);
here a real server process starts on a model that verifies, with tests/serve's exported
model and process helpers, so the path from verification to a ready server is covered.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from mlops_sessions.drivers import model_signing
from mlops_sessions.executors.modelsign.bundle import sign_model
from tests.serve.conftest import MODEL, dense_model, start_server
from tests.signing.test_model_bundle import key_pair

__all__ = ["dense_model"]  # the session fixture, used below


@pytest.mark.slow  # starts a real server (TensorFlow import and model load)
def test_serve_verifies_a_signed_model_then_serves_it(dense_model: Path, tmp_path: Path) -> None:
    model_dir = tmp_path / "signed" / "model"
    shutil.copytree(dense_model, model_dir)
    private, public = key_pair(tmp_path)
    signature = tmp_path / "signed" / "model.sig"
    claim = {"model": MODEL, "evaluation": {"id": "e1", "verdict": "pass", "metrics": {}}}
    sign_model(
        model_dir, signature, private.read_bytes(), claim, ignore=model_signing.NOT_MODEL_FILES
    )
    args = ("--signature", str(signature), "--public-key", str(public))
    with start_server(tmp_path / "server", model_dir, extra_args=args) as server:
        status, _, _ = server.request("GET", f"/v1/models/{MODEL}")
        assert status == 200
        assert "model signature ok" in server.logs() and "verdict pass" in server.logs()
