"""After a push, for an image with ``images.<name>.sign``: sign the pushed digest, attach its
SBOM and its provenance as signed attestations, and return the ``signing`` object that the
push record (``builds/<image>/latest.json``) keeps.

The facts the provenance carries are gathered here from the store (the run, the gate's
evaluation, the scan, the build) and git; :mod:`planning.provenance` shapes them;
:mod:`executors.cosign` signs and attaches. docs/signing.md describes the whole.
"""

from __future__ import annotations

import sys
import time
from typing import Any

from mlops_sessions import gitinfo
from mlops_sessions.config import Config
from mlops_sessions.config.model import ImageSigning
from mlops_sessions.executors.cosign import keys, sbom, sign, tools
from mlops_sessions.planning import provenance
from mlops_sessions.planning.tags import is_dirty_tag
from mlops_sessions.records import evaluations
from mlops_sessions.records.io import now
from mlops_sessions.records.store import Store


def sign_pushed(
    config: Config,
    store: Store,
    name: str,
    latest: dict[str, Any],
    built: dict[str, Any],
    scanned: dict[str, Any] | None,
) -> dict[str, Any] | None:
    """Sign and attest the pushed image of latest (its push record, not yet written); the
    ``signing`` object, or None when the image is not configured to be signed."""
    spec = config.images[name].sign
    if spec is None:
        return None
    ref = str(latest["image"])
    key = keys.key_argument(spec.key, config.root, setting=f"images.{name}.sign.key")
    started = time.monotonic()
    attestations: dict[str, str | None] = {"provenance": None, "sbom": None}
    with sign.signer(key, tlog=spec.tlog, scratch=store.tmp) as signer:
        signature = signer.sign(ref)
        if spec.sbom:
            document = sbom.sbom(ref, signer.scratch / "sbom.cdx.json")
            attestations["sbom"] = signer.attest(ref, document, sign.SBOM)
        if spec.provenance:
            facts = provenance_facts(config, store, name, latest, built, scanned)
            attestations["provenance"] = signer.attest(
                ref, provenance.predicate(facts), sign.PROVENANCE
            )
    print(
        f"[sign] {ref}: signed{', SBOM' if spec.sbom else ''}"
        f"{', provenance' if spec.provenance else ''} in {time.monotonic() - started:.1f} s",
        file=sys.stderr,
        flush=True,
    )
    return {
        "key": key_identity(spec, key),
        "tlog": spec.tlog,
        "signature": signature,
        "attestations": attestations,
        "signed_at": now(),
    }


def intent(spec: ImageSigning | None) -> dict[str, Any] | None:
    """What signing a push will do (for --dry-run): the key as configured, the log, and
    the attestations, in cosign's tag layout."""
    if spec is None:
        return None
    wanted = (("provenance", spec.provenance), ("sbom", spec.sbom))
    return {
        "key": spec.key,
        "tlog": spec.tlog,
        "attestations": [kind for kind, attach in wanted if attach],
        "layout": "tag",
    }


def describe_intent(spec: ImageSigning | None) -> str:
    """One line saying what signing a push will do, or that it will not sign."""
    if spec is None:
        return "not signed (no images.<name>.sign)"
    attached = [
        what
        for what, wanted in (
            ("the SLSA provenance", spec.provenance),
            ("syft's CycloneDX SBOM", spec.sbom),
        )
        if wanted
    ]
    log = (
        "uploading to the public transparency log" if spec.tlog else "offline, no transparency log"
    )
    attest = f", attesting {' and '.join(attached)}" if attached else ""
    return (
        f"would sign the pushed digest with {spec.key} ({log}){attest}, under its "
        "sha256-<hex>.sig and .att tags"
    )


def describe_signed(ref: str, signing: dict[str, Any]) -> str:
    """The record's signing object in words: which layer of which tag holds each digest
    (``cosign tree <ref>`` lists them), and the key."""
    digest = ref.rsplit("@", 1)[-1]
    parts = [f"signature {signing.get('signature')} (layer of {tools.tag(digest, 'sig')})"]
    attestations = [
        f"{kind} {found}" for kind, found in (signing.get("attestations") or {}).items() if found
    ]
    if attestations:
        parts.append(f"{', '.join(attestations)} (layers of {tools.tag(digest, 'att')})")
    log = "transparency log" if signing.get("tlog") else "no transparency log"
    return "; ".join(parts) + f"; key {signing.get('key')}, {log}"


def key_identity(spec: ImageSigning, key: str) -> str:
    """How the record names the signing key: a KMS URI as it is, any other key by the
    fingerprint of its public key (never the key's path or text)."""
    if keys.is_kms(spec.key):
        return spec.key
    return keys.fingerprint(keys.public_key(key))


def provenance_facts(
    config: Config,
    store: Store,
    name: str,
    latest: dict[str, Any],
    built: dict[str, Any],
    scanned: dict[str, Any] | None,
) -> provenance.ProvenanceFacts:
    """The lineage of one pushed image, from its records and the checkout it was built in."""
    run_id = latest.get("run_id")
    model = latest.get("model")
    run = store.load_run(str(run_id)) if run_id else None
    data = ((run or {}).get("lineage") or {}).get("data_hashes") or {}
    repository, digest = str(latest["image"]).rsplit("@", 1)
    tags = [str(ref).rsplit(":", 1)[-1] for ref in built.get("refs") or []]
    scan = None
    if scanned is not None:
        summary = {
            str(check.get("name")): {"passed": check.get("passed"), "detail": check.get("detail")}
            for check in scanned.get("checks") or []
        }
        scan = provenance.ScanFacts(passed=bool(scanned.get("passed")), summary=summary)
    return provenance.ProvenanceFacts(
        image=name,
        repository=repository,
        digest=digest,
        config_hash=config.document_hash(),
        started_on=str(built.get("built_at") or latest["pushed_at"]),
        finished_on=str(latest["pushed_at"]),
        base=str(built.get("base") or ""),
        model=str(model) if model else None,
        run_id=str(run_id) if run_id else None,
        model_hash=latest.get("model_hash"),
        data={str(k): str(v) for k, v in data.items()},
        evaluation=_evaluation(store, str(model), str(run_id)) if model and run_id else None,
        scan=scan,
        git_commit=latest.get("git_commit"),
        git_dirty=any(is_dirty_tag(tag) for tag in tags),
        git_origin=gitinfo.origin_url(config.root),
    )


def _evaluation(store: Store, model: str, run_id: str) -> provenance.EvaluationFacts | None:
    """The evaluation that blessed the run, else the run's newest (which may have failed)."""
    blessed = store.blessed(model)
    found = None
    if blessed is not None and blessed.get("run_id") == run_id and blessed.get("eval_id"):
        found = evaluations.load_evaluation(store.root, run_id, str(blessed["eval_id"]))
    if found is None:
        done = evaluations.evaluations(store.root, run_id)
        found = done[-1] if done else None
    if found is None:
        return None
    judged = found.verdict.get("metrics") or {}
    metrics = {
        str(metric): (check.get("value") if isinstance(check, dict) else None)
        for metric, check in judged.items()
    }
    return provenance.EvaluationFacts(found.eval_id, found.passed, metrics)
