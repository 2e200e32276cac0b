"""Fixtures for the evaluation tests: a tiny project on disk with real exported SavedModels.

Small Keras models are trained once per session on a synthetic 3-class problem and
exported with ``model.export(dir)``: a good one, a weak one (never fitted, so it guesses)
and one that outputs logits instead of probabilities.
Each test gets a fresh project (a git repository with mlops.yaml, team code and a data file)
and places runs in its store in the documented run.json format, recorded in the train cache
under the key ``plan_training`` computes — so ``mlops evaluate`` finds them as the current run.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mlops_sessions.config.loader import load
from mlops_sessions.frontends import cli
from mlops_sessions.hashing import FileHashCache
from mlops_sessions.records.store import Store, write_json_atomic

FEATURES = 8
CLASSES = 3

TEAM_CODE = '''
"""Team code of the test project: data functions and custom metrics."""
import numpy as np


def _load(ctx):
    table = np.loadtxt(ctx.inputs["points"], delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


def training_data(ctx):
    x, y = _load(ctx)
    return x[:240], y[:240]


def heldout(ctx):
    x, y = _load(ctx)
    return x[240:], y[240:]


def shifted(ctx):
    x, y = heldout(ctx)
    return x + 4.0, y


def failing_data(ctx):
    return np.loadtxt(ctx.inputs["points"] / "missing.csv")


def unlabelled(ctx):
    x, _ = heldout(ctx)
    return x


def count(y_true, y_prob):
    return len(y_true)


def mean_true_prob(y_true, y_prob):
    return float(np.mean(y_prob[np.arange(len(y_true)), y_true]))


def broken(y_true, y_prob):
    raise ValueError("labels and probabilities disagree")


def not_a_number(y_true, y_prob):
    return "high"


def train(ctx):
    raise RuntimeError("these tests place runs in the store themselves")
'''

BASE_YAML = """\
apiVersion: mlops/v1alpha1
project: {{name: tiny}}
data:
  points: {{path: data/points.csv}}
models:
  tiny:
    train:
      source: code
      entrypoint: tiny_model:train
      inputs: [points]
      seed: 7
      params: {{epochs: 3}}
    evaluate:
{evaluate}
"""

DEFAULT_EVALUATE = """\
dataset: tiny_model:heldout
metrics: [accuracy, precision, recall, f1, auc, loss]
latency: {batch_sizes: [1, 8], warmup: 1, runs: 5}
drift: {reference: tiny_model:training_data, bins: 10}
baseline: blessed
allow_first_run: true
thresholds:
  accuracy: {min: 0.9, vs_baseline: {max_regression: 0.02}}
  loss: {max: 0.5}
  model_size_mb: {max: 20}
