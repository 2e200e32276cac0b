"""What a rollout judges a model on, besides errors and latency: its outputs and inputs.

Two families of counters, per track, read by the rollout's live analysis
(:mod:`mlops_sessions.planning.live_analysis`):

- ``mlops_serve_predictions_total{model,version,track,class}``: the predicted class of every
  row (argmax of a classifier's output). For a model with one output value per row, the
  "class" is a fixed bin of that value (``lt0``, ``0.0``…``0.9`` for tenths of [0, 1),
  ``ge1``), so a regressor's or a sigmoid's output distribution is compared the same way.
  The canary's distribution against stable's, over the same window, is the
  ``prediction_drift_psi`` no generic HTTP check can see.
- ``mlops_serve_input_bin_total{model,version,track,feature,bin}``: every row's features,
  counted in the bins of the training reference (``drift_reference.json``, written by
  ``mlops evaluate`` where ``evaluate.drift`` is declared, see
  :func:`mlops_sessions.planning.drift.reference_table`), with the reference's own shares
  as ``mlops_serve_drift_reference_share{...,feature,bin}``; the analysis computes
  ``drift_psi_max``/``drift_psi_mean`` with the gate's PSI code.

Series are bounded: at most ``MAX_CLASSES`` classes (more are counted as ``other``) and
the reference's features (at most ``MAX_FEATURES``) times its bins. Counting happens on
the model's worker thread, once per batch with numpy, so the event loop that answers
requests does no extra work; scrapes read plain integers.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

MAX_CLASSES = 64
MAX_FEATURES = 256
REFERENCE_FILE = "drift_reference.json"
# Fixed bins of a single output value: below 0, tenths of [0, 1), 1 and above.
_VALUE_EDGES = np.linspace(0.0, 1.0, 11)
_VALUE_LABELS = ("lt0", *(f"{edge:.1f}" for edge in _VALUE_EDGES[:-1]), "ge1")


class ReferenceError(ValueError):
    """The drift reference file cannot be used (the message names the file and the fix)."""


@dataclass(frozen=True)
class DriftReference:
    """The training reference's bins per feature: inner edges and the reference shares."""

    edges: Mapping[str, tuple[float, ...]]
    shares: Mapping[str, tuple[float, ...]]

    @classmethod
    def load(cls, path: Path) -> DriftReference:
        try:
            document = json.loads(path.read_text(encoding="utf-8"))
            features = document["features"]
            edges = {name: tuple(map(float, f["edges"])) for name, f in features.items()}
            shares = {name: tuple(map(float, f["shares"])) for name, f in features.items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ReferenceError(
                f"{path} is not a drift reference ({exc}); re-run `mlops evaluate` to write it"
            ) from None
        for name in edges:
            if len(shares[name]) != len(edges[name]) + 1 or not name.startswith("f"):
                raise ReferenceError(
                    f"{path}: feature {name!r} has {len(edges[name])} edges but "
                    f"{len(shares[name])} shares; re-run `mlops evaluate` to write it"
                )
        if len(edges) > MAX_FEATURES:
            raise ReferenceError(
                f"{path} has {len(edges)} features; live drift counts at most {MAX_FEATURES} "
                "(bounded series); drop evaluate.drift or reduce the model's input"
            )
        return cls(edges, shares)


def _feature_index(name: str) -> int:
    return int(name[1:])


class LiveStats(Collector):
    """The per-track prediction and input-bin counters of one served model."""

    def __init__(self, labels: Mapping[str, str], reference: DriftReference | None = None) -> None:
        self._labels = dict(labels)  # model, version, track
        self._classes: dict[str, int] = {}
        self._reference = reference
        self._features = (
            sorted(reference.edges, key=_feature_index) if reference is not None else []
        )
        self._edges = [np.asarray(reference.edges[f]) for f in self._features] if reference else []
        self._bins: list[np.ndarray[Any, np.dtype[np.int64]]] = [
            np.zeros(len(e) + 1, dtype=np.int64) for e in self._edges
        ]

    # --- counting (the model's worker thread) -------------------------------------------
    def observe(self, features: np.ndarray[Any, Any] | None, output: np.ndarray[Any, Any]) -> None:
        """Count one batch: its rows' predicted classes and (with a reference) input bins."""
        self._count_classes(output)
        if features is not None and self._edges:
            self._count_inputs(features)

    def _count_classes(self, output: np.ndarray[Any, Any]) -> None:
        if output.ndim == 0 or output.shape[0] == 0:
            return
        rows = output.reshape(output.shape[0], -1)
        if rows.shape[1] > 1:
            labels, counts = np.unique(np.argmax(rows, axis=1), return_counts=True)
            names = [str(int(x)) if x < MAX_CLASSES else "other" for x in labels]
        else:
            values = rows[:, 0].astype(np.float64)
            values = values[np.isfinite(values)]
            slot = np.searchsorted(_VALUE_EDGES, values, side="right")
            labels, counts = np.unique(slot, return_counts=True)
            names = [_VALUE_LABELS[int(x)] for x in labels]
        seen = self._classes
        for name, count in zip(names, counts.tolist(), strict=True):
            seen[name] = seen.get(name, 0) + count

    def _count_inputs(self, features: np.ndarray[Any, Any]) -> None:
        flat = features.reshape(features.shape[0], -1)
        for position, feature in enumerate(self._features):
            column = _feature_index(feature)
            if column >= flat.shape[1]:
                continue
            values = flat[:, column].astype(np.float64, copy=False)
            slots = np.searchsorted(self._edges[position], values, side="right")
            self._bins[position] += np.bincount(slots, minlength=len(self._bins[position]))

    # --- scraping ---------------------------------------------------------------------------
    def describe(self) -> Iterator[Metric]:
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        yield from self._families()

    def _families(self) -> Iterator[Metric]:
        names = list(self._labels)
        values = list(self._labels.values())
        predictions = CounterMetricFamily(
            "mlops_serve_predictions",
            "Rows by predicted class (argmax), or by a fixed bin of a single output value.",
            labels=[*names, "class"],
        )
        for name, count in sorted(self._classes.copy().items()):
            predictions.add_metric([*values, name], count)
        yield predictions
        if self._reference is None:
            return
        bins = CounterMetricFamily(
            "mlops_serve_input_bin",
            "Input rows per feature and bin of the training reference (drift_reference.json).",
            labels=[*names, "feature", "bin"],
        )
        shares = GaugeMetricFamily(
            "mlops_serve_drift_reference_share",
            "The training reference's share of each feature's bin.",
            labels=[*names, "feature", "bin"],
        )
        for position, feature in enumerate(self._features):
            counts = self._bins[position].tolist()
            for slot, count in enumerate(counts):
                bins.add_metric([*values, feature, str(slot)], count)
            for slot, share in enumerate(self._reference.shares[feature]):
                shares.add_metric([*values, feature, str(slot)], share)
        yield bins
        yield shares
