"""``deploy.verify``: what must hold for each image digest a deploy is about to apply,
checked against the registry before anything is written to the cluster.

Per image the model runs (stable, and a canary image of its own), in this order:

1. every tag the push recorded for this digest (``tags`` of ``builds/<image>/latest.json``)
   still resolves to it in the registry; a tag moved to another digest is refused, a tag
   that no longer exists is not (the digest, not the tag, is what is deployed and
   verified). An ``--image`` override has no recorded tags, so nothing is checked here;
2. ``signature``: a cosign signature of the digest that verifies with ``deploy.verify.key``
   (with ``tlog``, also its transparency-log entry);
3. ``sbom``: a CycloneDX attestation signed by that key;
4. ``provenance``: a SLSA provenance attestation signed by that key, for this digest and
   this model; ``verdict``: in it, the gate's verdict is ``pass``. Every verified provenance
   statement of the digest must pass: a signed ``fail`` is never outweighed.

The first image with a problem ends the deploy with ONE line naming its digest and every
problem found; ``--force`` does not skip it (drop ``deploy.verify`` to deploy unverified).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.errors import StepError
from mlops_sessions.executors.cosign import keys, sign, verify
from mlops_sessions.planning import k8s_inputs, provenance
from mlops_sessions.planning.manifests import RenderInputs
from mlops_sessions.records import builds


def verify_release(
    config: Config,
    model: ModelConfig,
    inputs: RenderInputs,
    overrides: Mapping[str, str],
) -> list[dict[str, Any]]:
    """Verify every image digest of inputs as model.deploy.verify requires; raises StepError
    (one line) on the first image that fails; returns what was verified, per image."""
    spec = model.deploy.verify
    if spec is None:
        return []
    key = keys.key_argument(spec.key, config.root, setting="deploy.verify.key")
    stable_name, canary_name = k8s_inputs.image_names(config, model)
    targets = [(stable_name, inputs.stable_image)]
    if canary_name is not None and inputs.canary_image is not None:
        targets.append((canary_name, inputs.canary_image))
    verified = []
    for name, ref in targets:
        tags = [] if name in overrides else recorded_tags(config, name, ref)
        wrong = image_problems(
            ref, tags, model.name, key, tlog=spec.tlog, require=spec.require, key_name=spec.key
        )
        if wrong:
            raise StepError(
                f"refusing to deploy {model.name!r}: image {ref} does not verify "
                f"(deploy.verify): {'; '.join(wrong)}"
            )
        verified.append({"image": name, "ref": ref, "verified": list(spec.require)})
    return verified


def recorded_tags(config: Config, name: str, ref: str) -> list[str]:
    """The tags the push recorded for ref (none when the record is of another digest)."""
    record = builds.load_record(config.store_path, name, "latest") or {}
    if record.get("image") != ref:
        return []
    return [str(tag) for tag in record.get("tags") or []]


def image_problems(
    ref: str,
    tags: list[str],
    model: str,
    key: str,
    *,
    tlog: bool,
    require: tuple[str, ...],
    key_name: str | None = None,
) -> list[str]:
    """Everything deploy.verify finds wrong with one digest (empty: it verifies). key is
    what cosign is given; key_name how messages name it (the setting as written)."""
    digest = ref.rsplit("@", 1)[1]
    shown = key_name or key
    wrong = []
    for tag in tags:
        now_at = verify.resolve_tag(tag)
        if now_at is not None and now_at != digest:
            wrong.append(f"tag {tag} was moved to {now_at}")
    if "signature" in require:
        signed = verify.verify_signature(ref, key, tlog=tlog)
        if signed.status == "missing":
            return [*wrong, f"it is not signed ({signed.detail})"]
        if signed.status == "rejected":
            # The attestations are checked with the same key: they would only repeat this.
            return [*wrong, f"its signature does not verify with {shown} ({signed.detail})"]
    if "sbom" in require:
        wrong += _attestation_problems(ref, key, shown, sign.SBOM, "SBOM", tlog)[0]
    if "provenance" in require or "verdict" in require:
        problems, statements = _attestation_problems(
            ref, key, shown, sign.PROVENANCE, "provenance", tlog
        )
        wrong += problems
        for statement in statements:
            for problem in provenance.problems(
                statement, digest=digest, model=model, verdict="verdict" in require
            ):
                if problem not in wrong:
                    wrong.append(problem)
    return wrong


def _attestation_problems(
    ref: str, key: str, shown: str, predicate_type: str, what: str, tlog: bool
) -> tuple[list[str], tuple[dict[str, Any], ...]]:
    found = verify.verify_attestations(ref, key, predicate_type, tlog=tlog)
    if found.status == "missing":
        return [f"it has no {what} attestation"], ()
    if found.status == "rejected":
        return [f"its {what} attestation does not verify with {shown} ({found.detail})"], ()
    return [], found.statements