"""


def _points() -> np.ndarray:
    """300 points in three well-separated blobs; rows shuffled with a fixed seed."""
    rng = np.random.default_rng(0)
    centres = rng.normal(0.0, 3.0, size=(CLASSES, FEATURES))
    labels = np.repeat(np.arange(CLASSES), 100)
    points = centres[labels] + rng.normal(0.0, 0.6, size=(len(labels), FEATURES))
    order = rng.permutation(len(labels))
    return np.column_stack([points[order], labels[order]]).astype(np.float32)


@dataclass(frozen=True)
class Exported:
    directory: Path
    history: dict[str, list[float]]


@pytest.fixture(scope="session")
def exported_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Exported]:
    """'good' (fitted) and 'weak' (never fitted) SavedModels, exported once per session."""
    import keras

    root = tmp_path_factory.mktemp("exported")
    table = _points()
    x, y = table[:240, :-1], table[:240, -1].astype(np.int64)
    out = {}
    # 'logits' ends without softmax: its outputs are not probabilities and must be refused.
    for kind, epochs in (("good", 40), ("weak", 0), ("logits", 0)):
        keras.utils.set_random_seed(3)
        model = keras.Sequential(
            [
                keras.Input(shape=(FEATURES,), name="features"),
                keras.layers.Dense(8, activation="relu"),
                keras.layers.Dense(
                    CLASSES, activation=None if kind == "logits" else "softmax", name="out"
                ),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(0.05),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
        history: dict[str, list[float]] = {}
        if epochs:
            fit = model.fit(x, y, epochs=epochs, batch_size=32, validation_split=0.1, verbose=0)
            history = {k: [float(v) for v in vs] for k, vs in fit.history.items()}
        model.export(str(root / kind), verbose=False)
        out[kind] = Exported(root / kind, history)
    return out


def _git(root: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True, check=True)
    return done.stdout.strip()


@dataclass
class Project:
    root: Path
    exported: dict[str, Exported]
    capsys: pytest.CaptureFixture[str]

    @property
    def config_path(self) -> Path:
        return self.root / "mlops.yaml"

    @property
    def store(self) -> Store:
        return Store(self.root / ".mlops")

    def write_config(self, evaluate: str) -> None:
        body = textwrap.indent(evaluate, " " * 6)
        self.config_path.write_text(BASE_YAML.format(evaluate=body))

    def commit(self) -> str:
        _git(self.root, "add", "-A")
        _git(self.root, "commit", "-q", "-m", "change")
        return _git(self.root, "rev-parse", "HEAD")

    def add_run(
        self, kind: str = "good", *, current: bool = True, run_id: str | None = None
    ) -> dict[str, Any]:
        """Place an exported model in the store as a complete run (documented format)."""
        from mlops_sessions.planning.training import plan_training

        config = load(self.config_path)
        model = config.models["tiny"]
        plan = plan_training(config, model)
        store = self.store
        count = len(store.list_runs())
        run_id = run_id or f"20260101T0000{count:02d}Z-{plan.key[:8]}"
        run_dir = store.run_dir(run_id)
        shutil.copytree(self.exported[kind].directory, run_dir / "model")
        commit = _git(self.root, "rev-parse", "HEAD")
        record = {
            "run_id": run_id,
            "model": "tiny",
            "key": plan.key,
            "status": "complete",
            "started_at": f"2026-01-01T00:00:{count:02d}+00:00",
            "finished_at": f"2026-01-01T00:00:{count:02d}+00:00",
            "duration_s": 1.0,
            "params": dict(plan.params),
            "seed": plan.seed,
            "inputs": {
                n: {"path": str(p), "sha256": plan.data_hashes[n]} for n, p in plan.inputs.items()
            },
            "model_dir": "model",
            "model_hash": FileHashCache(None).tree(run_dir / "model"),
            "signature": {
                "name": "serving_default",
                "inputs": {"features": {"dtype": "float32", "shape": [None, FEATURES]}},
                "outputs": {"output_0": {"dtype": "float32", "shape": [None, CLASSES]}},
            },
            "history": self.exported[kind].history,
            "lineage": {
                **plan.lineage(),
                "git": {"commit": commit, "dirty": False, "branch": "main"},
                "environment": {
                    "python": "3.11",
                    "tensorflow": "2.21.0",
                    "platform": "linux",
                    "devices": ["CPU"],
                },
            },
        }
        write_json_atomic(run_dir / "run.json", record)
        if current:
            store.record_cache("train", plan.key, run_id)
        return record

    def cli(self, *args: str) -> tuple[int, str, str]:
        self.capsys.readouterr()
        code = cli.main([args[0], "-c", str(self.config_path), *args[1:]])
        captured = self.capsys.readouterr()
        return code, captured.out, captured.err

    def evaluate_json(self, *args: str) -> tuple[int, dict[str, Any]]:
        code, out, err = self.cli("evaluate", "--json", *args)
        assert out, err
        return code, json.loads(out)


@pytest.fixture
def make_project(
    tmp_path: Path, exported_models: dict[str, Exported], capsys: pytest.CaptureFixture[str]
) -> Iterator[Callable[..., Project]]:
    def make(evaluate: str = DEFAULT_EVALUATE) -> Project:
        root = tmp_path / "proj"
        (root / "code").mkdir(parents=True)
        (root / "data").mkdir()
        (root / "code" / "tiny_model.py").write_text(TEAM_CODE)
        np.savetxt(root / "data" / "points.csv", _points(), delimiter=",", fmt="%.6f")
        _git(root, "init", "-q", "-b", "main")
        _git(root, "config", "user.email", "tests@example.com")
        _git(root, "config", "user.name", "tests")
        project = Project(root, exported_models, capsys)
        project.write_config(evaluate)
        project.commit()
        return project

    make.default = DEFAULT_EVALUATE  # type: ignore[attr-defined]
    yield make
