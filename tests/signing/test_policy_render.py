"""`mlops render`'s admission policy (policy/<model>-imagepolicy.yaml) for deploy.verify.

Each rendered ClusterImagePolicy is checked three ways, over key files, env:// keys, KMS
URIs and every subset of ``require``:

- against the openAPIV3Schema policy-controller publishes for ``v1beta1`` (its CRD from its
  Go module), made strict: an undeclared field is an error here, where the API server
  would prune it silently;
- against what policy-controller's own webhook validates beyond the schema: the key parses
  as a public key, globs are of its glob alphabet, predicate types are URIs, and the
  policy's globs match the model's image references (translated as its ``glob.Compile``
  does) and no other repository;
- its Rego attestation policies are evaluated by a real Rego engine (regopy, rego-cpp's
  Python binding) on in-toto statements of the contract's shape, with the query
  policy-controller runs (``isCompliant = data.sigstore.isCompliant``).
"""

from __future__ import annotations

import copy
import json
import os
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml
from cryptography.hazmat.primitives import serialization

from mlops_sessions.planning import admission, provenance
from tests.components.crdschema import strict
from tests.conftest import require_real
from tests.signing import policy_support as support

GOLDEN = Path(__file__).parent / "golden"
GCP_KEY = "gcpkms://projects/shop/locations/global/keyRings/release/cryptoKeys/cosign"
REQUIRE_SETS = [
    ["signature"],
    ["signature", "provenance"],
    ["signature", "provenance", "verdict"],
    ["signature", "sbom"],
    ["verdict"],
    ["signature", "sbom", "provenance", "verdict"],
]


def schema_errors(obj: dict[str, Any], version: str = "v1beta1") -> list[str]:
    schema = strict(support.served_schema(version))
    # The object's envelope is the API server's, not the CRD schema's to declare.
    envelope = {"apiVersion": {"type": "string"}, "kind": {"type": "string"}}
    schema["properties"] = {**envelope, "metadata": {"type": "object"}, **schema["properties"]}
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(obj)
    ]


# policy-controller's pkg/apis/glob: the alphabet a glob may use and how it becomes a regexp.
_GLOB_ALPHABET = re.compile(r"^[a-zA-Z0-9-_:/*.@]+$")


def glob_matches(glob: str, reference: str) -> bool:
    pattern = glob.replace(".", r"\.").replace("**", "#").replace("*", "[^/]*")
    return re.fullmatch(pattern.replace("#", ".*"), reference) is not None


def webhook_problems(policy: dict[str, Any]) -> list[str]:
    """What policy-controller's admission webhook checks beyond the CRD schema."""
    problems = []
    spec = policy["spec"]
    for image in spec["images"]:
        if not _GLOB_ALPHABET.match(image["glob"]):
            problems.append(f"glob {image['glob']!r} has characters a glob may not")
    for authority in spec["authorities"]:
        key = authority["key"]
        if len([k for k in ("data", "kms", "secretRef") if k in key]) != 1:
            problems.append("a key needs exactly one of data, kms, secretRef")
        if "data" in key:
            try:
                serialization.load_pem_public_key(key["data"].encode())
            except ValueError as error:
                problems.append(f"key.data is not a public key: {error}")
        if "kms" in key and not key["kms"].startswith(admission.KMS_SCHEMES):
            problems.append(f"key.kms {key['kms']!r} is no KMS policy-controller supports")
        for attestation in authority.get("attestations", []):
            if not attestation.get("name"):
                problems.append("an attestation without a name")
            if not attestation["predicateType"].startswith("https://"):
                problems.append(f"predicateType {attestation['predicateType']} is not a URI")
            if attestation["policy"]["type"] not in ("cue", "rego"):
                problems.append("a policy that is neither cue nor rego")
    return problems


def render_policy(tmp_path: Path, verify: dict[str, Any], pem: str | None) -> dict[str, Any]:
    config = support.project(tmp_path, verify, pem)
    assert support.render(config, tmp_path / "out") == 0
    return support.rendered_policy(tmp_path / "out")


