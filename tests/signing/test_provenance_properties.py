"""The pure provenance builder over random facts: the statement is a valid in-toto v1
statement and its predicate a SLSA v1 provenance by the reference implementation's own
schemas (in-toto-attestation's protobufs; cosign drops fields those do not know, so a
misspelt field would vanish from the signed attestation), it names the pushed digest, it
never carries the origin's credentials, and reading it back (what deploy.verify does)
passes exactly the statements of this model with a passing verdict.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import in_toto_attestation.v1.statement as in_toto
import pytest
from google.protobuf import json_format
from hypothesis import given, settings
from hypothesis import strategies as st
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2 as slsa

from mlops_sessions.planning import provenance

hexes = st.text("0123456789abcdef", min_size=64, max_size=64)
names = st.from_regex(r"[a-z][a-z0-9-]{0,20}", fullmatch=True)
# As records.io.now() writes them: UTC, ISO 8601, milliseconds, 'Z'.
times = st.datetimes(datetime(1970, 1, 1), datetime(2200, 1, 1)).map(
    lambda t: t.isoformat(timespec="milliseconds") + "Z"
)
commits = st.one_of(st.none(), st.text("0123456789abcdef", min_size=40, max_size=40))
metric_values = st.one_of(st.none(), st.floats(allow_nan=False, allow_infinity=False))


@st.composite
def facts(draw: st.DrawFn) -> provenance.ProvenanceFacts:
    has_model = draw(st.booleans())
    evaluation = None
    if has_model and draw(st.booleans()):
        evaluation = provenance.EvaluationFacts(
            eval_id=draw(names),
            passed=draw(st.booleans()),
            metrics=draw(st.dictionaries(names, metric_values, max_size=4)),
        )
    scan = None
    if draw(st.booleans()):
        scan = provenance.ScanFacts(
            passed=draw(st.booleans()),
            summary=draw(st.dictionaries(names, st.fixed_dictionaries({"passed": st.booleans()}))),
        )
    base_digest = draw(st.one_of(st.none(), hexes))
    base = f"registry.example.com/base@sha256:{base_digest}" if base_digest else "base:bookworm"
    origin = draw(
        st.one_of(
            st.none(),
            st.just("https://user:s3cret@git.example.com/team/repo.git"),
            st.just("git@git.example.com:team/repo.git"),
        )
    )
    return provenance.ProvenanceFacts(
        image=draw(names),
        repository="registry.example.com/ml/" + draw(names),
        digest="sha256:" + draw(hexes),
        config_hash=draw(hexes),
        started_on=draw(times),
        finished_on=draw(times),
        base=base,
        model=draw(names) if has_model else None,
        run_id=draw(names) if has_model else None,
        model_hash=draw(hexes) if has_model else None,
        data=draw(st.dictionaries(names, hexes.map(lambda h: f"sha256:{h}"), max_size=3)),
        evaluation=evaluation,
        scan=scan,
        git_commit=draw(
            st.one_of(st.none(), st.text("0123456789abcdef", min_size=40, max_size=40))
        ),
        git_dirty=draw(st.one_of(st.none(), st.booleans())),
        git_origin=origin,
    )


def _parse(statement: dict[str, Any]) -> Any:
    """The statement through the reference protobufs, refusing any unknown field."""
    pb = json_format.ParseDict(json.loads(json.dumps(statement)), in_toto.spb.Statement())
    in_toto.Statement.copy_from_pb(pb).validate()
    predicate = json_format.ParseDict(statement["predicate"], slsa.Provenance())
    return pb, predicate


@settings(max_examples=150, deadline=None)
@given(facts())
def test_statement_is_valid_in_toto_and_slsa_v1(found: provenance.ProvenanceFacts) -> None:
    statement = provenance.statement(found)
    pb, predicate = _parse(statement)
    assert pb.subject[0].digest["sha256"] == found.digest.removeprefix("sha256:")
    assert pb.predicate_type == provenance.PREDICATE_TYPE
    assert predicate.build_definition.build_type == provenance.BUILD_TYPE
    assert predicate.run_details.builder.id == provenance.BUILDER_ID
    assert predicate.run_details.metadata.invocation_id == (found.run_id or "")
    external = statement["predicate"]["buildDefinition"]["externalParameters"]
    assert external == {
        "image": found.image,
        "model": found.model,
        "config_hash": found.config_hash,
    }
    assert "s3cret" not in json.dumps(statement)
    dependencies = {
        d["name"]: d for d in statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    }
    assert ("sha256" in dependencies["base-image"].get("digest", {})) == ("@sha256:" in found.base)
    if found.git_commit:
        assert dependencies["source"]["digest"] == {"gitCommit": found.git_commit}
    else:
        assert "source" not in dependencies


@settings(max_examples=150, deadline=None)
@given(facts(), names)
def test_reading_back_passes_only_this_models_passing_verdict(
    found: provenance.ProvenanceFacts, other: str
) -> None:
    statement = json.loads(json.dumps(provenance.statement(found)))  # as it travels
    model = found.model or "some-model"
    wrong = provenance.problems(statement, digest=found.digest, model=model, verdict=True)
    passing = found.model is not None and found.evaluation is not None and found.evaluation.passed
    assert (wrong == []) == passing
    # Without the verdict requirement only the model and the digest count.
    loose = provenance.problems(statement, digest=found.digest, model=model, verdict=False)
    assert (loose == []) == (found.model is not None)
    if other != found.model:
        named = provenance.problems(statement, digest=found.digest, model=other, verdict=False)
        assert any(f"not {other!r}" in problem for problem in named)
    elsewhere = "sha256:" + ("0" * 64 if not found.digest.endswith("0" * 64) else "1" * 64)
    moved = provenance.problems(statement, digest=elsewhere, model=model, verdict=False)
    assert "its provenance is the statement of another image" in moved


def test_a_digest_that_is_not_sha256_is_refused() -> None:
    with pytest.raises(ValueError, match="not a sha256 digest"):
        provenance.statement(
            provenance.ProvenanceFacts(
                image="serve",
                repository="r/x",
                digest="md5:abc",
                config_hash="0" * 64,
                started_on="2026-01-01T00:00:00Z",
                finished_on="2026-01-01T00:00:00Z",
                base="b",
            )
        )
