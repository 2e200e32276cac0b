"""The cosign/syft executors' error paths, with the real binaries (no registry needed): an
absent tool is one line saying how to install it; a failing one is one line with what it
said and, for the key's password, the fix; key references and fingerprints; which
registries are spoken to over plain HTTP.
"""

from __future__ import annotations

import hashlib
import os
import socket
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from mlops_sessions.errors import StepError
from mlops_sessions.executors.cosign import keys, sbom, sign, tools, verify
from tests.signing.conftest import KeyPair, make_key_pair

NOWHERE = "sha256:" + "0" * 64


@pytest.fixture(scope="module")
def key_pair(signing_tools: None, tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return make_key_pair(tmp_path_factory.mktemp("keys"))


@pytest.fixture
def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


def one_line(error: StepError) -> str:
    text = str(error)
    assert "\n" not in text, text
    return text


@pytest.mark.parametrize("tool", ["cosign", "syft"])
def test_an_absent_tool_says_how_to_install_it(
    tool: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # an empty directory: neither tool is there
    with pytest.raises(StepError) as raised:
        if tool == "cosign":
            with sign.signer("cosign.key", tlog=False, scratch=tmp_path) as signer:
                signer.sign(f"127.0.0.1:5000/ml/x@{NOWHERE}")
        else:
            sbom.sbom(f"127.0.0.1:5000/ml/x@{NOWHERE}", tmp_path / "sbom.json")
    message = one_line(raised.value)
    assert message.startswith(f"{tool} is not installed (not on PATH); install it: go install")


def test_an_unreachable_registry_is_one_line_for_each_action(
    key_pair: KeyPair, closed_port: int, tmp_path: Path
) -> None:
    ref = f"127.0.0.1:{closed_port}/ml/x@{NOWHERE}"
    with pytest.raises(StepError) as signing, sign.signer(str(key_pair.private), tlog=False) as s:
        s.sign(ref)
    assert one_line(signing.value).startswith(f"cannot sign {ref}: cosign says: ")
    assert "connection refused" in str(signing.value)
    with pytest.raises(StepError) as checking:
        verify.verify_signature(ref, str(key_pair.public), tlog=False)
    assert one_line(checking.value).startswith("cosign could not check the image: ")
    with pytest.raises(StepError) as resolving:
        verify.resolve_tag(f"127.0.0.1:{closed_port}/ml/x:v1")
    assert "connection refused" in one_line(resolving.value)


def test_a_key_password_failure_names_the_fix(
    signing_tools: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COSIGN_PASSWORD", "right")
    protected = make_key_pair_with_password(tmp_path, "right")
    monkeypatch.delenv("COSIGN_PASSWORD")
    with pytest.raises(StepError) as unset:
        keys.public_key(str(protected))
    assert "set COSIGN_PASSWORD" in one_line(unset.value)
    monkeypatch.setenv("COSIGN_PASSWORD", "wrong")
    with pytest.raises(StepError) as wrong:
        keys.public_key(str(protected))
    assert "COSIGN_PASSWORD is not the key's password" in one_line(wrong.value)


def make_key_pair_with_password(directory: Path, password: str) -> Path:
    subprocess.run(
        ["cosign", "generate-key-pair"],
        cwd=directory,
        env={**os.environ, "COSIGN_PASSWORD": password},
        capture_output=True,
        check=True,
        timeout=60,
    )
    return directory / "cosign.key"


def test_the_fingerprint_is_the_sha256_of_the_der_public_key(key_pair: KeyPair) -> None:
    public = serialization.load_pem_public_key(key_pair.public.read_bytes())
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    expected = "sha256:" + hashlib.sha256(der).hexdigest()
    assert keys.fingerprint(key_pair.public.read_text()) == expected
    # The private key's public half, as cosign derives it, has the same fingerprint.
    assert keys.fingerprint(keys.public_key(str(key_pair.private))) == expected


def test_key_references(tmp_path: Path) -> None:
    (tmp_path / "keys").mkdir()
    (tmp_path / "keys" / "cosign.pub").write_text("pem")
    resolved = keys.key_argument("keys/cosign.pub", tmp_path, setting="deploy.verify.key")
    assert resolved == str(tmp_path / "keys" / "cosign.pub")
    for passed_through in ("env://COSIGN_KEY", "awskms:///alias/ml", "k8s://ml/cosign"):
        assert keys.key_argument(passed_through, tmp_path, setting="s") == passed_through
    assert keys.is_kms("gcpkms://projects/p/locations/l/keyRings/r/cryptoKeys/k")
    assert not keys.is_kms("env://COSIGN_KEY")
    with pytest.raises(StepError) as missing:
        keys.key_argument("keys/absent.key", tmp_path, setting="images.serve.sign.key")
    message = one_line(missing.value)
    assert message.startswith("images.serve.sign.key names keys/absent.key, which is not a file")
    assert "cosign generate-key-pair" in message


@pytest.mark.parametrize(
    ("ref", "plain"),
    [
        (f"127.0.0.1:5000/ml/x@{NOWHERE}", True),
        (f"localhost:5000/ml/x@{NOWHERE}", True),
        (f"[::1]:5000/ml/x@{NOWHERE}", True),
        (f"127.8.9.10/ml/x@{NOWHERE}", True),
        (f"registry.example.com/ml/x@{NOWHERE}", False),
        (f"10.0.0.5:5000/ml/x@{NOWHERE}", False),
        (f"ghcr.io/team/x@{NOWHERE}", False),
    ],
)
def test_only_loopback_registries_are_spoken_to_over_http(ref: str, plain: bool) -> None:
    assert tools.plain_http(ref) is plain
    assert (tools.cosign_registry_flags(ref) == ["--allow-http-registry"]) is plain
    assert ("SYFT_REGISTRY_INSECURE_USE_HTTP" in tools.syft_registry_env(ref)) is plain
