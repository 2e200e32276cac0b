"""The server's live counters that a rollout judges a canary on: predicted classes and
input bins against the training reference, exported in Prometheus's text format and
bounded in series count whatever the model outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from mlops_sessions.planning import drift
from mlops_sessions.server.live import MAX_CLASSES, DriftReference, LiveStats, ReferenceError

LABELS = {"model": "digits", "version": "1", "track": "canary"}


def _samples(stats: LiveStats) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    registry = CollectorRegistry()
    registry.register(stats)
    text = generate_latest(registry).decode()
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[sample.name, tuple(sorted(sample.labels.items()))] = sample.value
    return out


def _classes(stats: LiveStats) -> dict[str, float]:
    return {
        dict(labels)["class"]: value
        for (name, labels), value in _samples(stats).items()
        if name == "mlops_serve_predictions_total"
    }


def test_classifier_rows_are_counted_by_argmax() -> None:
    stats = LiveStats(LABELS)
    probs = np.array([[0.9, 0.1, 0.0], [0.2, 0.7, 0.1], [0.1, 0.8, 0.1]])
    stats.observe(None, probs)
    stats.observe(None, probs[:1])
    assert _classes(stats) == {"0": 2.0, "1": 2.0}
    labels = next(dict(k[1]) for k in _samples(stats) if k[0] == "mlops_serve_predictions_total")
    assert labels["track"] == "canary" and labels["model"] == "digits"


def test_a_single_output_is_counted_in_fixed_bins() -> None:
    stats = LiveStats(LABELS)
    stats.observe(None, np.array([[-0.5], [0.05], [0.55], [0.99], [1.0], [7.0], [np.nan]]))
    assert _classes(stats) == {"lt0": 1, "0.0": 1, "0.5": 1, "0.9": 1, "ge1": 2}


def test_inputs_are_counted_in_the_reference_bins(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    reference = rng.integers(0, 17, size=(500, 4)).astype(float)
    reference[:, 3] = 5.0  # a constant feature: bins below / at / above its value
    table = drift.reference_table(reference, bins=10)
    path = tmp_path / "drift_reference.json"
    path.write_text(json.dumps(table))
    stats = LiveStats(LABELS, DriftReference.load(path))
    stats.observe(reference[:100], np.zeros((100, 10)))
    samples = _samples(stats)
    f3 = {
        dict(labels)["bin"]: value
        for (name, labels), value in samples.items()
        if name == "mlops_serve_input_bin_total" and dict(labels)["feature"] == "f3"
    }
    assert f3 == {"0": 0, "1": 100, "2": 0}
    for feature in ("f0", "f1", "f2"):
        counted = [
            value
            for (name, labels), value in samples.items()
            if name == "mlops_serve_input_bin_total" and dict(labels)["feature"] == feature
        ]
        assert sum(counted) == 100
    shares = [
        value
        for (name, labels), value in samples.items()
        if name == "mlops_serve_drift_reference_share" and dict(labels)["feature"] == "f0"
    ]
    assert abs(sum(shares) - 1.0) < 1e-9
    # The same rows as the reference: the live PSI the analysis computes is ~0.
    counts = {
        dict(labels)["bin"]: value
        for (name, labels), value in samples.items()
        if name == "mlops_serve_input_bin_total" and dict(labels)["feature"] == "f0"
    }
    ref = {str(i): s for i, s in enumerate(table["features"]["f0"]["shares"])}
    assert drift.psi_of_counts(ref, counts) < 0.1


@pytest.mark.parametrize(
    "content",
    ["", "{", '{"features": 3}', '{"features": {"f0": {"edges": [1, 2], "shares": [1]}}}'],
)
def test_a_broken_reference_is_a_clear_error(tmp_path: Path, content: str) -> None:
    path = tmp_path / "drift_reference.json"
    path.write_text(content)
    with pytest.raises(ReferenceError, match="mlops evaluate"):
        DriftReference.load(path)


@settings(max_examples=150, deadline=None)
@given(
    output=hnp.arrays(
        dtype=np.float32,
        shape=hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=300),
        elements=st.floats(width=32, allow_nan=True, allow_infinity=True),
    )
)
def test_series_stay_bounded_whatever_the_model_outputs(output: np.ndarray) -> None:
    stats = LiveStats(LABELS)
    stats.observe(None, output)
    stats.observe(None, output)
    assert len(_classes(stats)) <= MAX_CLASSES + 1  # the classes, plus "other"
