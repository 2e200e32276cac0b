"""The signature travels with the model through ``store.remote``, and ``mlops fetch-model``
(the init container) refuses a model that does not verify, leaving nothing for the server.

A real S3 API (moto's server, tests/fixtures/moto.py) is the shared store; the project is
tests/store's toy checkout (a Keras model that trains in about a second) with
``evaluate.sign``; keys are made by the test. The archive fetch-model downloads is the
store's own ``runs/<run>/model.tar.gz`` and the signature the one the gate wrote beside
it on the remote (what render puts in the init container's ConfigMap).
"""

from __future__ import annotations

import hashlib
import io
import tarfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.frontends import cli
from mlops_sessions.records import keys
from tests.signing.test_model_bundle import key_pair
from tests.store.conftest import Bucket, Checkout, bucket, checkout, moto, s3_env

__all__ = ["bucket", "checkout", "moto", "s3_env"]  # the fixtures, used below

KEY_ENV = "TOY_MODEL_SIGNING_KEY"
PREFIX = "team/digits"

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture
def signed(
    checkout: Callable[..., Checkout],
    bucket: Bucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> dict[str, Any]:
    """Train and bless the toy model with evaluate.sign through the shared store."""
    project = checkout("laptop")
    private, public = key_pair(tmp_path)
    monkeypatch.setenv(KEY_ENV, private.read_text())
    doc = yaml.safe_load(project.config.read_text())
    doc["models"]["toy"]["evaluate"]["sign"] = {
        "key": f"env://{KEY_ENV}",
        "public_key": str(public),
    }
    project.config.write_text(yaml.safe_dump(doc, sort_keys=False))
    code, result, err = project.mlops("train")
    assert code == 0, err
    code, result, err = project.mlops("evaluate")
    assert code == 0 and result["passed"], err
    blessing = bucket.json("models/toy/blessed.json")
    run_id, eval_id = str(blessing["run_id"]), str(blessing["eval_id"])
    signature = tmp_path / "configmap" / "stable.sig"
    signature.parent.mkdir()
    body = bucket.client.get_object(
        Bucket=bucket.name, Key=f"{PREFIX}/{keys.model_signature(run_id, eval_id)}"
    )["Body"]
    signature.write_bytes(body.read())
    return {
        "project": project,
        "run_id": run_id,
        "public": public,
        "signature": signature,
        "sha256": bucket.json(keys.model_manifest(run_id))["sha256"],
        "uri": f"s3://{bucket.name}/{PREFIX}/{keys.model_archive(run_id)}",
    }


def fetch(
    capsys: pytest.CaptureFixture[str],
    bucket: Bucket,
    uri: str,
    sha256: str,
    dest: Path,
    signature: Path,
    public: Path,
) -> tuple[int, str]:
    capsys.readouterr()
    code = cli.main(
        [
            "fetch-model",
            "--uri",
            uri,
            "--sha256",
            sha256,
            "--dest",
            str(dest),
            "--endpoint",
            bucket.endpoint,
            "--retries",
            "0",
            "--signature",
            str(signature),
            "--public-key",
            str(public),
            "--model",
            "toy",
        ]
    )
    return code, capsys.readouterr().err


def nothing_left(dest: Path) -> bool:
    """No model at dest and no staging leftovers beside it."""
    return not dest.exists() and not list(dest.parent.glob(f".{dest.name}.fetch-*"))


@pytest.mark.slow  # trains the toy model (TensorFlow import) and evaluates it
def test_fetch_model_verifies_the_stores_model_and_refuses_a_tampered_one(
    signed: dict[str, Any], bucket: Bucket, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The signed archive of the store verifies and lands in --dest.
    dest = tmp_path / "pod" / "models" / "toy"
    code, err = fetch(
        capsys, bucket, signed["uri"], signed["sha256"], dest, signed["signature"], signed["public"]
    )
    assert code == 0, err
    assert (dest / "saved_model.pb").is_file()
    assert "signature ok" in err and "verdict pass" in err

    # The same model with one changed byte, uploaded with its own (correct) sha256: the
    # checksum passes, the signature does not, and the server gets nothing.
    archive = bucket.client.get_object(
        Bucket=bucket.name, Key=f"{PREFIX}/{keys.model_archive(signed['run_id'])}"
    )["Body"].read()
    tampered = _tamper(archive, "variables/variables.index")
    bucket.client.put_object(Bucket=bucket.name, Key="tampered/model.tar.gz", Body=tampered)
    sha = hashlib.sha256(tampered).hexdigest()
    other = tmp_path / "pod2" / "models" / "toy"
    code, err = fetch(
        capsys,
        bucket,
        f"s3://{bucket.name}/tampered/model.tar.gz",
        sha,
        other,
        signed["signature"],
        signed["public"],
    )
    assert code == 1
    lines = err.strip().splitlines()
    assert "does not match its signature" in lines[-1] and "variables/variables.index" in lines[-1]
    assert not any("Traceback" in line for line in lines)
    assert nothing_left(other)

    # A restarted init container with another key: the model already in --dest is removed,
    # not left for the server.
    _, stranger = key_pair(tmp_path / "pod", "stranger")
    code, err = fetch(
        capsys, bucket, signed["uri"], signed["sha256"], dest, signed["signature"], stranger
    )
    assert code == 1 and "signed by another key" in err
    assert nothing_left(dest)


def _tamper(archive: bytes, member: str) -> bytes:
    """The archive with one byte of member changed (same names, sizes and order)."""
    out = io.BytesIO()
    with (
        tarfile.open(fileobj=io.BytesIO(archive), mode="r:gz") as source,
        tarfile.open(fileobj=out, mode="w:gz") as target,
    ):
        for info in source.getmembers():
            data = source.extractfile(info).read() if info.isfile() else None  # type: ignore[union-attr]
            if info.name == member and data:
                data = bytes([data[0] ^ 0xFF]) + data[1:]
            target.addfile(info, io.BytesIO(data) if data is not None else None)
    return out.getvalue()
