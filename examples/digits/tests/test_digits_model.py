"""The example team's own tests: `nox -s test` runs them in the training environment
before `train`. They check the data functions the model and the gate depend on."""

from __future__ import annotations

import importlib.resources
from pathlib import Path

import numpy as np
import pytest
from digits_model import heldout, training_data

from mlops_sessions import DataContext


@pytest.fixture
def ctx() -> DataContext:
    digits = Path(str(importlib.resources.files("sklearn").joinpath("datasets/data/digits.csv.gz")))
    return DataContext(model="digits", params={"split_seed": 0}, seed=0, inputs={"digits": digits})


def test_split_is_disjoint_stratified_and_complete(ctx: DataContext) -> None:
    x_train, y_train = training_data(ctx)
    x_test, y_test = heldout(ctx)
    assert len(x_train) + len(x_test) == 1797
    assert set(np.unique(y_test)) == set(range(10)), "every digit must be in the held-out set"
    shares = np.bincount(y_test, minlength=10) / np.bincount(np.concatenate([y_train, y_test]))
    assert np.all((shares > 0.15) & (shares < 0.25)), shares
    train_rows = {row.tobytes() for row in x_train}
    assert sum(row.tobytes() in train_rows for row in x_test) < 5  # a few digits repeat exactly


def test_features_are_scaled_to_unit_range(ctx: DataContext) -> None:
    x_train, _ = training_data(ctx)
    assert x_train.dtype == np.float32
    assert float(x_train.min()) >= 0.0 and float(x_train.max()) <= 1.0


def test_heldout_set_does_not_depend_on_the_training_seed(ctx: DataContext) -> None:
    other = DataContext(model="digits", params={"split_seed": 0}, seed=99, inputs=ctx.inputs)
    assert np.array_equal(heldout(ctx)[1], heldout(other)[1])
