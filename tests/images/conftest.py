"""Fixtures for image tests: a real Docker engine, a real registry, a real base image.

- ``docker_env`` (session): the suite's one dockerd and registry (tests/fixtures/docker.py,
  shared with the signing tests through tests/conftest.py).
- ``make_project`` (function): a throw-away git project with mlops.yaml, a lock, model code
  and a store holding a trained (optionally blessed) run. Pure planner tests use a small
  stand-in SavedModel directory; Docker tests pass ``real_model`` (a tiny Keras export).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.fixtures.docker import BASE_IMAGE, DockerEnv, free_port

__all__ = ["BASE_IMAGE", "DockerEnv", "free_port"]  # still importable from here

MODEL = "tiny"
SMALL_LOCK = "numpy==2.4.6\n"  # a lock without TensorFlow: builds in under a minute


# --- projects ---------------------------------------------------------------------------------
@pytest.fixture
def docker_client(docker_env: DockerEnv) -> Iterator[Any]:
    with contextlib.closing(docker_env.client()) as client:
        yield client


@pytest.fixture(scope="session")
def real_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny real Keras SavedModel: 4 float32 features -> 2-class softmax."""
    directory = tmp_path_factory.mktemp("keras") / "model"
    code = (
        "import sys, keras\n"
        "keras.utils.set_random_seed(1)\n"
        "m = keras.Sequential([keras.Input(shape=(4,), name='features'),"
        " keras.layers.Dense(2, activation='softmax')])\n"
        "m.export(sys.argv[1], verbose=False)\n"
    )
    # A subprocess: TensorFlow stays out of the test process (and its warnings filters).
    subprocess.run([sys.executable, "-c", code, str(directory)], check=True, capture_output=True)
    return directory


def _stand_in_model(directory: Path) -> None:
    """Files shaped like a SavedModel; enough for planners, which only hash files."""
    (directory / "variables").mkdir(parents=True)
    (directory / "saved_model.pb").write_bytes(b"\x08\x01stand-in graph")
    (directory / "variables" / "variables.index").write_bytes(b"index")


@dataclass
class Project:
    root: Path
    config: Path
    run_id: str

    def write(self, relative: str, text: str) -> None:
        path = self.root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)

    def commit(self, message: str = "change") -> None:
        git(self.root, "add", "-A")
        git(self.root, "commit", "-q", "-m", message)

    def mlops(self, *argv: str) -> tuple[int, dict[str, Any] | None, str]:
        """Run `mlops <argv> -c <config> --json` in-process: (exit code, JSON, stderr text)."""
        from mlops_sessions.frontends.cli import main

        out, err = _Capture(), _Capture()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main([*argv, "-c", str(self.config), "--json"])
        text = out.getvalue()
        return code, (json.loads(text) if text.strip() else None), err.getvalue()


class _Capture:
    """A text stream that keeps what was written (build progress is long; keep all)."""

    def __init__(self) -> None:
        self.parts: list[str] = []

    def write(self, text: str) -> int:
        self.parts.append(text)
        return len(text)

    def flush(self) -> None:
        return None

    def getvalue(self) -> str:
        return "".join(self.parts)


def git(root: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=test@example.com", "-c", "user.name=test", *args],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


ProjectFactory = Callable[..., Project]


@pytest.fixture
def make_project(tmp_path: Path) -> ProjectFactory:
    def make(
        *,
        image: dict[str, Any] | None = None,
        lock: str = SMALL_LOCK,
        blessed: bool = True,
        model_dir: Path | None = None,
        commit: bool = True,
        name: str = "proj",
    ) -> Project:
        from mlops_sessions.records.store import Store

        root = tmp_path / name
        (root / "src").mkdir(parents=True)
        (root / "src" / "tiny_model.py").write_text('"""Model code."""\n\nVERSION = 1\n')
        (root / "requirements.lock").write_text(lock)
        spec: dict[str, Any] = {
            "kind": "serve",
            "repository": "tiny-serve",
            "base": {"image": BASE_IMAGE},
            "size_budget_mb": 2000,
        }
        spec.update(image or {})
        doc = {
            "apiVersion": "mlops/v1alpha1",
            "project": {"name": "tiny", "description": "image tests"},
            "python": {"requirements": "requirements.lock"},
            "images": {"serve": spec},
            "models": {
                MODEL: {
                    "image": "serve",
                    "train": {"source": "src", "entrypoint": "tiny_model:train"},
                }
            },
        }
        config = root / "mlops.yaml"
        config.write_text(yaml.safe_dump(doc, sort_keys=False))
        store = Store(root / ".mlops")
        run_id = "20260101T000000Z-0123abcd"
        with store.staging(store.run_dir(run_id)) as stage:
            if model_dir is not None:
                shutil.copytree(model_dir, stage / "model")
            else:
                _stand_in_model(stage / "model")
            record = {
                "run_id": run_id,
                "model": MODEL,
                "status": "complete",
                "model_dir": "model",
                "model_hash": "ab" * 32,
                "finished_at": "2026-01-01T00:00:00Z",
                "lineage": {"git": {"commit": None, "dirty": None, "branch": None}},
            }
            (stage / "run.json").write_text(json.dumps(record))
        if blessed:
            store.bless(MODEL, {"run_id": run_id, "model_hash": "ab" * 32})
        git(root, "init", "-q")
        if commit:
            git(root, "add", "-A")
            git(root, "commit", "-q", "-m", "initial")
        return Project(root, config, run_id)

    return make
