"""Key references as cosign takes them, and the fingerprint a record names a key by.

A reference in mlops.yaml is a file path relative to the project, ``env://VAR`` (the PEM
text in an environment variable) or a KMS URI (``awskms://``, ``gcpkms://``,
``azurekms://``, ``hashivault://``, ``k8s://``); cosign reads all of them itself, so only a
relative path needs resolving here.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import Path

from mlops_sessions.errors import StepError
from mlops_sessions.executors.cosign import tools

KMS_SCHEMES = ("awskms://", "gcpkms://", "azurekms://", "hashivault://", "k8s://")


def is_kms(ref: str) -> bool:
    return ref.startswith(KMS_SCHEMES)


def key_argument(ref: str, root: Path, *, setting: str) -> str:
    """What to pass as cosign's --key: a file resolved against root (and checked, so a
    missing file is named with the setting that points at it), else ref itself."""
    if "://" in ref:
        return ref
    path = (root / ref).resolve()
    if not path.is_file():
        raise StepError(
            f"{setting} names {ref}, which is not a file ({path}); generate a key pair with "
            "`cosign generate-key-pair`, or give env://VAR or a KMS URI"
        )
    return str(path)


def public_key(key: str) -> str:
    """The PEM public key of a cosign private key reference (cosign public-key)."""
    return tools.check("cosign", ["public-key", "--key", key], "read the signing key").stdout


def fingerprint(pem: str) -> str:
    """'sha256:<hex>' of the DER public key in pem: the value cosign's key hint encodes."""
    body = "".join(
        line.strip() for line in pem.splitlines() if line.strip() and not line.startswith("-----")
    )
    try:
        der = base64.b64decode(body, validate=True)
    except binascii.Error:
        raise StepError("cosign printed a public key that is not PEM") from None
    return "sha256:" + hashlib.sha256(der).hexdigest()
