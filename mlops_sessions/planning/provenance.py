"""The provenance of a pushed image as an in-toto v1 statement with a SLSA v1 predicate,
built from the facts its push step hands in; and the reading of such a statement that
``deploy.verify`` judges. Pure: no store, no git, no registry.

The shape is the shared contract of docs/signing.md: ``buildDefinition.externalParameters``
names the image, the model and the config hash; ``internalParameters`` carries the run, the
model hash, the data hashes, the gate's evaluation (id, verdict, the metrics it judged) and
the scan; ``resolvedDependencies`` the git source and the base image; ``runDetails`` the
builder and the build-to-push times. The admission policy reads the same two fields this
module's :func:`problems` reads: the model and the verdict.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://mlops-sessions.dev/image-build/v1"
BUILDER_ID = "https://mlops-sessions.dev/builder/v1"
_DIGEST = re.compile(r"^sha256:([0-9a-f]{64})$")
# user:password@ in an origin URL is a credential, never a fact worth signing.
_CREDENTIALS = re.compile(r"//[^/@]*@")


@dataclass(frozen=True)
class EvaluationFacts:
    """The gate's evaluation of the image's model run: its id, verdict and judged metrics."""

    eval_id: str
    passed: bool
    metrics: Mapping[str, float | None] = field(default_factory=dict)


@dataclass(frozen=True)
class ScanFacts:
    passed: bool
    summary: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ProvenanceFacts:
    """Everything a provenance statement says, as the push step found it.

    ``digest`` is the pushed manifest digest (``sha256:<hex>``), ``repository`` where it was
    pushed; ``model``/``run_id``/``model_hash``/``evaluation`` are None for an image without
    a model (a train image). ``base`` is the base image reference as the build used it.
    ``started_on``/``finished_on`` are RFC 3339 times (the build and the push).
    """

    image: str
    repository: str
    digest: str
    config_hash: str
    started_on: str
    finished_on: str
    base: str
    model: str | None = None
    run_id: str | None = None
    model_hash: str | None = None
    data: Mapping[str, str] = field(default_factory=dict)
    evaluation: EvaluationFacts | None = None
    scan: ScanFacts | None = None
    git_commit: str | None = None
    git_dirty: bool | None = None
    git_origin: str | None = None


def statement(facts: ProvenanceFacts) -> dict[str, Any]:
    """The in-toto v1 statement: subject the pushed digest, predicate :func:`predicate`."""
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": facts.repository, "digest": {"sha256": _hex(facts.digest)}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate(facts),
    }


def predicate(facts: ProvenanceFacts) -> dict[str, Any]:
    """The SLSA v1 provenance predicate (what cosign attests, wrapped in its statement)."""
    evaluation = None
    if facts.evaluation is not None:
        evaluation = {
            "id": facts.evaluation.eval_id,
            "verdict": "pass" if facts.evaluation.passed else "fail",
            "metrics": dict(facts.evaluation.metrics),
        }
    scan = None
    if facts.scan is not None:
        scan = {"passed": facts.scan.passed, "summary": dict(facts.scan.summary)}
    metadata: dict[str, Any] = {"startedOn": facts.started_on, "finishedOn": facts.finished_on}
    if facts.run_id is not None:
        metadata = {"invocationId": facts.run_id, **metadata}
    return {
        "buildDefinition": {
            "buildType": BUILD_TYPE,
            "externalParameters": {
                "image": facts.image,
                "model": facts.model,
                "config_hash": facts.config_hash,
            },
            "internalParameters": {
                "run_id": facts.run_id,
                "model_hash": facts.model_hash,
                "data": dict(facts.data),
                "evaluation": evaluation,
                "scan": scan,
            },
            "resolvedDependencies": _dependencies(facts),
        },
        "runDetails": {"builder": {"id": BUILDER_ID}, "metadata": metadata},
    }


def _dependencies(facts: ProvenanceFacts) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    if facts.git_commit:
        source: dict[str, Any] = {"name": "source", "digest": {"gitCommit": facts.git_commit}}
        if facts.git_origin:
            origin = _CREDENTIALS.sub("//", facts.git_origin.strip())
            source["uri"] = f"git+{origin}@{facts.git_commit}"
        source["annotations"] = {"dirty": bool(facts.git_dirty)}
        found.append(source)
    base: dict[str, Any] = {"name": "base-image", "uri": facts.base}
    if "@" in facts.base and _DIGEST.match(facts.base.rsplit("@", 1)[1]):
        base["digest"] = {"sha256": _hex(facts.base.rsplit("@", 1)[1])}
    else:  # a base named by tag: the statement says so rather than invent a digest
        base["annotations"] = {"pinned": False}
    found.append(base)
    return found


def _hex(digest: str) -> str:
    match = _DIGEST.match(digest)
    if match is None:
        raise ValueError(f"not a sha256 digest: {digest!r}")
    return match.group(1)


# --- reading a statement back (deploy.verify) ------------------------------------------------


def problems(found: Mapping[str, Any], *, digest: str, model: str, verdict: bool) -> list[str]:
    """What is wrong with one verified provenance statement for deploying digest as model:
    it names another digest, another model, or (with verdict) no passing gate verdict."""
    wrong: list[str] = []
    subjects = found.get("subject") or []
    hexes = {str((s.get("digest") or {}).get("sha256")) for s in subjects if isinstance(s, dict)}
    if _hex(digest) not in hexes:
        wrong.append("its provenance is the statement of another image")
    if found.get("predicateType") != PREDICATE_TYPE:
        wrong.append(f"its provenance is not SLSA v1 ({found.get('predicateType')!r})")
        return wrong
    definition = (found.get("predicate") or {}).get("buildDefinition") or {}
    named = (definition.get("externalParameters") or {}).get("model")
    if named != model:
        wrong.append(f"its provenance is of model {named!r}, not {model!r}")
    if verdict:
        evaluation = (definition.get("internalParameters") or {}).get("evaluation")
        if not isinstance(evaluation, dict) or evaluation.get("verdict") is None:
            wrong.append("its provenance carries no gate verdict")
        elif evaluation.get("verdict") != "pass":
            wrong.append(
                f"its provenance records a {evaluation.get('verdict')!r} gate verdict "
                f"(evaluation {evaluation.get('id')})"
            )
    return wrong
