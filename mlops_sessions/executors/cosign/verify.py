"""Check an image digest with cosign: its signature, its attestations of one predicate
type, and what a tag of its repository resolves to now.

Each check returns what it found (verified, missing or rejected, with cosign's reason);
what a deploy requires of those facts is decided by :mod:`drivers.verification`.

Everything is read in cosign's tag layout (``--new-bundle-format=false``): the
``sha256-<hex>.sig`` and ``.att`` tags, what ``mlops push`` writes and the one layout
Sigstore policy-controller reads for key-signed images, so a deploy accepts what the
cluster's admission policy accepts. Sigstore bundles attached as OCI referrers are not
read: an image signed only that way is refused here as the cluster would refuse it. In
this layout the ``.sig`` tag holds signatures only (attestations are under ``.att``) and
cosign checks that each signed payload names the digest, so a verified ``cosign verify``
is a signature of this very image. ``cosign verify-attestation`` prints the DSSE
envelopes it verified, one JSON per line; the in-toto statements are their base64
payloads.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from mlops_sessions.errors import StepError
from mlops_sessions.executors.cosign import tools

# cosign's exit status for "no signatures found" (cmd/cosign/errors).
IMAGE_WITHOUT_SIGNATURE = 10

Status = Literal["verified", "missing", "rejected"]


@dataclass(frozen=True)
class Check:
    """The outcome of one verification: verified, missing (nothing of the kind is attached
    to the digest) or rejected (something is attached, and it does not verify)."""

    status: Status
    detail: str = ""
    statements: tuple[dict[str, Any], ...] = field(default=(), repr=False)


def _key_flags(key: str, tlog: bool) -> list[str]:
    return [tools.TAG_LAYOUT, "--key", key] + ([] if tlog else ["--insecure-ignore-tlog"])


def verify_signature(ref: str, key: str, *, tlog: bool) -> Check:
    """Whether ref (repository@sha256:...) carries a signature that verifies with key."""
    digest = _digest(ref)
    done = tools.run(
        "cosign", ["verify", *_key_flags(key, tlog), *tools.cosign_registry_flags(ref), ref]
    )
    if done.code == IMAGE_WITHOUT_SIGNATURE:
        where = tools.tag(digest, "sig")
        return Check("missing", f"no signature under {where}, the layout policy-controller reads")
    if done.code != 0:
        return _failed(done)
    return Check("verified")


def verify_attestations(ref: str, key: str, predicate_type: str, *, tlog: bool) -> Check:
    """The in-toto statements of predicate_type attached to ref that verify with key."""
    args = ["verify-attestation", *_key_flags(key, tlog), "--type", predicate_type]
    done = tools.run("cosign", [*args, *tools.cosign_registry_flags(ref), ref])
    if done.code != 0:
        return _failed(done)
    statements = []
    for line in done.stdout.splitlines():
        if not line.strip():
            continue
        try:
            envelope = json.loads(line)
            statements.append(json.loads(base64.b64decode(envelope["payload"])))
        except (json.JSONDecodeError, KeyError, TypeError, binascii.Error):
            raise StepError(f"cosign verify-attestation printed an envelope that is not "
                            f"JSON with an in-toto payload: {line[:200]!r}") from None  # fmt: skip
    if not statements:
        return Check("missing", "cosign verified no attestation")
    return Check("verified", statements=tuple(statements))


def resolve_tag(ref: str) -> str | None:
    """The digest the registry's tag ref (repository:tag) names now; None when the tag does
    not exist. cosign resolves it the way it resolves every reference it signs, with the
    same credentials; ``triangulate`` is its one command that prints the digest."""
    args = ["triangulate", "--type", "digest", *tools.cosign_registry_flags(ref), ref]
    done = tools.run("cosign", args)
    if done.code != 0:
        if "MANIFEST_UNKNOWN" in done.stderr or "NAME_UNKNOWN" in done.stderr:
            return None
        raise StepError(f"cannot resolve {ref} in its registry: cosign says: {done.error}")
    resolved = done.stdout.strip().rsplit("@", 1)[-1]
    if not resolved.startswith("sha256:"):
        raise StepError(f"cosign triangulate printed no digest for {ref}: {done.stdout[:200]!r}")
    return resolved


def _failed(done: tools.Finished) -> Check:
    line = done.error.strip()
    if "failed to verify" in line or "no matching signatures" in line:
        return Check("rejected", line)
    # Nothing of the kind is attached (cosign then names no failed verification).
    if (
        line == "no signatures found"
        or line.startswith("none of the attestations matched")
        or line.rstrip(": ") == "no matching attestations"
    ):
        return Check("missing", line)
    raise StepError(f"cosign could not check the image: {line}")


def _digest(ref: str) -> str:
    if "@" not in ref:
        raise StepError(f"{ref} is not pinned by digest (repository@sha256:...)")
    return ref.rsplit("@", 1)[1]
