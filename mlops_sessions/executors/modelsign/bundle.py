"""Sign a model directory into a Sigstore bundle with a local EC key; verify one.

The bundle is the one ``model-signing`` (OpenSSF, v1.x) writes with a private key: a
DSSE envelope over an in-toto v1 statement whose subject is the model's root digest (a
sha256 over the sorted per-file sha256s) and whose predicate
(``https://model_signing/signature/v1.0``) lists every file with its digest. No network,
no transparency log: the trust root is the public key the verifier is handed.

The gate's claim travels INSIDE the signed statement: the predicate gets one more field,
:data:`CLAIM_FIELD`, holding the model name, run, evaluation id, verdict and metrics. The
v1.0 predicate says verifiers ignore fields they do not know, so ``model_signing verify
key`` (the library's own CLI) still verifies these bundles, while this adapter reads the
claim from the very bytes whose signature it just checked. The library's public signing
API builds its statement internally, so this module uses its payload and signer classes
(``model_signing._signing``) directly; ``pyproject.toml`` pins the minor version and
``tests/signing/test_model_bundle.py`` fails if that API moves.

Refusals are :class:`ModelSignatureError`, one line naming the file and the fix.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

from mlops_sessions.errors import StepError

# Where the gate's claim lives inside the model_signing v1.0 predicate.
CLAIM_FIELD = "mlops_sessions"
INSTALL = "pip install 'mlops-sessions[sign]' (model-signing and pyOpenSSL)"


class ModelSignatureError(StepError):
    """A model signature could not be made or does not verify; the message says why."""


@dataclass(frozen=True)
class Signed:
    """What a signing produced."""

    digest: str  # sha256 root digest of the model (the statement's subject)
    key_fingerprint: str  # sha256 of the public key's PEM (the bundle's key hint)
    files: int
    seconds: float


@dataclass(frozen=True)
class Verified:
    """A signature that verified: the model's digest and what the signer claimed."""

    digest: str
    key_fingerprint: str
    files: int
    seconds: float
    claim: Mapping[str, Any] = field(default_factory=dict)


def require_library() -> None:
    """Refuse early, with the install line, where model-signing is missing."""
    try:
        import model_signing  # noqa: F401
    except ImportError as exc:
        raise ModelSignatureError(
            f"model signing needs the model-signing library ({exc.name} is missing): {INSTALL}"
        ) from exc


def key_fingerprint(public_pem: bytes) -> str:
    """sha256 of the normalised PEM public key (what the bundle's key hint holds)."""
    from cryptography.hazmat.primitives import serialization

    try:
        key = serialization.load_pem_public_key(public_pem)
    except (ValueError, TypeError) as exc:
        raise ModelSignatureError(
            f"the model verification key is not a PEM public key ({exc}); pass the "
            "public half of the signing key (evaluate.sign.public_key)"
        ) from None
    normal = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return hashlib.sha256(normal).hexdigest()


@contextlib.contextmanager
def _key_file(pem: bytes) -> Iterator[Path]:
    """The library reads keys from paths: a private 0600 file that is gone afterwards."""
    folder = Path(tempfile.mkdtemp(prefix="mlops-modelsign-"))
    try:
        path = folder / "key.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(pem)
        yield path
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _hashing_config(ignore: Sequence[str]) -> Any:
    from model_signing import hashing

    config: Any = hashing.Config()  # type: ignore[no-untyped-call]
    return config.set_ignored_paths(paths=list(ignore), ignore_git_paths=True)


def sign_model(
    model_dir: Path,
    signature: Path,
    private_pem: bytes,
    claim: Mapping[str, Any],
    *,
    password: bytes | None = None,
    ignore: Sequence[str] = (),
) -> Signed:
    """Sign model_dir into signature (written atomically), the claim inside the statement.

    ignore: file names inside model_dir that are not part of the model (e.g. a download
    marker); they are recorded in the statement, so the verifier skips them too.
    """
    require_library()
    from model_signing._signing import sign_ec_key, signing

    started = time.monotonic()
    if not (model_dir / "saved_model.pb").is_file():
        raise ModelSignatureError(
            f"{model_dir} holds no SavedModel (saved_model.pb); nothing signed"
        )
    manifest = _hashing_config(ignore).hash(model_dir)
    payload = signing.Payload(manifest)
    # Struct.update takes JSON-like values only; a round trip through json says so early.
    payload.statement.pb.predicate.update({CLAIM_FIELD: json.loads(json.dumps(dict(claim)))})
    with _key_file(private_pem) as key_path:
        try:
            # cryptography wants the password as bytes (the library's hint says str).
            signer = sign_ec_key.Signer(key_path, cast(Any, password))
        except (ValueError, TypeError) as exc:
            raise ModelSignatureError(
                f"the model signing key is not a usable EC private key in PEM ({exc}); "
                "make one with `openssl ecparam -name prime256v1 -genkey -noout -out "
                "model.key` (or set its password in MLOPS_MODEL_KEY_PASSWORD)"
            ) from None
        bundle: Any = signer.sign(payload)
    signature.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{signature.name}.", suffix=".tmp", dir=signature.parent)
    os.close(fd)
    try:
        bundle.write(Path(tmp))
        os.chmod(tmp, 0o644)
        os.replace(tmp, signature)
    finally:
        Path(tmp).unlink(missing_ok=True)
    statement = _statement(signature.read_bytes(), signature)
    return Signed(
        digest=_subject_digest(statement, signature),
        key_fingerprint=str(bundle.bundle.verification_material.public_key.hint),
        files=len(list(manifest.resource_descriptors())),
        seconds=time.monotonic() - started,
    )


