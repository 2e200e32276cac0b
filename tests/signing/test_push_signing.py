"""`mlops push` with images.<name>.sign, against the real registry, cosign and syft: the
digest is signed with the project's key pair (no transparency log), the CycloneDX SBOM and
the SLSA provenance are attached as signed attestations, and the push record names the
registry digests of all three; `mlops lineage` shows them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization

from tests.images.conftest import BASE_IMAGE, git
from tests.signing.conftest import DATA_HASH, EVAL_ID, MODEL, MODEL_HASH, RUN_ID, SignedProject

pytestmark = pytest.mark.slow


def cosign(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["cosign", *args], capture_output=True, text=True, timeout=120, check=False
    )


def attested(signed: SignedProject, predicate_type: str) -> list[dict[str, Any]]:
    """The statements cosign verifies for the pushed digest, decoded from their envelopes."""
    done = cosign(
        "verify-attestation",
        "--key",
        str(signed.keys.public),
        "--insecure-ignore-tlog",
        "--allow-http-registry",
        "--type",
        predicate_type,
        signed.pushed["image"],
    )
    assert done.returncode == 0, done.stderr
    return [
        json.loads(base64.b64decode(json.loads(line)["payload"]))
        for line in done.stdout.splitlines()
        if line.strip()
    ]


def test_push_record_names_the_key_and_the_registry_digests(signed: SignedProject) -> None:
    signing = signed.pushed["signing"]
    public = serialization.load_pem_public_key(signed.keys.public.read_bytes())
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert signing["key"] == "sha256:" + hashlib.sha256(der).hexdigest()
    assert signing["tlog"] is False
    digests = [
        signing["signature"],
        signing["attestations"]["provenance"],
        signing["attestations"]["sbom"],
    ]
    assert len(set(digests)) == 3
    # Each is the digest of a Sigstore bundle the registry holds beside the image.
    tree = cosign("tree", "--allow-http-registry", signed.pushed["image"])
    assert tree.returncode == 0, tree.stderr
    for digest in digests:
        assert digest in tree.stdout
    on_disk = json.loads((signed.root / ".mlops/builds/serve/latest.json").read_text())
    assert on_disk["signing"] == signing
    assert on_disk["image"] == signed.pushed["image"]


def test_signature_verifies_with_the_public_key_only(signed: SignedProject) -> None:
    ref = signed.pushed["image"]
    good = cosign("verify", "--key", str(signed.keys.public), "--insecure-ignore-tlog",
                  "--allow-http-registry", ref)  # fmt: skip
    assert good.returncode == 0, good.stderr
    kinds = {payload["critical"]["type"] for payload in json.loads(good.stdout)}
    assert "https://sigstore.dev/cosign/sign/v1" in kinds
    wrong = cosign("verify", "--key", str(signed.other_keys.public), "--insecure-ignore-tlog",
                   "--allow-http-registry", ref)  # fmt: skip
    assert wrong.returncode != 0


def test_provenance_carries_the_lineage(signed: SignedProject) -> None:
    from mlops_sessions.config.loader import load

    (statement,) = attested(signed, "slsaprovenance1")
    digest = signed.pushed["digest"].removeprefix("sha256:")
    assert statement["subject"][0]["digest"] == {"sha256": digest}
    assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
    definition = statement["predicate"]["buildDefinition"]
    assert definition["buildType"] == "https://mlops-sessions.dev/image-build/v1"
    config = load(signed.project.config)
    assert definition["externalParameters"] == {
        "image": "serve",
        "model": MODEL,
        "config_hash": config.document_hash(),
    }
    internal = definition["internalParameters"]
    assert internal["run_id"] == RUN_ID and internal["model_hash"] == MODEL_HASH
    assert internal["data"] == {"train": DATA_HASH}
    assert internal["evaluation"] == {
        "id": EVAL_ID,
        "verdict": "pass",
        "metrics": {"accuracy": 0.93},
    }
    assert internal["scan"]["passed"] is True and internal["scan"]["summary"]
    commit = git(signed.root, "rev-parse", "HEAD").strip()
    source, base = definition["resolvedDependencies"]
    # The origin's credentials are not part of what is signed.
    assert source["uri"] == f"git+https://git.example.com/team/tiny.git@{commit}"
    assert source["digest"] == {"gitCommit": commit}
    assert source["annotations"] == {"dirty": False}
    assert base["uri"] == BASE_IMAGE and base["annotations"] == {"pinned": False}
    details = statement["predicate"]["runDetails"]
    assert details["builder"]["id"] == "https://mlops-sessions.dev/builder/v1"
    assert details["metadata"]["invocationId"] == RUN_ID


def test_sbom_is_syfts_cyclonedx_of_the_image(signed: SignedProject) -> None:
    (statement,) = attested(signed, "cyclonedx")
    assert statement["predicateType"] == "https://cyclonedx.org/bom"
    bom = statement["predicate"]
    assert bom["bomFormat"] == "CycloneDX"
    names = {component.get("name") for component in bom.get("components", [])}
    # The Debian base's packages, as syft catalogs them from the image's dpkg database.
    assert {"base-files", "python3"} <= names


def test_lineage_shows_the_signature_and_attestation_digests(signed: SignedProject) -> None:
    from mlops_sessions.steps.lineage import render

    code, result, err = signed.mlops("lineage", RUN_ID)
    assert code == 0, err
    assert result is not None
    (chain,) = result["runs"]
    (image,) = chain["images"]
    assert image["signing"] == {signed.pushed["image"]: signed.pushed["signing"]}
    text = render(chain)
    signing = signed.pushed["signing"]
    line = next(line for line in text.splitlines() if line.strip().startswith("signed"))
    for digest in (signing["signature"], *signing["attestations"].values()):
        assert digest in line
    assert signing["key"] in line


def _latest(signed: SignedProject) -> dict[str, Any]:
    return dict(json.loads((signed.root / ".mlops/builds/serve/latest.json").read_text()))


def test_a_failed_signing_leaves_the_record_as_it_was(
    signed: SignedProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    before = _latest(signed)
    # No cosign on PATH: one line that says how to install it, and no new record.
    path = [p for p in os.environ["PATH"].split(os.pathsep) if not Path(p, "cosign").exists()]
    monkeypatch.setenv("PATH", os.pathsep.join(path))
    code, _, err = signed.mlops("push")
    assert code != 0
    message = err.strip().splitlines()[-1]
    assert "cosign is not installed" in message and "go install" in message
    assert _latest(signed) == before


def test_tlog_signing_asks_the_transparency_log(
    signed: SignedProject, monkeypatch: pytest.MonkeyPatch
) -> None:
    """sign.tlog hands cosign no offline signing config, so it asks Sigstore's public
    services: the push fails in one line and the previous record stays. A proxy that does
    not answer makes sure a test key never reaches the public log, network or not (Go
    sends loopback requests, the registry's, around the proxy)."""
    for variable in ("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"):
        monkeypatch.setenv(variable, "http://127.0.0.1:9")
    for variable in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(variable, raising=False)
    before = _latest(signed)
    signed.write_config(sign={"key": "keys/cosign.key", "tlog": True})
    try:
        code, _, err = signed.mlops("push")
    finally:
        signed.write_config(sign={"key": "keys/cosign.key"}, verify={"key": "keys/cosign.pub"})
    assert code != 0
    assert "cannot sign" in err and "cosign says" in err
    assert _latest(signed) == before


def test_unsigned_push_records_no_signing(signed: SignedProject) -> None:
    signed.write_config(sign=None)
    try:
        code, result, err = signed.mlops("push")
    finally:
        signed.write_config(sign={"key": "keys/cosign.key"}, verify={"key": "keys/cosign.pub"})
    assert code == 0, err
    assert result is not None
    (pushed,) = result["images"]
    assert pushed["digest"] == signed.pushed["digest"]
    assert "signing" not in pushed and "signing" not in _latest(signed)
