"""Golden and schema tests for `mlops render` on the project's own example (every profile).

The golden files in tests/deploy/golden/<profile>/ pin the rendered output byte for byte.
After an intended change, regenerate them with:

    MLOPS_UPDATE_GOLDEN=1 pytest tests/deploy/test_render_golden.py

Every rendered object is also validated against the official Kubernetes schemas
(kubernetes-validate, strict) and the project's Istio schemas, for every Kubernetes
version the installed kubernetes-validate ships.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import kubernetes_validate
import pytest
import yaml

from mlops_sessions.config.loader import load
from mlops_sessions.drivers import render_inputs
from mlops_sessions.errors import StepError
from mlops_sessions.frontends.cli import main
from mlops_sessions.planning import k8s_validate, manifests, rollout_objects
from mlops_sessions.steps.render import render_all

GOLDEN = Path(__file__).parent / "golden"
PROFILES = ("ci", "prod")
DIGEST = "0123456789abcdef" * 4
RECORD = {
    "image": f"registry.example.com/ml/digits-serve@sha256:{DIGEST}",
    "model_hash": "5f" * 32,
    "run_id": "20261124T101500Z-1a2b3c4d",
    "git_commit": "a1b2c3d4e5f60718293a4b5c6d7e8f9012345678",
}


@pytest.fixture
def project(tmp_path: Path, repo_root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example mlops.yaml in a scratch directory, with one recorded image build."""
    monkeypatch.setenv("DIGITS_REPLICAS", "3")
    monkeypatch.delenv("MLOPS_PROFILE", raising=False)
    shutil.copy(repo_root / "mlops.yaml", tmp_path / "mlops.yaml")
    record = render_inputs.build_record(tmp_path / ".mlops", "serve")
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps(RECORD))
    return tmp_path / "mlops.yaml"


def _files(directory: Path) -> dict[str, bytes]:
    """The rendered files, with the rollout's steps/ folder (as 'steps/<name>') and the
    alerts and dashboard of monitoring/ (as 'monitoring/<name>') and the deployer identity of
    rbac/."""
    found = {p.name: p.read_bytes() for p in sorted(directory.iterdir()) if p.is_file()}
    for folder in ("steps", "monitoring", "rbac"):
        if (directory / folder).is_dir():
            found.update(
                {
                    f"{folder}/{p.name}": p.read_bytes()
                    for p in sorted((directory / folder).iterdir())
                }
            )
    return found


@pytest.mark.parametrize("profile", PROFILES)
def test_render_matches_golden(project: Path, profile: str) -> None:
    assert main(["render", "-c", str(project), "-p", profile]) == 0
    rendered = _files(project.parent / "k8s" / "rendered" / profile)
    golden_dir = GOLDEN / profile
    if os.environ.get("MLOPS_UPDATE_GOLDEN") == "1":
        shutil.rmtree(golden_dir, ignore_errors=True)
        golden_dir.mkdir(parents=True)
        for name, data in rendered.items():
            (golden_dir / name).parent.mkdir(parents=True, exist_ok=True)
            (golden_dir / name).write_bytes(data)
    assert rendered.keys() == _files(golden_dir).keys(), (
        "rendered file set changed; if intended: MLOPS_UPDATE_GOLDEN=1 pytest tests/deploy"
    )
    for name, data in _files(golden_dir).items():
        assert rendered[name] == data, (
            f"{profile}/{name} differs from the golden file; if intended, regenerate with "
            "MLOPS_UPDATE_GOLDEN=1 pytest tests/deploy/test_render_golden.py"
        )


def test_every_profile_of_the_example_is_pinned(project: Path) -> None:
    declared = load(project).profiles
    assert set(declared) == set(PROFILES), (
        f"the example declares profiles {declared}; add the new one to PROFILES and run "
        "MLOPS_UPDATE_GOLDEN=1 pytest tests/deploy/test_render_golden.py"
    )