def verify_model(model_dir: Path, signature: Path, public_pem: bytes) -> Verified:
    """Verify model_dir against the bundle at signature with the public key; the facts.

    Raises :class:`ModelSignatureError` (one line) for a damaged bundle, a signature by
    another key, or a model whose files differ from what was signed.
    """
    require_library()
    from model_signing import verifying

    started = time.monotonic()
    try:
        data = signature.read_bytes()
    except OSError as exc:
        raise ModelSignatureError(
            f"cannot read the model signature {signature}: {exc.strerror or exc}"
        ) from None
    fingerprint = key_fingerprint(public_pem)
    # The library reads the bundle by path; it gets a private copy of the bytes read here,
    # so the claim returned below comes from exactly the bundle that was verified.
    with tempfile.TemporaryDirectory(prefix="mlops-modelsign-") as tmp:
        copy = Path(tmp) / "model.sig"
        copy.write_bytes(data)
        pub = Path(tmp) / "key.pub"
        pub.write_bytes(public_pem)
        _statement(data, signature)  # a damaged bundle is named before the library reads it
        hint = _key_hint(data)
        if hint and hint != fingerprint:
            raise ModelSignatureError(
                f"{signature} was signed by another key (sha256 {hint[:16]}…), not by the "
                f"verification key (sha256 {fingerprint[:16]}…); check evaluate.sign.public_key "
                "or sign the model again with its private half"
            )
        try:
            verifier: Any = verifying.Config()  # type: ignore[no-untyped-call]
            verifier.use_elliptic_key_verifier(public_key=pub).verify(model_dir, copy)
        except ValueError as exc:
            raise ModelSignatureError(_mismatch(model_dir, signature, str(exc))) from None
        except Exception as exc:
            # cryptography's InvalidSignature (and pydantic's errors on a bundle that
            # parses as JSON but not as a bundle) carry no message of their own.
            name = type(exc).__name__
            if name == "InvalidSignature":
                raise ModelSignatureError(
                    f"{signature} does not verify with the key sha256 {fingerprint[:16]}… "
                    "(its statement was altered or another key signed it); do not load "
                    "the model, sign it again at the gate"
                ) from None
            raise ModelSignatureError(
                f"{signature} is not a model signature bundle ({name}: "
                f"{str(exc).splitlines()[0] if str(exc) else 'unreadable'}); re-sign the model"
            ) from None
        # The claim is read from the payload the library parsed and verified, not from a
        # second parse of the file: two base64 or JSON readers must not disagree on it.
        from model_signing._signing import sign_sigstore_pb

        parsed: Any = sign_sigstore_pb.Signature.read(copy)
        verified = json.loads(parsed.bundle.dsse_envelope.payload)
    predicate = verified.get("predicate") or {}
    claim = predicate.get(CLAIM_FIELD)
    return Verified(
        digest=_subject_digest(verified, signature),
        key_fingerprint=fingerprint,
        files=len(predicate.get("resources") or []),
        seconds=time.monotonic() - started,
        claim=claim if isinstance(claim, dict) else {},
    )


def signer_fingerprint(signature: Path) -> str:
    """The key fingerprint a bundle names, UNVERIFIED ('' when none): enough to tell that
    a signature was made by another key than the current one, never to trust it."""
    try:
        return _key_hint(signature.read_bytes())
    except (OSError, ModelSignatureError):
        return ""


def read_claim(signature: Path) -> Mapping[str, Any]:
    """The claim a bundle carries, UNVERIFIED (for listings such as lineage, never trust)."""
    statement = _statement(signature.read_bytes(), signature)
    claim = (statement.get("predicate") or {}).get(CLAIM_FIELD)
    return claim if isinstance(claim, dict) else {}


def _mismatch(model_dir: Path, signature: Path, message: str) -> str:
    """One line for the library's ValueErrors (key mismatch, files that differ)."""
    if message.startswith("Signature mismatch"):
        detail = message.partition(":")[2].strip().strip("[]")
        first = detail.split("', \"")[0].split("\", '")[0].strip("'\"")
        return (
            f"{model_dir} does not match its signature {signature}: {first[:240]}; the "
            "model was changed after the gate signed it: do not load it, fetch or "
            "re-export the signed model"
        )
    if message.startswith("Key mismatch"):
        return (
            f"{signature} was signed by another key than the verification key; check "
            "evaluate.sign.public_key or sign the model again"
        )
    return f"{signature} does not verify for {model_dir}: {message.splitlines()[0][:240]}"


def _bundle(data: bytes, signature: Path) -> dict[str, Any]:
    try:
        bundle = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        bundle = None
    if not isinstance(bundle, dict):
        raise ModelSignatureError(
            f"{signature} is not a model signature bundle (not a JSON object); re-sign the model"
        )
    return bundle


def _key_hint(data: bytes) -> str:
    material = _bundle(data, Path("-")).get("verificationMaterial") or {}
    hint = (material.get("publicKey") or {}).get("hint") if isinstance(material, dict) else None
    return str(hint) if isinstance(hint, str) else ""


def _statement(data: bytes, signature: Path) -> dict[str, Any]:
    """The in-toto statement inside a bundle's DSSE envelope (not verified here)."""
    envelope = _bundle(data, signature).get("dsseEnvelope")
    try:
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))  # type: ignore[index]
    except (TypeError, KeyError, ValueError):
        statement = None
    if not isinstance(statement, dict):
        raise ModelSignatureError(
            f"{signature} holds no in-toto statement (no DSSE payload); re-sign the model"
        )
    return statement


def _subject_digest(statement: Mapping[str, Any], signature: Path) -> str:
    subjects = statement.get("subject") or []
    try:
        return str(subjects[0]["digest"]["sha256"])
    except (IndexError, KeyError, TypeError):
        raise ModelSignatureError(
            f"{signature}: its statement names no model digest; re-sign the model"
        ) from None
