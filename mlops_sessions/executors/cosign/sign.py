"""Sign an image digest and attach signed attestations to it with cosign (key pair).

cosign v3 writes Sigstore bundles and attaches them to the digest as OCI referrers (or, on
a registry without the referrers API, under the ``sha256-<hex>`` fallback tag). Each call
also writes the bundle to a file: its sha256 is the digest of the blob the registry holds
(``cosign tree`` lists it), which is what the push record keeps.

Without a transparency log the signing is offline: cosign is handed a signing config with
no services and a trusted root with no authorities (both made by cosign itself), so it
neither uploads to Rekor nor asks Sigstore's TUF repository for anything. The deprecated
``--tlog-upload=false`` is not used. With ``tlog`` cosign uses its defaults (the public
Sigstore instance).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

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
        self._offline: list[str] | None = None
        self._count = 0

    def sign(self, ref: str) -> str:
        """Sign ref (repository@sha256:...); the digest of the signature bundle it attached."""
        return self._run("sign", [], ref, f"sign {ref}")

    def attest(self, ref: str, predicate: Path | Mapping[str, Any], predicate_type: str) -> str:
        """Attach predicate (a file, or a document written to one) as a signed in-toto
        attestation of ref; the digest of the attestation bundle."""
        if not isinstance(predicate, Path):
            path = self._path("predicate.json")
            path.write_text(json.dumps(predicate, sort_keys=True))
            predicate = path
        args = ["--type", predicate_type, "--predicate", str(predicate)]
        return self._run("attest", args, ref, f"attest the {predicate_type} of {ref}")

    def _run(self, command: str, extra: list[str], ref: str, doing: str) -> str:
        bundle = self._path(f"{command}.bundle.json")
        args = [command, "--key", self.key, "--yes", "--bundle", str(bundle), *extra]
        args += self._offline_flags() + tools.cosign_registry_flags(ref) + [ref]
        tools.check("cosign", args, doing)
        return "sha256:" + hashlib.sha256(bundle.read_bytes()).hexdigest()

    def _offline_flags(self) -> list[str]:
        if self.tlog:
            return []
        if self._offline is None:
            config, root = self._path("signing-config.json"), self._path("trusted-root.json")
            for what, path in (("signing-config", config), ("trusted-root", root)):
                tools.check("cosign", [what, "create", "--out", str(path)], f"create a {what}")
            self._offline = ["--signing-config", str(config), "--trusted-root", str(root)]
        return self._offline

    def _path(self, name: str) -> Path:
        self._count += 1
        return self.scratch / f"{self._count:02d}-{name}"


@contextmanager
def signer(key: str, *, tlog: bool, scratch: Path | None = None) -> Iterator[Signer]:
    """A Signer whose files (bundles, predicates, offline configs) are removed afterwards."""
    if scratch is not None:
        scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="mlops-sign-", dir=scratch) as work:
        yield Signer(key, tlog=tlog, scratch=Path(work))
