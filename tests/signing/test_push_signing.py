"""`mlops push` with images.<name>.sign, against the real registry, cosign and syft: the
digest is signed with the project's key pair (no transparency log), the CycloneDX SBOM and
the SLSA provenance are attached as signed attestations in cosign's tag layout (the
``sha256-<hex>.sig`` / ``.att`` tags policy-controller reads), and the push record names
the registry digests of all three (the layers of those tags, read back over the registry's
HTTP API); `mlops lineage` shows them; the provenance the registry holds passes the Rego of
the admission policy `mlops render` writes.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import io
import json
import os
import subprocess
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from mlops_sessions.frontends.cli import main
from mlops_sessions.planning import admission
from tests.images.conftest import BASE_IMAGE, git
from tests.signing.conftest import DATA_HASH, EVAL_ID, MODEL, MODEL_HASH, RUN_ID, SignedProject
from tests.signing.test_policy_render import evaluate

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


# --- the registry, read over its HTTP API (the distribution API policy-controller reads) ----

MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    )
)
# Loopback needs no proxy; a proxy set in the environment must not intercept it.
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def registry_get(ref: str, path: str, accept: str = "*/*") -> bytes:
    """GET /v2/<repository>/<path> from the registry of ref (repository@digest)."""
    registry, repository = ref.rsplit("@", 1)[0].split("/", 1)
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/{path}", headers={"Accept": accept}
    )
    with contextlib.closing(_DIRECT.open(request, timeout=30)) as reply:
        return bytes(reply.read())


def tag_manifest(signed: SignedProject, suffix: str) -> dict[str, Any]:
    """The manifest of the pushed digest's sha256-<hex>.<suffix> tag."""
    tag = signed.pushed["digest"].replace(":", "-", 1) + f".{suffix}"
    manifest: dict[str, Any] = json.loads(
        registry_get(signed.pushed["image"], f"manifests/{tag}", MANIFEST_TYPES)
    )
    return manifest


def blob(signed: SignedProject, digest: str) -> bytes:
    data = registry_get(signed.pushed["image"], f"blobs/{digest}")
    assert "sha256:" + hashlib.sha256(data).hexdigest() == digest
    return data


def att_layers(signed: SignedProject) -> dict[str, dict[str, Any]]:
    """The .att tag's layers by digest: each one attestation's DSSE envelope."""
    return {layer["digest"]: layer for layer in tag_manifest(signed, "att")["layers"]}


def dsse_statement(envelope: bytes) -> dict[str, Any]:
    statement: dict[str, Any] = json.loads(base64.b64decode(json.loads(envelope)["payload"]))
    return statement


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
    # The signature: the layer of the .sig tag holding the payload signed, which names the
    # pushed digest; the signature itself is that layer's annotation.
    (sig_layer,) = tag_manifest(signed, "sig")["layers"]
    assert sig_layer["digest"] == signing["signature"]
    assert sig_layer["mediaType"] == "application/vnd.dev.cosign.simplesigning.v1+json"
    assert sig_layer["annotations"]["dev.cosignproject.cosign/signature"]
    payload = json.loads(blob(signed, signing["signature"]))
    assert payload["critical"]["image"]["docker-manifest-digest"] == signed.pushed["digest"]
    assert payload["critical"]["type"] == "cosign container image signature"
    # Each attestation: a layer of the .att tag, its DSSE envelope, of the recorded type.
    layers = att_layers(signed)
    for kind, predicate_type in (
        ("provenance", admission.PROVENANCE_TYPE),
        ("sbom", admission.SBOM_TYPE),
    ):
        layer = layers[signing["attestations"][kind]]
        assert layer["mediaType"] == "application/vnd.dsse.envelope.v1+json"
        assert layer["annotations"]["predicateType"] == predicate_type
        statement = dsse_statement(blob(signed, layer["digest"]))
        assert statement["predicateType"] == predicate_type
        assert statement["subject"][0]["digest"] == {
            "sha256": signed.pushed["digest"].removeprefix("sha256:")
        }
    # `cosign tree` lists the same digests under the two tags.
    tree = cosign("tree", "--allow-http-registry", signed.pushed["image"])
    assert tree.returncode == 0, tree.stderr
    for digest in digests:
        assert digest in tree.stdout
    on_disk = json.loads((signed.root / ".mlops/builds/serve/latest.json").read_text())
    assert on_disk["signing"] == signing
    assert on_disk["image"] == signed.pushed["image"]


