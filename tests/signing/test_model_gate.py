"""evaluate.sign end to end on real exported SavedModels: the gate signs what it blesses,
and ``mlops serve`` refuses a model that does not verify, before anything loads it.

Reuses tests/evaluate's session fixture (small Keras models trained and exported once) and
its project factory; keys are EC P-256 pairs made by the test (never committed). The
private key reaches mlops through ``env://`` as a CI secret would, the public key is a file.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from mlops_sessions.drivers import model_signing
from mlops_sessions.executors.modelsign.bundle import sign_model
from mlops_sessions.records import keys
from tests.evaluate.conftest import (
    DEFAULT_EVALUATE,
    Project,
    exported_models,
    make_project,
)
from tests.signing.test_model_bundle import key_pair

__all__ = ["exported_models", "make_project"]  # the fixtures, used below

KEY_ENV = "TINY_MODEL_SIGNING_KEY"
SIGN = f"sign: {{key: env://{KEY_ENV}, public_key: keys/model.pub}}\n"


@pytest.fixture
def project(
    make_project: Callable[..., Project], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Project:
    made = make_project(DEFAULT_EVALUATE + SIGN)
    secret = tmp_path / "secret"
    secret.mkdir()
    private, public = key_pair(secret)
    (made.root / "keys").mkdir()
    (made.root / "keys" / "model.pub").write_bytes(public.read_bytes())
    monkeypatch.setenv(KEY_ENV, private.read_text())
    return made


def blessed(project: Project) -> dict[str, object]:
    record = project.store.blessed("tiny")
    assert record is not None
    return dict(record)


def signature_of(project: Project, run_id: str, eval_id: str) -> Path:
    return keys.local(project.store.root, keys.model_signature(run_id, eval_id))


def serve(project: Project, *args: str) -> tuple[int, str]:
    code, _, err = project.cli("serve", "tiny", "--port", "0", *args)
    return code, err


def test_the_gate_signs_the_model_it_blesses(project: Project) -> None:
    run = project.add_run("good")
    code, result = project.evaluate_json()
    assert code == 0 and result["passed"], result
    record = blessed(project)
    signature = signature_of(project, run["run_id"], str(record["eval_id"]))
    assert signature.is_file()
    public = (project.root / "keys" / "model.pub").read_bytes()
    started = time.monotonic()
    verified = model_signing.check(
        project.store.run_dir(run["run_id"]) / "model", signature, public, model="tiny"
    )
    assert time.monotonic() - started < 10
    assert record["model_signature"] == {
        "digest": verified.digest,
        "key": verified.key_fingerprint,
    }
    claim = verified.claim
    assert claim["model"] == "tiny" and claim["run_id"] == run["run_id"]
    assert claim["model_hash"] == run["model_hash"]
    evaluation = claim["evaluation"]
    assert evaluation["id"] == record["eval_id"] and evaluation["verdict"] == "pass"
    verdict = json.loads((signature.parent / keys.VERDICT).read_text())
    assert evaluation["metrics"] == {
        name: check["value"] for name, check in verdict["metrics"].items()
    }
    assert evaluation["metrics"]["accuracy"] >= 0.9
    # mlops lineage names the signed model digest and the key that signed it.
    code, out, _ = project.cli("lineage", run["run_id"])
    assert code == 0
    assert f"model signed  {verified.digest} (key {verified.key_fingerprint})" in out


def test_a_failing_model_is_not_signed(project: Project) -> None:
    run = project.add_run("weak")
    code, result = project.evaluate_json()
    assert code == 1 and not result["passed"]
    eval_id = result["models"]["tiny"]["eval_id"]
    assert (signature_of(project, run["run_id"], eval_id).parent / keys.VERDICT).is_file()
    assert not signature_of(project, run["run_id"], eval_id).exists()
    assert project.store.blessed("tiny") is None


def test_signing_switched_on_later_signs_the_blessed_model_on_the_next_evaluate(
    project: Project,
) -> None:
    project.write_config(DEFAULT_EVALUATE)
    run = project.add_run("good")
    assert project.evaluate_json()[0] == 0
    eval_id = str(blessed(project)["eval_id"])
    assert not signature_of(project, run["run_id"], eval_id).exists()
    # Switched on now: serve refuses the unsigned blessed model ...
    project.write_config(DEFAULT_EVALUATE + SIGN)
    code, err = serve(project)
    assert code == 1
    assert "is not signed" in err and len(err.strip().splitlines()) == 1, err
    # ... and the next evaluate signs it.
    assert project.evaluate_json()[0] == 0
    record = blessed(project)
    assert signature_of(project, run["run_id"], str(record["eval_id"])).is_file()


def _signed_project(project: Project) -> tuple[dict[str, object], Path, Path]:
    run = project.add_run("good")
    assert project.evaluate_json()[0] == 0
    record = blessed(project)
    model_dir = project.store.run_dir(str(run["run_id"])) / "model"
    return record, model_dir, signature_of(project, str(run["run_id"]), str(record["eval_id"]))


def test_serve_refuses_a_tampered_model(project: Project) -> None:
    _, model_dir, _ = _signed_project(project)
    index = model_dir / "variables" / "variables.index"
    index.write_bytes(index.read_bytes() + b"\x00")
    code, err = serve(project)
    assert code == 1
    assert "does not match its signature" in err and "variables/variables.index" in err
    assert len(err.strip().splitlines()) == 1, err


def test_serve_refuses_another_key(project: Project, tmp_path: Path) -> None:
    _signed_project(project)
    _, other = key_pair(tmp_path, "other")
    (project.root / "keys" / "model.pub").write_bytes(other.read_bytes())
    code, err = serve(project)
    assert code == 1 and "signed by another key" in err
    assert len(err.strip().splitlines()) == 1, err


def test_serve_refuses_a_verdict_that_is_not_pass(project: Project) -> None:
    """A bundle made with the right key over the right files, but claiming a fail (as a
    hand-made or misused signature could): the loader's rule refuses it."""
    record, model_dir, signature = _signed_project(project)
    sign_model(
        model_dir,
        signature,
        os.environ[KEY_ENV].encode(),
        {"model": "tiny", "evaluation": {"id": record["eval_id"], "verdict": "fail"}},
    )
    code, err = serve(project)
    assert code == 1 and "carries verdict 'fail'" in err
    assert len(err.strip().splitlines()) == 1, err


