"""Training and testing inside the train image (``train.container: true``), for real.

One project, built once per module: the repository's digits example code, the repository's
lock (TensorFlow from hermetic wheels) and a train image on the debootstrap base. The data
input is the digits CSV inside scikit-learn's installed package, so it lies outside the
project and needs a mount of its own. Every `mlops` call is a subprocess, as a user runs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import run_mlops
from tests.images.conftest import BASE_IMAGE, DockerEnv, git

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "digits" / "digits_model.py"
TRAIN_TIMEOUT_S = 1500  # a cold train image build installs TensorFlow


def _model(image: str | None, **train: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "source": "src",
        "entrypoint": "digits_model:train",
        "inputs": ["digits"],
        "seed": 7,
        "params": {
            "epochs": 2,
            "hidden_units": 16,
            "dropout": 0.0,
            "learning_rate": 0.01,
            "batch_size": 64,
            "split_seed": 0,
        },
    }
    if image is not None:
        spec.update(container=True, image=image)
    spec.update(train)
    return {"train": spec}


@pytest.fixture(scope="module")
def project(docker_env: DockerEnv, tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("container") / "digits"
    (root / "src").mkdir(parents=True)
    shutil.copy(EXAMPLE, root / "src" / "digits_model.py")
    (root / "src" / "broken_model.py").write_text(
        '"""Model code that fails the way team code does."""\n\n\n'
        "def train(ctx):\n"
        "    raise ValueError(f\"learning_rate {ctx.params['learning_rate']} is too high\")\n"
    )
    shutil.copy(REPO / "requirements.lock", root / "requirements.lock")
    (root / "tests").mkdir()
    (root / "tests" / "test_where.py").write_text(
        '"""Shows where the suite runs."""\n\nfrom pathlib import Path\n\n\n'
        "def test_runs_in_the_train_image():\n"
        '    assert Path("/opt/mlops/venv/bin/python").exists()\n'
        '    assert Path.cwd() == Path("/workspace")\n\n\n'
        "def test_imports_the_model_code():\n"
        "    import digits_model\n\n"
        "    assert callable(digits_model.train)\n\n\n"
        "def test_sees_no_network():\n"
        "    import socket\n\n"
        '    assert socket.if_nameindex() == [(1, "lo")]\n'
    )
    image = {"kind": "train", "repository": "digits-train", "base": {"image": BASE_IMAGE}}
    doc = {
        "apiVersion": "mlops/v1alpha1",
        "project": {"name": "digits", "description": "container training tests"},
        "python": {"requirements": "requirements.lock"},
        "tests": {"path": "tests"},
        "data": {
            "digits": {"package": "sklearn", "resource": "datasets/data/digits.csv.gz"},
        },
        "images": {
            "trainer": image,
            # The same base declared as CUDA-capable: the engine here has no GPU runtime.
            "gputrainer": {**image, "base": {"image": BASE_IMAGE, "gpu": True}},
        },
        "models": {
            "boxed": _model("trainer"),
            "venv": _model(None),
            "broken": _model("trainer", entrypoint="broken_model:train"),
            "gpu-strict": _model("gputrainer", resources={"gpu": 1}),
            "gpu-fallback": _model("gputrainer", resources={"gpu": 1}, allow_cpu_fallback=True),
        },
    }
    (root / "mlops.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    git(root, "init", "-q")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return root


def mlops(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_mlops(root, *args, timeout=TRAIN_TIMEOUT_S)


def train(root: Path, *args: str) -> dict[str, Any]:
    done = mlops(root, "train", *args, "--json")
    assert done.returncode == 0, done.stderr[-4000:]
    (run,) = json.loads(done.stdout)["runs"]
    return dict(run)


def run_record(root: Path, summary: dict[str, Any]) -> dict[str, Any]:
    return dict(json.loads((Path(summary["run_dir"]) / "run.json").read_text()))


def test_dry_run_shows_the_container_and_touches_nothing(project: Path, docker_client: Any) -> None:
    images_before = {image.id for image in docker_client.images.list(all=True)}
    done = mlops(project, "train", "boxed", "--dry-run")
    assert done.returncode == 0, done.stderr
    assert "container: image trainer (digits-train:" in done.stdout
    assert "command: python -m mlops_sessions.executors.tf.train" in done.stdout
    assert f"{project} -> /workspace (read-only)" in done.stdout
    assert "-> /mlops/mounts/0-digits.csv.gz (read-only)" in done.stdout
    assert not (project / ".mlops" / "runs").exists()
    assert {image.id for image in docker_client.images.list(all=True)} == images_before


def test_container_run_matches_the_venv_run(project: Path, docker_client: Any) -> None:
    boxed = train(project, "boxed")
    assert not boxed["reused"]
    record = run_record(project, boxed)
    run_dir = Path(boxed["run_dir"])
    assert (run_dir / "model" / "saved_model.pb").is_file()
    # Written by the container as the caller, not as the image's service user.
    assert (run_dir / "model" / "saved_model.pb").stat().st_uid == os.getuid()
    inside = json.loads((run_dir / "train-spec.json").read_text())
    assert inside["source"] == "/workspace/src"
    assert inside["inputs"] == {"digits": "/mlops/mounts/0-digits.csv.gz"}
    container = record["lineage"]["environment"]["container"]
    image = docker_client.images.get(container["image_id"])
    assert image.labels["org.mlops-sessions.kind"] == "train"
    assert record["lineage"]["image"]["environment_digest"] == container["environment_digest"]
    assert len(record["history"]["loss"]) == 2
    assert not docker_client.containers.list(all=True)  # removed after the run

    # The same code, params, seed and lock in the venv give the very same weights.
    in_venv = run_record(project, train(project, "venv"))
    assert in_venv["weights_hash"] == record["weights_hash"]
    assert in_venv["signature"] == record["signature"]

    trace = mlops(project, "lineage", boxed["run_id"])
    assert trace.returncode == 0, trace.stderr
    assert re.search(r"trained in +image digits-train:\S+ \(sha256:", trace.stdout), trace.stdout

    # Unchanged inputs: the stored run is reused and no container starts.
    again = train(project, "boxed")
    assert again["reused"] and again["run_id"] == boxed["run_id"]


def test_failing_training_names_the_error_and_leaves_no_run(project: Path) -> None:
    done = mlops(project, "train", "broken")
    assert done.returncode == 1
    assert "learning_rate 0.01 is too high" in done.stderr
    assert f"{project}/src/broken_model.py" in done.stderr  # the host path, not /workspace
    assert "(in image 'trainer')" in done.stderr
    assert "Traceback" not in done.stderr
    records = [json.loads(p.read_text()) for p in project.glob(".mlops/runs/*/run.json")]
    assert "broken" not in {record["model"] for record in records}


def test_gpu_request_on_an_engine_without_gpus(project: Path) -> None:
    done = mlops(project, "train", "gpu-strict")
    assert done.returncode == 1
    assert "cannot give the container 1 GPU(s)" in done.stderr
    assert "install the NVIDIA Container Toolkit" in done.stderr
    assert "train.allow_cpu_fallback: true" in done.stderr

    fallback = train(project, "gpu-fallback")
    record = run_record(project, fallback)
    container = record["lineage"]["environment"]["container"]
    assert container["gpus_requested"] == 1 and container["gpus_given"] == 0
    assert any("training on the CPU" in w for w in record["warnings"])


def test_suite_runs_in_the_train_image(project: Path) -> None:
    done = mlops(project, "test", "boxed", "--json")
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    assert result["image"] == "trainer"
    assert result["counts"]["passed"] == 3
    assert result["python"].startswith("image digits-train:")
    # A recorded pass is reused; a failure in the image fails the step.
    again = json.loads(mlops(project, "test", "boxed", "--json").stdout)
    assert again["cached"] is True
    failing = project / "tests" / "test_failing.py"
    failing.write_text("def test_fails():\n    assert 1 == 2\n")
    try:
        failed = mlops(project, "test", "boxed")
    finally:
        failing.unlink()
    assert failed.returncode == 1
    assert "1 test(s) failed" in failed.stderr
