"""Every `mlops` step prints its result as JSON with --json: each step in the pipeline table
is run on something cheap and its stdout is parsed. A new step fails the coverage check until
it gets a case here (or is named, with the reason, in ELSEWHERE)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions import pipeline

DIGEST = "sha256:" + "a" * 64

# step -> argv, run in a copy of the repository's example project (offline, seconds).
OFFLINE: dict[str, list[str]] = {
    "validate": ["validate", "--all-profiles"],
    "config": ["config", "-p", "ci"],
    "schema": ["schema"],
    "test": ["test"],
    "train": ["train", "--dry-run"],
    "scan": ["scan", "--dry-run"],
    "eject": ["eject", "--dry-run"],
    "render": ["render", "--image", f"serve=registry.example.com/digits-serve@{DIGEST}"],
    "ci": ["ci", "gitlab", "-o", "out/ci.yml"],
    "make": ["make", "-o", "out/mlops.mk"],
    "dashboard": ["dashboard", "--out", "out/dashboard.json"],
    "init": ["init", "out/new-project"],
    "store": ["store", "status"],  # no store.remote in the example: the local side only
}
# step -> argv, run in a freshly trained scaffold (slow: trains a small model first).
TRAINED: dict[str, list[str]] = {
    "evaluate": ["evaluate"],
    "lineage": ["lineage", "{run}"],
    "build": ["build", "--dry-run"],
    "serve": ["serve", "--port", "0", "--grpc-port", "0"],  # any free port; no gRPC (8500)
}
# Steps that need a live cluster, a registry with a pushed image or an S3 endpoint; their
# --json is tested where those fixtures live: tests/kube (deploy, rollback, status, promote,
# abort on the real API server), tests/deploy (fetch-model on an S3 stand-in) and
# tests/images (Docker engine and registry).
ELSEWHERE = {"push", "deploy", "rollback", "status", "fetch-model", "promote", "abort"}


def test_every_step_has_a_json_case() -> None:
    groups = [set(OFFLINE), set(TRAINED), ELSEWHERE]
    assert sum(len(g) for g in groups) == len(set().union(*groups)), "a step is listed twice"
    assert set().union(*groups) == {step.name for step in pipeline.commands()}, (
        "add a --json case for the new step"
    )


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    repo = Path(__file__).resolve().parents[2]
    project = tmp_path_factory.mktemp("example")
    for name in ("mlops.yaml", "requirements.lock"):
        shutil.copy(repo / name, project / name)
    shutil.copytree(repo / "examples", project / "examples")
    (project / "noxfile.py").write_text("import mlops_sessions\n\nmlops_sessions.register()\n")
    (project / "tests").mkdir()
    (project / "tests" / "test_quick.py").write_text("def test_quick():\n    assert True\n")
    return project


@pytest.mark.parametrize("step", sorted(OFFLINE))
@pytest.mark.slow
def test_offline_step_prints_json(step: str, example: Path, mlops: Any) -> None:
    done = mlops(example, *OFFLINE[step], "--json")
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert isinstance(result, dict) and result


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The `mlops init` scaffold with an image, in a git repo, trained and evaluated once."""
    project = tmp_path_factory.mktemp("trained") / "p"
    run = [sys.executable, "-m", "mlops_sessions"]
    subprocess.run([*run, "init", str(project)], check=True, capture_output=True)
    config = project / "mlops.yaml"
    text = config.read_text().replace(
        "    description: Small dense network on the four flower measurements.\n",
        "    description: Small dense network on the four flower measurements.\n    image: serve\n",
    )
    text += (
        "images:\n  serve:\n    kind: serve\n    repository: iris-serve\n"
        "    base: {variant: cpu, tensorflow: '2.21.0'}\n"
    )
    config.write_text(text.replace("epochs: 60", "epochs: 30"))
    git = ["git", "-c", "user.email=ci@example.com", "-c", "user.name=ci"]
    for command in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "scaffold"]):
        subprocess.run([*git, *command], cwd=project, check=True, capture_output=True)
    # A real training run with --json: progress goes to stderr, stdout is one document.
    done = subprocess.run(
        [*run, "train", "--json"],
        cwd=project,
        check=True,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert json.loads(done.stdout), done.stderr
    return project


@pytest.mark.slow
@pytest.mark.parametrize("step", ["evaluate", "lineage", "build"])
def test_step_on_a_trained_model_prints_json(step: str, trained: Path, mlops: Any) -> None:
    run_id = next((trained / ".mlops" / "runs").iterdir()).name
    argv = [a.format(run=run_id) for a in TRAINED[step]]
    done = mlops(trained, *argv, "--json", timeout=900)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert isinstance(result, dict) and result


@pytest.mark.slow
def test_serve_prints_json_events(trained: Path, mlops: Any, env: dict[str, str]) -> None:
    assert mlops(trained, "evaluate", timeout=900).returncode in (0, 1)  # bless if it passes
    process = subprocess.Popen(
        [sys.executable, "-m", "mlops_sessions", *TRAINED["serve"], "--json"],
        cwd=trained,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        # JSON Lines: the ready event is one line, printed as soon as the server is ready.
        ready = json.loads(process.stdout.readline())
        assert ready["event"] == "ready" and ready["url"].startswith("http://127.0.0.1:")
    finally:
        process.terminate()
        rest, _ = process.communicate(timeout=60)
    events = [ready, *(json.loads(line) for line in rest.splitlines() if line.strip())]
    assert [e["event"] for e in events] == ["ready", "stopped"]
