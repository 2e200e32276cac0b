"""The pure side of container training: path mapping, mounts, the key's environment part."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mlops_sessions.config.loader import load
from mlops_sessions.executors.docker.run import device_requests
from mlops_sessions.planning.container_run import PathMap, suite_run, train_run
from mlops_sessions.planning.training import plan_training

CONFIG = """\
apiVersion: mlops/v1alpha1
project: {name: p}
python: {requirements: requirements.lock}
tests: {path: tests}
data:
  inside: {path: data/points.csv}
  outside: {path: OUTSIDE}
images:
  trainer:
    kind: train
    repository: p-train
    base: {image: "python:3.11-slim"}
    tag: {policy: date}
models:
  m:
    train:
      source: src
      entrypoint: m:train
      inputs: [inside, outside]
      container: true
      image: trainer
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = tmp_path / "project"
    (root / "src").mkdir(parents=True)
    (root / "src" / "m.py").write_text("def train(ctx):\n    return None\n")
    (root / "data").mkdir()
    (root / "data" / "points.csv").write_text("1,2\n")
    (root / "tests").mkdir()
    (root / "requirements.lock").write_text("numpy==2.4.6\n")
    outside = tmp_path / "elsewhere" / "points.csv"
    outside.parent.mkdir()
    outside.write_text("3,4\n")
    (root / "mlops.yaml").write_text(CONFIG.replace("OUTSIDE", str(outside)))
    return root


def test_paths_map_into_workspace_output_and_extra_mounts(tmp_path: Path) -> None:
    root, out = tmp_path / "root", tmp_path / "root" / ".mlops" / "tmp" / "run"
    paths = PathMap(root, out)
    assert paths(root / "src") == "/workspace/src"
    assert paths(out / "model") == "/mlops/out/model"  # output wins over the tree around it
    first = paths(tmp_path / "a" / "data.csv")
    second = paths(tmp_path / "b" / "data.csv")
    assert (first, second) == ("/mlops/mounts/0-data.csv", "/mlops/mounts/1-data.csv")
    assert paths(tmp_path / "a" / "data.csv") == first  # the same file, the same mount
    mounts = {m.target: (m.source, m.read_only) for m in paths.mounts()}
    assert mounts["/workspace"] == (root.resolve(), True)
    assert mounts["/mlops/out"] == (out.resolve(), False)
    assert mounts[first] == ((tmp_path / "a" / "data.csv").resolve(), True)


def test_train_run_rewrites_the_spec_and_runs_offline_as_the_caller(project: Path) -> None:
    config = load(str(project / "mlops.yaml"))
    plan = plan_training(config, config.models["m"])

    out = project / ".mlops" / "tmp" / "stage"
    run, inside = train_run(plan, root=project, output=out, user="1000:1000", labels={"k": "v"})
    assert inside["source"] == "/workspace/src"
    assert inside["inputs"]["inside"] == "/workspace/data/points.csv"
    assert inside["inputs"]["outside"] == "/mlops/mounts/0-points.csv"
    assert run.command[-2:] == ("/mlops/out/train-spec.json", "/mlops/out")
    assert run.user == "1000:1000" and run.network == "none" and run.gpus == 0
    assert run.environment["HOME"] == "/tmp"
    assert run.environment["PYTHONPATH"] == "/opt/mlops/lib"
    assert {m.target for m in run.mounts} == {
        "/workspace",
        "/mlops/out",
        "/mlops/mounts/0-points.csv",
    }
    assert device_requests(run.gpus) == []
    (request,) = device_requests(2)
    assert request["Count"] == 2 and request["Capabilities"] == [["gpu"]]


def test_test_run_puts_sources_on_the_path_and_rewrites_host_paths(project: Path) -> None:
    run = suite_run(
        [str(project / "tests"), "-m", "not slow", "/etc/other"],
        sources=[project / "src"],
        root=project,
        output=project / ".mlops" / "tmp" / "t",
        user="0:0",
        labels={},
    )
    assert run.command[:5] == ("python", "-m", "pytest", "/workspace/tests", "-m")
    assert "/etc/other" in run.command  # not a project path: left alone
    assert "--junitxml=/mlops/out/junit.xml" in run.command
    assert run.environment["PYTHONPATH"] == "/workspace/src:/opt/mlops/lib"


def test_the_train_image_environment_is_part_of_the_key(project: Path) -> None:
    config = load(str(project / "mlops.yaml"))
    plan = plan_training(config, config.models["m"])
    assert plan.environment_digest and plan.key_parts["environment"] == plan.environment_digest
    # Code changes change the key through the code hash, not through the environment.
    (project / "src" / "m.py").write_text("def train(ctx):\n    return 1\n")
    code_changed = plan_training(config, config.models["m"])
    assert code_changed.environment_digest == plan.environment_digest
    assert code_changed.key != plan.key
    # A new base image is a new environment: the model trains again.
    (project / "mlops.yaml").write_text(
        (project / "mlops.yaml").read_text().replace("python:3.11-slim", "python:3.12-slim")
    )
    rebased = load(str(project / "mlops.yaml"))
    moved = plan_training(rebased, rebased.models["m"])
    assert moved.environment_digest != code_changed.environment_digest
    assert moved.key != code_changed.key


def test_venv_models_keep_their_keys(project: Path) -> None:
    config = load(str(project / "mlops.yaml"))
    model = config.models["m"]
    assert model.train is not None
    venv_model = dataclasses.replace(model, train=dataclasses.replace(model.train, container=False))
    plan = plan_training(config, venv_model)
    assert plan.environment_digest is None and "environment" not in plan.key_parts