def test_the_registry_holds_the_layout_the_admission_controller_reads(
    signed: SignedProject, tmp_path: Path
) -> None:
    """policy-controller verifies a key-signed image only through the sha256-<hex>.sig and
    .att tags: both exist for the pushed digest, the .att layers are the provenance and the
    CycloneDX SBOM, and the provenance they hold passes the Rego of the rendered policy."""
    digest = signed.pushed["digest"]
    tags = json.loads(registry_get(signed.pushed["image"], "tags/list"))["tags"]
    assert {f"{digest.replace(':', '-', 1)}.sig", f"{digest.replace(':', '-', 1)}.att"} <= set(tags)
    layers = att_layers(signed)
    kinds = sorted(layer["annotations"]["predicateType"] for layer in layers.values())
    assert kinds == sorted([admission.PROVENANCE_TYPE, admission.SBOM_TYPE])
    code, _, err = signed.mlops("render", "--out", str(tmp_path / "rendered"))
    assert code == 0, err
    (policy,) = yaml.safe_load_all((tmp_path / "rendered/policy/tiny-imagepolicy.yaml").read_text())
    (authority,) = policy["spec"]["authorities"]
    assert "signatureFormat" not in authority  # the tag layout, policy-controller's default
    rego = {a["predicateType"]: a["policy"]["data"] for a in authority["attestations"]}
    (provenance_layer,) = [
        layer
        for layer in layers.values()
        if layer["annotations"]["predicateType"] == admission.PROVENANCE_TYPE
    ]
    statement = dsse_statement(blob(signed, provenance_layer["digest"]))
    assert evaluate(rego[admission.PROVENANCE_TYPE], statement) == (True, "")
    # The same policy refuses the statement once it names another model.
    statement["predicate"]["buildDefinition"]["externalParameters"]["model"] = "fraud"
    assert evaluate(rego[admission.PROVENANCE_TYPE], statement)[0] is False


def test_signature_verifies_with_the_public_key_only(signed: SignedProject) -> None:
    ref = signed.pushed["image"]
    good = cosign("verify", "--key", str(signed.keys.public), "--insecure-ignore-tlog",
                  "--allow-http-registry", ref)  # fmt: skip
    assert good.returncode == 0, good.stderr
    (payload,) = json.loads(good.stdout)
    assert payload["critical"]["type"] == "cosign container image signature"
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
    hex_tag = signed.pushed["digest"].replace(":", "-", 1)
    assert f"layer of {hex_tag}.sig" in line and f"layers of {hex_tag}.att" in line


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


def cli_text(signed: SignedProject, *argv: str) -> tuple[int, str]:
    """`mlops <argv>` with its human text output (no --json): (exit code, stdout)."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "-c", str(signed.project.config)])
    assert code == 0, err.getvalue()[-2000:]
    return code, out.getvalue()


def test_push_says_what_signing_will_do_and_did(signed: SignedProject) -> None:
    """Last in the module: pushing again attests again (each attestation adds a layer)."""
    _, planned = cli_text(signed, "push", "--dry-run")
    assert "would sign the pushed digest with keys/cosign.key (offline, no transparency log)" in (
        planned
    )
    assert "the SLSA provenance and syft's CycloneDX SBOM" in planned
    code, result, err = signed.mlops("push", "--dry-run")
    assert code == 0, err
    assert result is not None
    assert result["images"]["serve"]["signing"] == {
        "key": "keys/cosign.key",
        "tlog": False,
        "attestations": ["provenance", "sbom"],
        "layout": "tag",
    }
    _, done = cli_text(signed, "push")
    signing = _latest(signed)["signing"]
    hex_tag = signed.pushed["digest"].replace(":", "-", 1)
    (line,) = [line for line in done.splitlines() if line.strip().startswith("signed:")]
    # Signing the same digest with the same key again keeps the one signature layer.
    assert signing["signature"] == signed.pushed["signing"]["signature"]
    assert f"signature {signing['signature']} (layer of {hex_tag}.sig)" in line
    provenance, sbom = signing["attestations"]["provenance"], signing["attestations"]["sbom"]
    assert f"provenance {provenance}, sbom {sbom} (layers of {hex_tag}.att)" in line
    assert provenance in att_layers(signed) and sbom in att_layers(signed)
