"""Sign an image digest and attach signed attestations to it with cosign (key pair), in
cosign's tag layout: the layout Sigstore policy-controller reads.

cosign v3 writes Sigstore bundles as OCI referrers by default, but policy-controller (0.13,
the admission policy ``mlops render`` writes) verifies key-signed images only in the tag
layout, so every command here passes ``--new-bundle-format=false`` (a flag cosign marks
deprecated; docs/signing.md says what to change when policy-controller reads key-signed
bundles). In that layout the registry holds, beside the image ``<repo>@sha256:<hex>``:

- the tag ``<repo>:sha256-<hex>.sig``, an image manifest with one layer per signature: the
  simple-signing payload that was signed (naming the digest), the signature in the layer's
  ``dev.cosignproject.cosign/signature`` annotation;
- the tag ``<repo>:sha256-<hex>.att``, an image manifest with one layer per attestation:
  its DSSE envelope, the predicate type in the layer's ``predicateType`` annotation.

What a call returns, and the push record keeps, is the digest of the layer (a blob the
registry serves) that holds what was just signed: the sha256 of the payload for a signature
(cosign writes it with ``--output-payload``; re-signing the same digest with the same key
keeps the existing layer, whose digest is the same), the sha256 of the DSSE envelope for an
attestation (the envelope is the ``base64Signature`` of the bundle cosign writes with
``--bundle``; attestations are never merged, each call adds a layer). The manifests'
own digests are not kept: each new attestation rewrites the ``.att`` manifest.

Without a transparency log the signing is offline: ``--use-signing-config=false
--tlog-upload=false``, so cosign neither uploads to Rekor nor asks Sigstore's TUF
repository for anything (with a key, cosign needs no trusted root to sign). cosign v3
refuses a signing config (``--signing-config``, the offline route of its bundle format) in
the tag layout unless it also writes a bundle, which its ``sign`` command cannot do there, so
the deprecated ``--tlog-upload=false`` is the one way to sign offline in this layout. With
``tlog`` cosign uploads to its default transparency log (the public Rekor), still without a
signing config, for the same reason.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from mlops_sessions.errors import StepError
from mlops_sessions.executors.cosign import tools

# cosign's names for the predicate types it attaches (``cosign attest --type``).
PROVENANCE = "slsaprovenance1"
SBOM = "cyclonedx"


class Signer:
    """Signs with one key, with or without the transparency log, in a scratch directory."""

    def __init__(self, key: str, *, tlog: bool, scratch: Path) -> None:
        self.key = key
        self.tlog = tlog
        self.scratch = scratch
        self._count = 0

    def sign(self, ref: str) -> str:
        """Sign ref (repository@sha256:...); the digest of the .sig layer holding the signed
        payload."""
        payload = self._path("payload.json")
        self._run("sign", ["--output-payload", str(payload)], ref, f"sign {ref}")
        return _sha256(payload.read_bytes())

    def attest(self, ref: str, predicate: Path | Mapping[str, Any], predicate_type: str) -> str:
        """Attach predicate (a file, or a document written to one) as a signed in-toto
        attestation of ref; the digest of the .att layer holding its DSSE envelope."""
        if not isinstance(predicate, Path):
            path = self._path("predicate.json")
            path.write_text(json.dumps(predicate, sort_keys=True))
            predicate = path
        bundle = self._path("attest.bundle.json")
        args = ["--type", predicate_type, "--predicate", str(predicate), "--bundle", str(bundle)]
        self._run("attest", args, ref, f"attest the {predicate_type} of {ref}")
        try:
            envelope = base64.b64decode(json.loads(bundle.read_text())["base64Signature"])
        except (json.JSONDecodeError, KeyError, TypeError, binascii.Error):
            raise StepError(f"cosign attest wrote no DSSE envelope for {ref} in {bundle}") from None
        return _sha256(envelope)

    def _run(self, command: str, extra: list[str], ref: str, doing: str) -> None:
        args = [command, tools.TAG_LAYOUT, "--key", self.key, "--yes", *extra]
        args += ["--use-signing-config=false"] + ([] if self.tlog else ["--tlog-upload=false"])
        args += [*tools.cosign_registry_flags(ref), ref]
        tools.check("cosign", args, doing)

    def _path(self, name: str) -> Path:
        self._count += 1
        return self.scratch / f"{self._count:02d}-{name}"


def _sha256(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


@contextmanager
def signer(key: str, *, tlog: bool, scratch: Path | None = None) -> Iterator[Signer]:
    """A Signer whose files (payloads, bundles, predicates) are removed afterwards."""
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlops-sign-", dir=scratch) as work:
        yield Signer(key, tlog=tlog, scratch=Path(work))