@pytest.fixture
def pem() -> str:
    return support.public_pem()


# --- the published schema and the webhook's own checks -------------------------------------


@pytest.mark.parametrize("require", REQUIRE_SETS, ids="+".join)
@pytest.mark.parametrize("key", ["file", "env", "kms"])
def test_every_rendered_policy_is_valid_for_policy_controller(
    tmp_path: Path, pem: str, key: str, require: list[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = {"file": "cosign.pub", "env": "env://COSIGN_PUBLIC_KEY", "kms": GCP_KEY}[key]
    monkeypatch.setenv("COSIGN_PUBLIC_KEY", pem)
    policy = render_policy(tmp_path, {"key": reference, "require": require}, pem)
    assert (policy["apiVersion"], policy["kind"]) == (admission.API_VERSION, admission.KIND)
    assert schema_errors(policy) == []
    assert webhook_problems(policy) == []
    authority = policy["spec"]["authorities"][0]
    if key == "kms":
        assert authority["key"] == {"kms": GCP_KEY}
    else:
        assert authority["key"] == {"data": pem}
    names = [a["name"] for a in authority.get("attestations", [])]
    types = [a["predicateType"] for a in authority.get("attestations", [])]
    provenance = "verdict" if "verdict" in require else "provenance"
    wanted = ([provenance] if {"provenance", "verdict"} & set(require) else []) + (
        ["sbom"] if "sbom" in require else []
    )
    assert names == wanted
    assert types == [
        {"provenance": admission.PROVENANCE_TYPE, "verdict": admission.PROVENANCE_TYPE}.get(
            n, admission.SBOM_TYPE
        )
        for n in names
    ]
    assert "ctlog" not in authority  # tlog defaults to false: no transparency log consulted
    assert policy["spec"]["mode"] == "enforce"


def test_tlog_names_the_public_rekor(tmp_path: Path, pem: str) -> None:
    policy = render_policy(tmp_path, {"key": "cosign.pub", "tlog": True}, pem)
    assert policy["spec"]["authorities"][0]["ctlog"] == {"url": "https://rekor.sigstore.dev"}
    assert schema_errors(policy) == []


def test_the_schema_check_notices_a_broken_policy(tmp_path: Path, pem: str) -> None:
    policy = render_policy(tmp_path, {"key": "cosign.pub"}, pem)
    broken = copy.deepcopy(policy)
    broken["spec"]["authorities"][0]["keys"] = broken["spec"]["authorities"][0].pop("key")
    broken["spec"]["images"][0] = {"globs": "x"}
    broken["spec"]["mode"] = 3
    errors = schema_errors(broken)
    assert any("'keys' was unexpected" in e for e in errors), errors
    assert any("'globs' was unexpected" in e for e in errors), errors
    assert any("mode: 3 is not of type 'string'" in e for e in errors), errors


def test_the_served_versions_share_one_schema() -> None:
    # v1beta1 is rendered, v1alpha1 is what the API server stores; the tests/kube check
    # relies on both validating the same way.
    def without_descriptions(node: Any) -> Any:
        if isinstance(node, dict):
            return {k: without_descriptions(v) for k, v in node.items() if k != "description"}
        if isinstance(node, list):
            return [without_descriptions(v) for v in node]
        return node

    assert without_descriptions(support.served_schema("v1alpha1")) == without_descriptions(
        support.served_schema("v1beta1")
    )


def test_globs_match_the_models_images_and_no_other_repository(tmp_path: Path, pem: str) -> None:
    policy = render_policy(tmp_path, {"key": "cosign.pub"}, pem)
    globs = [i["glob"] for i in policy["spec"]["images"]]
    covered = [
        support.SERVE_REF,
        support.NEXT_REF,  # the canary's own image
        "registry.example.com/ml/digits-serve:20261124-a1b2c3d",
    ]
    for reference in covered:
        assert any(glob_matches(g, reference) for g in globs), reference
    for reference in (
        f"registry.example.com/ml/digits-serve-train@sha256:{support.DIGEST}",
        f"registry.example.com/ml/other@sha256:{support.DIGEST}",
        f"mirror.example.com/ml/digits-serve@sha256:{support.DIGEST}",
    ):
        assert not any(glob_matches(g, reference) for g in globs), reference


@pytest.mark.parametrize(
    ("repository", "qualified"),
    [
        ("registry.example.com/ml/digits", "registry.example.com/ml/digits"),
        ("127.0.0.1:5000/digits", "127.0.0.1:5000/digits"),
        ("localhost/digits", "localhost/digits"),
        ("digits", "index.docker.io/library/digits"),
        ("shop/digits", "index.docker.io/shop/digits"),
        ("docker.io/shop/digits", "index.docker.io/shop/digits"),
        ("docker.io/digits", "index.docker.io/library/digits"),
    ],
)
def test_repositories_are_named_as_policy_controller_matches_them(
    repository: str, qualified: str
) -> None:
    assert admission.qualified_repository(repository) == qualified


# --- the Rego policies, evaluated ------------------------------------------------------------


def _statement(model: str | None, verdict: str | None, build_type: str) -> dict[str, Any]:
    """An in-toto v1 statement of the shared contract's shape (docs/signing.md), as
    policy-controller hands a verified attestation to the policy."""
    evaluation = None if verdict is None else {"id": "e-1", "verdict": verdict, "metrics": {}}
    return {
        "_type": "https://in-toto.io/Statement/v1",
        "subject": [{"name": "registry.example.com/ml/digits-serve", "digest": {"sha256": "0f"}}],
        "predicateType": admission.PROVENANCE_TYPE,
        "predicate": {
            "buildDefinition": {
                "buildType": build_type,
                "externalParameters": {"image": "serve", "model": model, "config_hash": "ab"},
                "internalParameters": {"run_id": "r-1", "evaluation": evaluation, "scan": None},
                "resolvedDependencies": [],
            },
            "runDetails": {"builder": {"id": "https://mlops-sessions.dev/builder/v1"}},
        },
    }


def evaluate(policy: str, document: dict[str, Any]) -> tuple[bool, str]:
    """(compliant, error) as policy-controller (cosign's rego package) decides them: the
    query binds isCompliant to a set of {result, error} objects; any result true passes."""
    try:
        from regopy import Interpreter
    except ImportError:
        require_real("regopy (the Rego engine) is not installed: pip install -e '.[dev]'")
        raise
    rego = Interpreter()
    rego.add_module("sigstore.rego", policy)
    rego.set_input(document)
    answer = json.loads(str(rego.query("isCompliant = data.sigstore.isCompliant")))
    results = answer["bindings"]["isCompliant"]
    compliant = any(r.get("result") for r in results)
    return compliant, "; ".join(r.get("error", "") for r in results if not r.get("result"))


def _provenance_rego(tmp_path: Path, pem: str, require: list[str]) -> str:
    policy = render_policy(tmp_path, {"key": "cosign.pub", "require": require}, pem)
    (attestation,) = [
        a
        for a in policy["spec"]["authorities"][0]["attestations"]
        if a["predicateType"] == admission.PROVENANCE_TYPE
    ]
    assert attestation["policy"]["type"] == "rego"
    return str(attestation["policy"]["data"])


def test_the_verdict_policy_admits_a_passing_verdict_of_this_model_only(
    tmp_path: Path, pem: str
) -> None:
    rego = _provenance_rego(tmp_path, pem, ["signature", "provenance", "verdict"])
    ours = admission.BUILD_TYPE
    assert evaluate(rego, _statement("digits", "pass", ours)) == (True, "")
    refusals = {
        "a failed verdict": (
            _statement("digits", "fail", ours),
            "the gate's verdict in it is fail, not pass",
        ),
        "no verdict (a train image)": (
            _statement("digits", None, ours),
            "the gate's verdict in it is null, not pass",
        ),
        "another model's verdict": (
            _statement("ranker", "pass", ours),
            "it is of model ranker, not digits",
        ),
        "someone else's build": (
            _statement("digits", "pass", "https://example.com/other-build"),
            "it is not an mlops-sessions image build",
        ),
    }
    for case, (document, reason) in refusals.items():
        compliant, error = evaluate(rego, document)
        assert not compliant, case
        assert error == reason, case
    compliant, error = evaluate(rego, {"predicateType": admission.PROVENANCE_TYPE})
    assert not compliant and "not an mlops-sessions image build" in error


def test_the_statement_push_attests_is_judged_like_deploy_judges_it(
    tmp_path: Path, pem: str
) -> None:
    """The contract end to end: the statement planning/provenance.py builds for push,
    evaluated by the rendered policy, agrees with deploy's own reading of it."""
    rego = _provenance_rego(tmp_path, pem, ["signature", "provenance", "verdict"])
    digest = f"sha256:{support.DIGEST}"
    for model, passed in (("digits", True), ("digits", False), ("ranker", True)):
        facts = provenance.ProvenanceFacts(
            image="serve",
            repository="registry.example.com/ml/digits-serve",
            digest=digest,
            config_hash="c" * 64,
            started_on="2026-12-05T10:00:00Z",
            finished_on="2026-12-05T10:02:00Z",
            base="debian:bookworm",
            model=model,
            run_id="r-1",
            evaluation=provenance.EvaluationFacts("e-1", passed, {"accuracy": 0.97}),
        )
        statement = provenance.statement(facts)
        deploy_refuses = provenance.problems(statement, digest=digest, model="digits", verdict=True)
        compliant, _ = evaluate(rego, statement)
        assert compliant == (not deploy_refuses) == (model == "digits" and passed), facts


def test_provenance_without_verdict_does_not_judge_the_verdict(tmp_path: Path, pem: str) -> None:
    rego = _provenance_rego(tmp_path, pem, ["signature", "provenance"])
    assert evaluate(rego, _statement("digits", "fail", admission.BUILD_TYPE)) == (True, "")
    compliant, error = evaluate(rego, _statement("ranker", "pass", admission.BUILD_TYPE))
    assert (compliant, error) == (False, "it is of model ranker, not digits")


def test_the_sbom_policy_wants_a_cyclonedx_document(tmp_path: Path, pem: str) -> None:
    policy = render_policy(tmp_path, {"key": "cosign.pub", "require": ["sbom"]}, pem)
    (attestation,) = policy["spec"]["authorities"][0]["attestations"]
    rego = attestation["policy"]["data"]
    bom = {"bomFormat": "CycloneDX", "specVersion": "1.6", "components": []}
    statement = {"predicateType": admission.SBOM_TYPE, "predicate": bom}
    assert evaluate(rego, statement) == (True, "")
    spdx = {"predicateType": admission.SBOM_TYPE, "predicate": {"spdxVersion": "SPDX-2.3"}}
    assert evaluate(rego, spdx) == (False, "its predicate is not a CycloneDX BOM")


# --- what render writes, and what it refuses --------------------------------------------------


def test_the_policy_stays_out_of_what_deploy_applies(tmp_path: Path, pem: str) -> None:
    render_policy(tmp_path, {"key": "cosign.pub"}, pem)
    out = tmp_path / "out"
    kinds = {d["kind"] for d in yaml.safe_load_all((out / "all.yaml").read_text())}
    assert admission.KIND not in kinds
    assert sorted(p.name for p in (out / "policy").iterdir()) == ["digits-imagepolicy.yaml"]


def test_without_verify_no_policy_and_a_stale_one_is_removed(tmp_path: Path, pem: str) -> None:
    render_policy(tmp_path, {"key": "cosign.pub"}, pem)
    keep = tmp_path / "out" / "policy" / "notes.yaml"  # not render's: never touched
    keep.write_text("mine\n")
    config = support.project(tmp_path, None)
    assert support.render(config, tmp_path / "out") == 0
    assert sorted(p.name for p in (tmp_path / "out" / "policy").iterdir()) == ["notes.yaml"]


@pytest.mark.parametrize(
    ("key", "content", "message"),
    [
        (
            "cosign.key",
            "private",
            "models.digits.deploy.verify.key (cosign.key) is a private key; the policy needs "
            "the public key",
        ),
        ("missing.pub", None, "models.digits.deploy.verify.key (missing.pub): cannot read"),
        (
            "notakey.pub",
            "-----BEGIN PUBLIC KEY-----\nnot base64!\n-----END PUBLIC KEY-----\n",
            "is not a PEM public key",
        ),
        ("env://NO_SUCH_KEY_VAR", None, "NO_SUCH_KEY_VAR is not set"),
        ("k8s://cosign-system/signing", None, "cannot name a cosign k8s:// Secret"),
    ],
)
def test_a_key_the_policy_cannot_use_is_refused_in_one_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    key: str,
    content: str | None,
    message: str,
) -> None:
    monkeypatch.delenv("NO_SUCH_KEY_VAR", raising=False)
    if content is not None:
        text = support.private_pem() if content == "private" else content
        (tmp_path / key).write_text(text)
    config = support.project(tmp_path, {"key": key})
    assert support.render(config, tmp_path / "out") != 0
    err = capsys.readouterr().err.strip()
    assert message in err
    assert len(err.splitlines()) == 1, err
    assert "Traceback" not in err
    assert not (tmp_path / "out").exists()  # every file or none


# --- golden files (KMS keys: no key material in the repository) -----------------------------


@pytest.mark.parametrize(
    ("case", "verify"),
    [
        ("kms-default", {"key": GCP_KEY}),
        (
            "kms-all-tlog",
            {
                "key": GCP_KEY,
                "tlog": True,
                "require": ["signature", "sbom", "provenance", "verdict"],
            },
        ),
    ],
)
def test_policy_matches_golden(tmp_path: Path, case: str, verify: dict[str, Any]) -> None:
    config = support.project(tmp_path, verify)
    assert support.render(config, tmp_path / "out") == 0
    rendered = (tmp_path / "out" / "policy" / "digits-imagepolicy.yaml").read_bytes()
    golden = GOLDEN / f"{case}.yaml"
    if os.environ.get("MLOPS_UPDATE_GOLDEN") == "1":
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_bytes(rendered)
    assert rendered == golden.read_bytes(), (
        f"{golden.name} differs; if intended, regenerate with "
        "MLOPS_UPDATE_GOLDEN=1 pytest tests/signing/test_policy_render.py"
    )


def test_an_image_verified_for_two_models_is_refused_by_validate(
    tmp_path: Path, pem: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # Its provenance names one model: the other model's policy (and deploy) could never pass.
    config = support.project(tmp_path, {"key": "cosign.pub"}, pem)
    doc = yaml.safe_load(config.read_text())
    doc["models"]["ranker"] = copy.deepcopy(doc["models"]["digits"])
    doc["models"]["ranker"]["rollout"]["hosts"] = ["ranker.example.com"]
    config.write_text(yaml.safe_dump(doc))
    assert support.render(config, tmp_path / "out") != 0
    err = capsys.readouterr().err
    assert (
        "models.ranker.deploy.verify.require: image 'serve' is verified for model 'digits'" in err
    )
    assert not (tmp_path / "out").exists()
    doc["models"]["ranker"]["deploy"]["verify"]["require"] = ["signature", "sbom"]
    config.write_text(yaml.safe_dump(doc))
    assert support.render(config, tmp_path / "out") == 0
    assert sorted(p.name for p in (tmp_path / "out" / "policy").iterdir()) == [
        "digits-imagepolicy.yaml",
        "ranker-imagepolicy.yaml",
    ]