def test_golden_files_are_what_the_issue_asks_for() -> None:
    """Read the pinned prod output back: the facts the team relies on are in it."""
    docs = list(yaml.safe_load_all((GOLDEN / "prod" / "all.yaml").read_text()))
    kinds = [d["kind"] for d in docs]
    assert kinds == [
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "Deployment",
        "DestinationRule",
        "VirtualService",
    ]
    stable = docs[3]
    assert stable["metadata"]["name"] == "digits-stable"
    assert stable["spec"]["replicas"] == 3  # DIGITS_REPLICAS in the prod profile
    pod = stable["spec"]["template"]
    assert pod["spec"]["containers"][0]["image"] == RECORD["image"]
    assert pod["metadata"]["labels"]["track"] == "stable"
    assert pod["metadata"]["labels"]["version"] == RECORD["run_id"]
    notes = pod["metadata"]["annotations"]
    assert notes["mlops-sessions.dev/git-commit"] == RECORD["git_commit"]
    assert notes["mlops-sessions.dev/model-hash"] == RECORD["model_hash"]
    assert notes["mlops-sessions.dev/run-id"] == RECORD["run_id"]
    assert len(notes["mlops-sessions.dev/serve-config-hash"]) == 64
    assert len(stable["metadata"]["annotations"]["mlops-sessions.dev/config-hash"]) == 64
    assert notes["prometheus.io/scrape"] == "true"
    # rollout.steps: between rollouts all traffic is stable's, the canary runs nothing and
    # the A/B cohort has no route of its own (docs/rollout.md).
    assert docs[4]["spec"]["replicas"] == 0
    vs = docs[-1]["spec"]["http"]
    # The gRPC port's route first (matched by port), then the rest: the same weights.
    assert [r["name"] for r in vs] == ["grpc-weighted", "weighted"]
    assert vs[0]["match"] == [{"port": 8500}]
    for route in vs:
        assert [r["weight"] for r in route["route"]] == [100, 0]
    # steps/ shows each step: the first scales the canary up; A/B sends its cohort there.
    steps = sorted((GOLDEN / "prod" / "steps").iterdir())
    assert [p.name for p in steps] == [
        "digits-abort.yaml",
        "digits-promote.yaml",
        "digits-step-1-canary-10.yaml",
        "digits-step-2-canary-50.yaml",
        "digits-step-3-canary-100.yaml",
    ]
    first = list(yaml.safe_load_all((GOLDEN / "prod" / "steps" / steps[2].name).read_text()))
    assert [d["kind"] for d in first] == ["Deployment", "VirtualService"]
    assert first[0]["spec"]["replicas"] == 1
    http = {r["name"]: r for r in first[1]["spec"]["http"]}
    assert list(http) == ["grpc-ab-canary", "grpc-weighted", "ab-canary", "weighted"]
    assert http["ab-canary"]["match"] == [{"headers": {"x-digits-canary": {"exact": "always"}}}]
    assert http["grpc-ab-canary"]["match"] == [
        {"headers": {"x-digits-canary": {"exact": "always"}}, "port": 8500}
    ]
    assert [r["weight"] for r in http["weighted"]["route"]] == [90, 10]
    assert [r["weight"] for r in http["grpc-weighted"]["route"]] == [90, 10]
    last = list(yaml.safe_load_all((GOLDEN / "prod" / "steps" / steps[4].name).read_text()))
    assert [r["weight"] for r in last[0]["spec"]["http"][1]["route"]] == [0, 100]


@pytest.mark.parametrize("profile", PROFILES)
def test_render_is_byte_for_byte_deterministic(project: Path, profile: str, tmp_path: Path) -> None:
    first, second = tmp_path / "one", tmp_path / "two"
    assert main(["render", "-c", str(project), "-p", profile, "--out", str(first)]) == 0
    assert main(["render", "-c", str(project), "-p", profile, "--out", str(second)]) == 0
    assert _files(first) == _files(second)
    # all.yaml is the per-object files' documents, in the same (apply) order.
    per_object = [
        yaml.safe_load((first / name).read_text())
        for name in sorted(_files(first))
        if name != "all.yaml" and not name.startswith(("steps/", "monitoring/", "rbac/"))
    ]
    assert list(yaml.safe_load_all((first / "all.yaml").read_text())) == per_object


@pytest.mark.parametrize("profile", PROFILES)
def test_every_object_validates_for_every_supported_version(project: Path, profile: str) -> None:
    config = load(project, profile=profile)
    objects = render_all(config, [], {})
    versions = k8s_validate.supported_versions()
    assert "1.30" in versions and len(versions) >= 5
    for version in versions:
        for obj in objects:
            if obj["apiVersion"].startswith("networking.istio.io/"):
                assert k8s_validate.istio_problems(obj) == [], obj["kind"]
            else:
                # The library itself, strict: unknown fields are errors.
                kubernetes_validate.validate(obj, version, strict=True)


def test_strict_validation_catches_a_misspelt_field(project: Path) -> None:
    config = load(project, profile="ci")
    objects = render_all(config, [], {})
    deployment = next(o for o in objects if o["kind"] == "Deployment")
    deployment["spec"]["replica"] = 2  # the field is 'replicas'
    with pytest.raises(StepError) as caught:
        k8s_validate.validate_objects(objects, "1.30")
    assert "Deployment/digits-stable" in str(caught.value)
    assert "replica" in str(caught.value)


def test_istio_schema_refuses_what_istio_would(project: Path) -> None:
    config = load(project, profile="ci")
    rendered = render_all(config, [], {})
    objects = manifests.by_kind(rendered)
    # A step's VirtualService: the A/B route and the weighted split.
    (vs,) = rollout_objects.only(
        rollout_objects.during(rendered, 10, 1, [{"headers": {"x-digits-canary": {"exact": "x"}}}]),
        [("VirtualService", "")],
    )
    vs["spec"]["http"][1]["route"][0]["weight"] = 150
    vs["spec"]["http"][0]["match"][0]["headers"]["x-digits-canary"] = {"exact": "a", "regex": "b"}
    problems = k8s_validate.istio_problems(vs)
    assert any("150" in p for p in problems), problems
    assert any("x-digits-canary" in p for p in problems), problems
    dr = objects["DestinationRule"][0]
    del dr["spec"]["host"]
    assert any("'host' is a required property" in p for p in k8s_validate.istio_problems(dr))