def test_serve_refuses_a_model_dir_without_a_signature(project: Project, tmp_path: Path) -> None:
    _, model_dir, signature = _signed_project(project)
    elsewhere = tmp_path / "copy" / "model"
    shutil.copytree(model_dir, elsewhere)
    code, err = serve(project, "--model-dir", str(elsewhere))
    assert code == 1 and "pass its --signature" in err
    # With its signature named, the copy verifies; a signature of another model does not.
    (elsewhere / "saved_model.pb").write_bytes(b"\x08\x01")
    code, err = serve(project, "--model-dir", str(elsewhere), "--signature", str(signature))
    assert code == 1 and "does not match its signature" in err


def test_a_rotated_key_signs_the_blessed_model_again(project: Project, tmp_path: Path) -> None:
    from mlops_sessions.config.loader import load

    record, model_dir, signature = _signed_project(project)
    config = load(project.config_path)
    run = project.store.load_run(str(record["run_id"]))
    assert run is not None
    again = (config, project.store, config.models["tiny"], run, str(record["eval_id"]))
    assert model_signing.sign_blessed(*again) is None  # signed by the current key already
    private, public = key_pair(tmp_path, "rotated")
    os.environ[KEY_ENV] = private.read_text()  # restored by the fixture's monkeypatch
    (project.root / "keys" / "model.pub").write_bytes(public.read_bytes())
    code, err = serve(project)
    assert code == 1 and "signed by another key" in err
    made = model_signing.sign_blessed(*again)
    assert made is not None
    verified = model_signing.check(model_dir, signature, public.read_bytes(), model="tiny")
    assert verified.key_fingerprint == made.key_fingerprint
    assert model_signing.sign_blessed(*again) is None
