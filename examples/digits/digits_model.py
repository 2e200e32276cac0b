"""Example model code for the repository's own mlops.yaml: a dense classifier for the 8x8
handwritten digits that ship inside scikit-learn (no download).

It follows the mlops-sessions contract: ``train(ctx)`` returns a Keras model, and the data
functions take a DataContext and return ``(features, labels)``.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np

from mlops_sessions import DataContext, TrainContext


def _load(path: Path) -> tuple[np.ndarray, np.ndarray]:
    with gzip.open(path, "rt") as handle:
        table = np.loadtxt(handle, delimiter=",", dtype=np.float32)
    features = table[:, :-1] / 16.0  # pixel intensities are 0..16
    labels = table[:, -1].astype(np.int64)
    return features, labels


def _split(ctx: DataContext) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A fixed, stratified 80/20 split: the held-out set never changes with the training seed."""
    features, labels = _load(ctx.inputs["digits"])
    rng = np.random.default_rng(int(ctx.params.get("split_seed", 0)))
    test_mask = np.zeros(len(labels), dtype=bool)
    for digit in np.unique(labels):
        members = np.flatnonzero(labels == digit)
        chosen = rng.choice(members, size=len(members) // 5, replace=False)
        test_mask[chosen] = True
    return features[~test_mask], labels[~test_mask], features[test_mask], labels[test_mask]


def training_data(ctx: DataContext) -> tuple[np.ndarray, np.ndarray]:
    x_train, y_train, _, _ = _split(ctx)
    return x_train, y_train


def heldout(ctx: DataContext) -> tuple[np.ndarray, np.ndarray]:
    _, _, x_test, y_test = _split(ctx)
    return x_test, y_test


def train(ctx: TrainContext):  # type: ignore[no-untyped-def]
    import keras

    x_train, y_train = training_data(ctx)
    params = ctx.params
    # One worker: TensorFlow's default strategy; train.workers > 1: multi-worker mirrored.
    with ctx.strategy.scope():
        model = keras.Sequential(
            [
                keras.Input(shape=(x_train.shape[1],), name="pixels"),
                keras.layers.Dense(int(params.get("hidden_units", 64)), activation="relu"),
                keras.layers.Dropout(float(params.get("dropout", 0.1))),
                keras.layers.Dense(10, activation="softmax", name="probabilities"),
            ]
        )
        model.compile(
            optimizer=keras.optimizers.Adam(
                learning_rate=float(params.get("learning_rate", 0.005))
            ),
            loss="sparse_categorical_crossentropy",
            metrics=["accuracy"],
        )
    model.fit(
        x_train,
        y_train,
        epochs=int(params.get("epochs", 30)),
        batch_size=int(params.get("batch_size", 32)),
        validation_split=0.1,
        shuffle=True,
        verbose=0,
        callbacks=list(ctx.callbacks),
    )
    return model
