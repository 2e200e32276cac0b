"""The numeric pieces of tf_evaluate that need no model: PSI, probabilities, metrics."""

from __future__ import annotations

import numpy as np
import pytest

from mlops_sessions.errors import StepError
from mlops_sessions.executors.tf.evaluate import (
    class_probabilities,
    psi_per_feature,
    quality_metrics,
)

pytestmark = pytest.mark.filterwarnings("error")


def test_psi_is_near_zero_for_one_distribution_and_large_for_a_shift() -> None:
    rng = np.random.default_rng(1)
    reference = rng.normal(size=(5000, 3))
    same = rng.normal(size=(5000, 3))
    shifted = same + np.array([0.0, 0.5, 2.0])
    psi_same = psi_per_feature(reference, same, bins=10)
    assert list(psi_same) == ["f0", "f1", "f2"]
    assert max(psi_same.values()) < 0.02
    psi_shift = psi_per_feature(reference, shifted, bins=10)
    assert psi_shift["f0"] < 0.02
    assert 0.1 < psi_shift["f1"] < 0.5  # a moderate shift
    assert psi_shift["f2"] > 1.0  # a major one


def test_psi_matches_the_formula_on_a_hand_computed_case() -> None:
    # Reference quartiles split [0..7] into 4 bins of two values each (edges 2, 4, 6 after
    # ties); current puts half its mass in the first bin and half in the last.
    reference = np.arange(8, dtype=float).reshape(-1, 1)
    current = np.array([0.0, 1.0, 6.0, 7.0]).reshape(-1, 1)
    ref_share = np.array([0.25, 0.25, 0.25, 0.25])
    cur_share = np.maximum(np.array([0.5, 0.0, 0.0, 0.5]), 1e-4)
    expected = float(np.sum((cur_share - ref_share) * np.log(cur_share / ref_share)))
    assert psi_per_feature(reference, current, bins=4)["f0"] == pytest.approx(expected)


def test_psi_of_a_constant_feature() -> None:
    reference = np.zeros((100, 1))
    assert psi_per_feature(reference, np.zeros((50, 1)), bins=10)["f0"] == pytest.approx(0.0)
    assert psi_per_feature(reference, np.ones((50, 1)), bins=10)["f0"] > 5


def test_psi_flattens_images_and_refuses_other_shapes() -> None:
    reference = np.random.default_rng(0).random((40, 2, 2))
    assert len(psi_per_feature(reference, reference, bins=5)) == 4
    with pytest.raises(
        StepError, match="reference data has 4 features per example but the evaluation data has 3"
    ):
        psi_per_feature(reference, np.zeros((10, 3)), bins=5)


def test_class_probabilities_accepts_softmax_and_sigmoid_and_refuses_logits() -> None:
    soft = np.array([[0.2, 0.8], [0.9, 0.1]])
    assert np.allclose(class_probabilities(soft), soft)
    sigmoid = np.array([[0.3], [0.6]])
    assert np.allclose(class_probabilities(sigmoid), [[0.7, 0.3], [0.4, 0.6]])
    with pytest.raises(StepError, match="end the model with a softmax"):
        class_probabilities(np.array([[2.0, -1.0, 0.5]]))
    with pytest.raises(StepError, match="end the model with a sigmoid"):
        class_probabilities(np.array([[3.2]]))


def test_quality_metrics_match_sklearn_definitions() -> None:
    labels = np.array([0, 1, 2, 2, 1, 0])
    probs = np.array(
        [
            [0.8, 0.1, 0.1],
            [0.1, 0.7, 0.2],
            [0.2, 0.2, 0.6],
            [0.5, 0.1, 0.4],
            [0.3, 0.4, 0.3],
            [0.6, 0.3, 0.1],
        ]
    )
    values, confusion = quality_metrics(
        ["accuracy", "precision", "recall", "f1", "auc", "loss"], labels, probs
    )
    assert values["accuracy"] == pytest.approx(5 / 6)
    # Class 2 has one of two right: recall macro = (1 + 1 + 0.5) / 3.
    assert values["recall"] == pytest.approx(2.5 / 3)
    assert values["loss"] == pytest.approx(-np.mean(np.log(probs[np.arange(6), labels])))
    assert 0.5 < values["auc"] <= 1.0
    assert confusion == [[2, 0, 0], [0, 2, 0], [1, 0, 1]]


def test_binary_metrics_and_single_class_auc() -> None:
    labels = np.array([0, 1, 1, 0])
    probs = class_probabilities(np.array([[0.1], [0.9], [0.4], [0.2]]))
    values, _ = quality_metrics(["accuracy", "precision", "auc"], labels, probs)
    assert values == {"accuracy": 0.75, "precision": 1.0, "auc": 1.0}
    with pytest.raises(StepError, match="AUC needs at least two classes"):
        quality_metrics(["auc"], np.array([1, 1]), class_probabilities(np.array([[0.9], [0.8]])))


def test_labels_outside_the_model_classes_are_refused() -> None:
    with pytest.raises(StepError, match=r"labels \[3\] are outside the model's 3 output classes"):
        quality_metrics(["accuracy"], np.array([0, 3]), np.full((2, 3), 1 / 3))
