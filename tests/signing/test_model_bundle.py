"""The model-signing adapter (executors/modelsign) and the loaders' rule (drivers/model_signing).

Real keys (EC P-256, made here with ``cryptography``, never committed), real bundles made
by the model-signing library, a model directory of real files. Every refusal the issue
names is made to happen: a changed, added or removed file, another key, an altered
statement, a verdict that is not ``pass``, another model's verdict, a damaged bundle. The
library's own CLI must still verify our bundles (the claim is an extra predicate field).
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from mlops_sessions.drivers import model_signing
from mlops_sessions.executors.modelsign.bundle import (
    CLAIM_FIELD,
    ModelSignatureError,
    key_fingerprint,
    sign_model,
    verify_model,
)
from mlops_sessions.executors.s3.fetch import MARKER


def key_pair(folder: Path, name: str = "model") -> tuple[Path, Path]:
    """An EC P-256 key pair in PEM, written under folder: (private, public)."""
    key = ec.generate_private_key(ec.SECP256R1())
    private = folder / f"{name}.key"
    public = folder / f"{name}.pub"
    private.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    public.write_bytes(
        key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private, public


def claim(verdict: str = "pass", model: str = "tiny") -> dict[str, Any]:
    return {
        "model": model,
        "run_id": "20260101T000000Z-abcd1234",
        "model_hash": "0" * 64,
        "evaluation": {"id": "e1", "verdict": verdict, "metrics": {"accuracy": 0.97}},
    }


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    """A SavedModel-shaped directory of real bytes (the adapter hashes files; it does not
    load TensorFlow)."""
    root = tmp_path / "model"
    (root / "variables").mkdir(parents=True)
    (root / "saved_model.pb").write_bytes(b"\x08\x01" + bytes(range(256)) * 4)
    (root / "variables" / "variables.index").write_bytes(b"index" * 50)
    (root / "variables" / "variables.data-00000-of-00001").write_bytes(b"\x00\x01" * 4096)
    (root / "fingerprint.pb").write_bytes(b"fp")
    return root


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return key_pair(tmp_path)


def signed(model_dir: Path, keys: tuple[Path, Path], **kwargs: Any) -> Path:
    signature = model_dir.parent / "model.sig"
    sign_model(model_dir, signature, keys[0].read_bytes(), kwargs.pop("claim", claim()), **kwargs)
    return signature


def test_sign_then_verify_returns_the_digest_and_the_claim(
    model_dir: Path, keys: tuple[Path, Path]
) -> None:
    signature = model_dir.parent / "model.sig"
    made = sign_model(model_dir, signature, keys[0].read_bytes(), claim())
    verified = model_signing.check(model_dir, signature, keys[1].read_bytes(), model="tiny")
    assert verified.digest == made.digest and len(made.digest) == 64
    assert verified.key_fingerprint == made.key_fingerprint == key_fingerprint(keys[1].read_bytes())
    assert verified.files == made.files == 4
    assert verified.claim["evaluation"] == {
        "id": "e1",
        "verdict": "pass",
        "metrics": {"accuracy": 0.97},
    }
    # The claim is inside the signed in-toto statement, beside the library's own fields.
    bundle = json.loads(signature.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    assert statement["_type"] == "https://in-toto.io/Statement/v1"
    assert statement["predicateType"] == "https://model_signing/signature/v1.0"
    assert statement["predicate"][CLAIM_FIELD]["model"] == "tiny"
    assert {r["name"] for r in statement["predicate"]["resources"]} == {
        "saved_model.pb",
        "fingerprint.pb",
        "variables/variables.index",
        "variables/variables.data-00000-of-00001",
    }
    assert bundle["verificationMaterial"]["tlogEntries"] == []  # offline, no Rekor


def test_the_librarys_own_cli_verifies_our_bundle(model_dir: Path, keys: tuple[Path, Path]) -> None:
    signature = signed(model_dir, keys)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "model_signing",
            "verify",
            "key",
            str(model_dir),
            "--signature",
            str(signature),
            "--public_key",
            str(keys[1]),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_a_changed_file_is_refused_naming_it(model_dir: Path, keys: tuple[Path, Path]) -> None:
    signature = signed(model_dir, keys)
    data = model_dir / "variables" / "variables.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:-1] + b"\x07")
    with pytest.raises(ModelSignatureError) as refused:
        model_signing.check(model_dir, signature, keys[1].read_bytes())
    message = str(refused.value)
    assert "\n" not in message
    assert "does not match its signature" in message
    assert "variables/variables.data-00000-of-00001" in message


@pytest.mark.parametrize("change", ["added", "removed"])
def test_an_added_or_removed_file_is_refused(
    model_dir: Path, keys: tuple[Path, Path], change: str
) -> None:
    signature = signed(model_dir, keys)
    if change == "added":
        (model_dir / "assets").mkdir()
        (model_dir / "assets" / "vocab.txt").write_text("extra")
    else:
        (model_dir / "fingerprint.pb").unlink()
    with pytest.raises(ModelSignatureError, match="does not match its signature"):
        model_signing.check(model_dir, signature, keys[1].read_bytes())


def test_the_fetch_marker_inside_the_model_is_not_part_of_it(
    model_dir: Path, keys: tuple[Path, Path]
) -> None:
    signature = signed(model_dir, keys, ignore=model_signing.NOT_MODEL_FILES)
    (model_dir / MARKER).write_text('{"sha256": "x"}\n')
    assert model_signing.check(model_dir, signature, keys[1].read_bytes()).files == 4


def test_another_key_is_refused(model_dir: Path, keys: tuple[Path, Path], tmp_path: Path) -> None:
    signature = signed(model_dir, keys)
    _, other_public = key_pair(tmp_path, "other")
    with pytest.raises(ModelSignatureError, match="signed by another key"):
        model_signing.check(model_dir, signature, other_public.read_bytes())


def test_another_key_is_refused_even_with_the_key_hint_forged(
    model_dir: Path, keys: tuple[Path, Path], tmp_path: Path
) -> None:
    """The hint is a label, not the proof: a bundle relabelled for the verifier's key
    still fails on the signature itself."""
    signature = signed(model_dir, keys)
    _, other_public = key_pair(tmp_path, "other")
    bundle = json.loads(signature.read_text())
    bundle["verificationMaterial"]["publicKey"]["hint"] = key_fingerprint(other_public.read_bytes())
    signature.write_text(json.dumps(bundle))
    with pytest.raises(ModelSignatureError, match="does not verify with the key"):
        model_signing.check(model_dir, signature, other_public.read_bytes())


def test_an_altered_statement_is_refused(model_dir: Path, keys: tuple[Path, Path]) -> None:
    """A failing verdict turned into a pass after signing: the DSSE signature breaks."""
    signature = signed(model_dir, keys, claim=claim("fail"))
    bundle = json.loads(signature.read_text())
    statement = json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))
    statement["predicate"][CLAIM_FIELD]["evaluation"]["verdict"] = "pass"
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(
        json.dumps(statement, indent=2).encode()
    ).decode()
    signature.write_text(json.dumps(bundle))
    with pytest.raises(ModelSignatureError, match="does not verify with the key"):
        model_signing.check(model_dir, signature, keys[1].read_bytes())


def test_a_signed_fail_is_refused(model_dir: Path, keys: tuple[Path, Path]) -> None:
    signature = signed(model_dir, keys, claim=claim("fail"))
    # The signature itself is sound: the adapter verifies it and reports the claim ...
    assert (
        verify_model(model_dir, signature, keys[1].read_bytes()).claim["evaluation"]["verdict"]
        == "fail"
    )
    # ... and the loaders' rule refuses it.
    with pytest.raises(ModelSignatureError, match="carries verdict 'fail'"):
        model_signing.check(model_dir, signature, keys[1].read_bytes())


def test_a_signature_without_a_verdict_is_refused(model_dir: Path, keys: tuple[Path, Path]) -> None:
    signature = signed(model_dir, keys, claim={"model": "tiny"})
    with pytest.raises(ModelSignatureError, match="no gate verdict"):
        model_signing.check(model_dir, signature, keys[1].read_bytes())


def test_another_models_verdict_is_refused(model_dir: Path, keys: tuple[Path, Path]) -> None:
    signature = signed(model_dir, keys, claim=claim(model="other"))
    with pytest.raises(ModelSignatureError, match="for model 'other', not 'tiny'"):
        model_signing.check(model_dir, signature, keys[1].read_bytes(), model="tiny")


@pytest.mark.parametrize(
    "content", [b"not json", b"[]", b'{"dsseEnvelope": {"payload": "%%%"}}', b"{}"]
)
def test_a_damaged_bundle_is_one_line(
    model_dir: Path, keys: tuple[Path, Path], content: bytes
) -> None:
    signature = model_dir.parent / "model.sig"
    signature.write_bytes(content)
    with pytest.raises(ModelSignatureError) as refused:
        model_signing.check(model_dir, signature, keys[1].read_bytes())
    assert "\n" not in str(refused.value) and str(signature) in str(refused.value)


def test_a_key_that_is_not_pem_is_one_line(model_dir: Path, keys: tuple[Path, Path]) -> None:
    with pytest.raises(ModelSignatureError, match="not a usable EC private key"):
        sign_model(model_dir, model_dir.parent / "model.sig", b"garbage", claim())
    signature = signed(model_dir, keys)
    with pytest.raises(ModelSignatureError, match="not a PEM public key"):
        model_signing.check(model_dir, signature, b"garbage")


def test_key_references(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "model.pub").write_bytes(b"PEM")
    assert model_signing.read_key(tmp_path, "keys/model.pub", "k") == b"PEM"
    monkeypatch.setenv("MODEL_KEY", "FROM-ENV")
    assert model_signing.read_key(tmp_path, "env://MODEL_KEY", "k") == b"FROM-ENV"
    monkeypatch.delenv("MODEL_KEY")
    with pytest.raises(Exception, match="MODEL_KEY is not set"):
        model_signing.read_key(tmp_path, "env://MODEL_KEY", "k")
    with pytest.raises(Exception, match="is a KMS URI"):
        model_signing.read_key(tmp_path, "awskms:///alias/model", "k")
    with pytest.raises(Exception, match="cannot read"):
        model_signing.read_key(tmp_path, "keys/missing.pem", "k")


@pytest.mark.parametrize(
    "extra",
    [["--signature", "model.sig"], ["--public-key", "model.pub"], ["--model", "tiny"]],
)
def test_fetch_model_takes_the_signature_options_together(
    extra: list[str], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Refused at the top, before any download or write (no S3 needed)."""
    from mlops_sessions.frontends import cli

    dest = tmp_path / "models" / "tiny"
    fetch = ["fetch-model", "--uri", "s3://models/m.tgz", "--sha256", "ab" * 32]
    code = cli.main([*fetch, "--dest", str(dest), *extra])
    err = capsys.readouterr().err
    assert code == 1 and "--signature" in err and len(err.strip().splitlines()) == 1
    assert not dest.parent.exists()
