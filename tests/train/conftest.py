"""Fixtures for training tests: a throw-away project with a tiny real Keras model.

``toy_project(tmp_path)`` writes mlops.yaml, a data CSV and the model code into a temp dir
and returns a :class:`Project` whose ``train(...)`` runs the real ``mlops train`` front end
in-process (TensorFlow is imported once per test session, not once per test).
"""

from __future__ import annotations

import json
import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import yaml

TOY_MODEL = '''
"""A tiny real Keras classifier for tests; extra entrypoints exercise the error paths."""

import time
from pathlib import Path

import numpy as np

from mlops_sessions import TrainContext, TrainResult


def load(ctx):
    table = np.loadtxt(ctx.inputs["toy"], delimiter=",", dtype=np.float32)
    return table[:, :-1], table[:, -1].astype(np.int64)


def _trace(ctx):
    trace = ctx.params.get("trace")
    if trace:
        with open(trace, "a") as handle:
            handle.write("trained\\n")


def build(ctx, x):
    import keras

    return keras.Sequential(
        [
            keras.Input(shape=(x.shape[1],), name="features"),
            keras.layers.Dense(int(ctx.params.get("hidden", 8)), activation="relu"),
            keras.layers.Dropout(0.1),
            keras.layers.Dense(2, activation="softmax"),
        ]
    )


def train(ctx: TrainContext):
    import keras

    _trace(ctx)
    x, y = load(ctx)
    model = build(ctx, x)
    model.compile(optimizer=keras.optimizers.Adam(float(ctx.params.get("lr", 0.01))),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    callbacks = list(ctx.callbacks)
    delay = float(ctx.params.get("sleep", 0))
    if delay:
        callbacks.append(keras.callbacks.LambdaCallback(
            on_epoch_end=lambda epoch, logs: time.sleep(delay)))
    model.fit(x, y, epochs=int(ctx.params.get("epochs", 2)), batch_size=32,
              validation_split=0.2, shuffle=True, verbose=0, callbacks=callbacks)
    return model


def raises(ctx):
    raise ValueError("learning rate must be positive")


def returns_nothing(ctx):
    return None


def writes_own(ctx):
    import tensorflow as tf

    class Doubler(tf.Module):
        def __init__(self):
            self.scale = tf.Variable(2.0)

        @tf.function(input_signature=[tf.TensorSpec([None, 4], tf.float32, name="x")])
        def serve(self, x):
            return {"y": x * self.scale}

    module = Doubler()
    tf.saved_model.save(module, str(ctx.model_dir), signatures={"serving_default": module.serve})
    return TrainResult(history={"loss": [0.5, 0.25]})


def no_signature(ctx):
    import tensorflow as tf

    class Bare(tf.Module):
        def __init__(self):
            self.weight = tf.Variable(1.0)

    return Bare()


def fixed_batch(ctx):
    import tensorflow as tf

    class Fixed(tf.Module):
        def __init__(self):
            self.weight = tf.Variable(1.0)

        @tf.function(input_signature=[tf.TensorSpec([1, 4], tf.float32, name="x")])
        def __call__(self, x):
            return {"y": x * self.weight}

    return Fixed()


def returns_number(ctx):
    return 42


not_a_function = 3
'''


@dataclass
class Project:
    root: Path
    config: Path

    @property
    def store(self) -> Path:
        return self.root / ".mlops"

    def runs(self) -> list[dict[str, Any]]:
        found = sorted((self.store / "runs").glob("*/run.json"))
        return [json.loads(p.read_text()) for p in found]

    def tmp_entries(self) -> list[Path]:
        tmp = self.store / "tmp"
        return sorted(tmp.iterdir()) if tmp.is_dir() else []

    def train(self, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, Any, str]:
        """Run `mlops train --json ...` in-process; returns (exit code, JSON or None, stderr)."""
        from mlops_sessions.frontends.cli import main

        capsys.readouterr()
        code = main(["train", "-c", str(self.config), "--json", *args])
        out, err = capsys.readouterr()
        return code, (json.loads(out) if out.strip() else None), err


def write_data(path: Path, rows: int = 240, seed: int = 0) -> None:
    """A linearly separable 4-feature, 2-class table: learnable in a couple of epochs."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, 4)).astype(np.float32)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savetxt(path, np.column_stack([x, y]), delimiter=",", fmt="%.6f")


def make_project(
    root: Path,
    *,
    entrypoint: str = "toy_model:train",
    params: dict[str, Any] | None = None,
    train_extra: dict[str, Any] | None = None,
    seed: int = 7,
) -> Project:
    root.mkdir(parents=True, exist_ok=True)
    (root / "src").mkdir(exist_ok=True)
    (root / "src" / "toy_model.py").write_text(textwrap.dedent(TOY_MODEL))
    write_data(root / "data" / "toy.csv")
    (root / "requirements.lock").write_text("numpy==2.4.6\n")
    train: dict[str, Any] = {
        "source": "src",
        "entrypoint": entrypoint,
        "inputs": ["toy"],
        "seed": seed,
        "params": {"epochs": 2, "hidden": 8, "lr": 0.01, **(params or {})},
    }
    train.update(train_extra or {})
    doc = {
        "apiVersion": "mlops/v1alpha1",
        "project": {"name": "toy"},
        "python": {"requirements": "requirements.lock"},
        "data": {"toy": {"path": "data/toy.csv"}},
        "models": {
            "toy": {
                "train": train,
                "evaluate": {
                    "dataset": "toy_model:load",
                    "metrics": ["accuracy"],
                    "thresholds": {"accuracy": {"min": 0.5}},
                },
            }
        },
    }
    config = root / "mlops.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return Project(root, config)


@pytest.fixture
def toy_project(tmp_path: Path) -> Callable[..., Project]:
    def factory(name: str = "proj", **kwargs: Any) -> Project:
        return make_project(tmp_path / name, **kwargs)

    return factory
