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
        # Predicted classes 0..MAX_CLASSES-1, then "other"; single-output bins separately.
        self._class_counts = np.zeros(MAX_CLASSES + 1, dtype=np.int64)
        self._value_counts = np.zeros(len(_VALUE_LABELS), dtype=np.int64)
        self._reference = reference
        self._features = (
            sorted(reference.edges, key=_feature_index) if reference is not None else []
        )
        self._columns = np.asarray([_feature_index(f) for f in self._features], dtype=np.intp)
        # All features' edges in one matrix, padded with +inf, so one comparison of a batch
        # against it bins every feature at once: the bin of v is the number of edges <= v
        # (searchsorted's side="right").
        all_edges = reference.edges if reference is not None else {}
        width = max((len(all_edges[f]) for f in self._features), default=0)
        self._edges = np.full((len(self._features), width), np.inf)
        for position, feature in enumerate(self._features):
            self._edges[position, : len(all_edges[feature])] = all_edges[feature]
        self._slots = width + 1  # bins per feature in the flat count array
        self._bins = np.zeros(len(self._features) * self._slots, dtype=np.int64)
        self._offsets = np.arange(len(self._features), dtype=np.intp) * self._slots

    # --- counting (the model's worker thread) -------------------------------------------
    def observe(self, features: np.ndarray[Any, Any] | None, output: np.ndarray[Any, Any]) -> None:
        """Count one batch: its rows' predicted classes and (with a reference) input bins.

        A handful of vectorised numpy calls per batch, whatever the number of features:
        this runs for every batch the model serves."""
        self._count_classes(output)
        if features is not None and len(self._features):
            self._count_inputs(features)

    def _count_classes(self, output: np.ndarray[Any, Any]) -> None:
        if output.ndim == 0 or output.shape[0] == 0:
            return
        rows = output.reshape(output.shape[0], -1)
        if rows.shape[1] > 1:
            winners = np.minimum(np.argmax(rows, axis=1), MAX_CLASSES)
            self._class_counts += np.bincount(winners, minlength=MAX_CLASSES + 1)
        else:
            values = rows[:, 0].astype(np.float64)
            values = values[np.isfinite(values)]
            slot = np.searchsorted(_VALUE_EDGES, values, side="right")
            self._value_counts += np.bincount(slot, minlength=len(_VALUE_LABELS))

    def _count_inputs(self, features: np.ndarray[Any, Any]) -> None:
        flat = features.reshape(features.shape[0], -1)
        if flat.shape[1] <= int(self._columns[-1]):
            return  # the reference has features this input does not: not the same model
        values = flat[:, self._columns].astype(np.float64, copy=False)  # [rows, features]
        above = values[:, :, None] >= self._edges[None, :, :]  # [rows, features, edges]
        # einsum on a uint8 view sums the last axis several times faster than bool.sum().
        slots = np.einsum("ijk->ij", above.view(np.uint8)).astype(np.intp)
        self._bins += np.bincount(
            (slots + self._offsets[None, :]).ravel(), minlength=len(self._bins)
        )

    @property
    def _classes(self) -> dict[str, int]:
        """Counted classes by label (only those seen), for the scrape."""
        out = {
            (str(index) if index < MAX_CLASSES else "other"): int(count)
            for index, count in enumerate(self._class_counts.tolist())
            if count
        }
        out.update(
            (_VALUE_LABELS[index], int(count))
            for index, count in enumerate(self._value_counts.tolist())
            if count
        )
        return out

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
        for name, count in sorted(self._classes.items()):
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
        counted = self._bins.tolist()
        for position, feature in enumerate(self._features):
            bins_here = len(self._reference.edges[feature]) + 1
            start = position * self._slots
            for slot, count in enumerate(counted[start : start + bins_here]):
                bins.add_metric([*values, feature, str(slot)], count)
            for slot, share in enumerate(self._reference.shares[feature]):
                shares.add_metric([*values, feature, str(slot)], share)
        yield bins
        yield shares
