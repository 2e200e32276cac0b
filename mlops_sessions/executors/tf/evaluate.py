"""Measure an exported model: quality metrics, latency, size on disk and data drift.

The model is loaded from its SavedModel directory (what is shipped), never taken from
memory, and called through its ``serving_default`` signature. Quality metrics come from
scikit-learn (``sklearn.metrics``): multi-class precision/recall/F1 are macro averages, AUC is
one-vs-rest macro, loss is the log loss of the predicted probabilities. A model with one
output unit is treated as a binary classifier emitting P(class 1).

Drift is the population stability index (PSI) per feature between the training data
(``evaluate.drift.reference``) and the evaluation data, on equal-width bins over the
reference's range with open outer bins. TensorFlow and scikit-learn are imported inside
functions, so importing this module stays cheap.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlops_sessions.config import LATENCY_PERCENTILES, CustomMetric, EvaluateConfig
from mlops_sessions.contract import DataContext
from mlops_sessions.errors import StepError
from mlops_sessions.executors.tf.quiet import import_tensorflow
from mlops_sessions.executors.tf.usercode import load_callable, user_frame
from mlops_sessions.planning import drift

FloatArray = npt.NDArray[np.float64]
_PREDICT_BATCH = 512
# Probabilities below this are floored when computing PSI, so an empty bin on one side
# gives a large but finite contribution (the usual convention).
_MB = 1_000_000


@dataclass(frozen=True)
class Predictor:
    """The serving signature of a SavedModel as a numpy -> numpy function."""

    input_name: str
    input_dtype: Any
    output_name: str
    call: Callable[..., Any] = field(repr=False)

    def __call__(self, features: npt.NDArray[Any]) -> FloatArray:
        import tensorflow as tf

        out = self.call(**{self.input_name: tf.constant(features.astype(self.input_dtype))})
        return np.asarray(out[self.output_name].numpy(), dtype=np.float64)


@dataclass
class Measurements:
    """Everything one evaluation measured (metrics.json is built from this)."""

    values: dict[str, float]
    n_examples: int
    dataset_sha256: str
    classes: list[int] = field(default_factory=list)
    confusion: list[list[int]] | None = None
    psi: dict[str, float] = field(default_factory=dict)
    latency_ms: dict[str, dict[str, float]] = field(default_factory=dict)
    model_size_bytes: int = 0
    output: str = ""
    # planning.drift.reference_table of evaluate.drift's reference data (not in metrics.json)
    drift_reference: dict[str, Any] | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "values": self.values,
            "n_examples": self.n_examples,
            "dataset_sha256": self.dataset_sha256,
            "classes": self.classes,
            "confusion_matrix": self.confusion,
            "drift_psi": self.psi,
            "latency_ms": self.latency_ms,
            "model_size_bytes": self.model_size_bytes,
            "output": self.output,
        }

    @classmethod
    def from_dict(
        cls, data: dict[str, Any], drift_reference: dict[str, Any] | None = None
    ) -> Measurements:
        """Measurements back from a metrics.json (the inverse of :meth:`as_dict`)."""
        values = data.get("values") or {}
        return cls(
            values={str(k): float(v) for k, v in values.items()},
            n_examples=int(data.get("n_examples") or 0),
            dataset_sha256=str(data.get("dataset_sha256") or ""),
            classes=[int(c) for c in data.get("classes") or []],
            confusion=data.get("confusion_matrix"),
            psi={str(k): float(v) for k, v in (data.get("drift_psi") or {}).items()},
            latency_ms=dict(data.get("latency_ms") or {}),
            model_size_bytes=int(data.get("model_size_bytes") or 0),
            output=str(data.get("output") or ""),
            drift_reference=drift_reference,
        )


def load_predictor(model_dir: Path) -> Predictor:
    """Load the SavedModel at model_dir and pick its single input and output."""
    tf = import_tensorflow()

    if not (model_dir / "saved_model.pb").is_file():
        raise StepError(
            f"{model_dir} holds no SavedModel (saved_model.pb is missing); the run is "
            "incomplete or was deleted — train again with `mlops train`"
        )
    try:
        loaded = tf.saved_model.load(str(model_dir))
    except (OSError, ValueError, tf.errors.OpError) as exc:
        raise StepError(f"cannot load the SavedModel at {model_dir}: {exc}") from exc
    signatures = dict(loaded.signatures)
    if "serving_default" not in signatures:
        raise StepError(
            f"the SavedModel at {model_dir} has no 'serving_default' signature (it has: "
            f"{', '.join(signatures) or 'none'}); export it with model.export(dir)"
        )
    signature = signatures["serving_default"]
    inputs = signature.structured_input_signature[1]
    outputs = signature.structured_outputs
    if len(inputs) != 1 or len(outputs) != 1:
        raise StepError(
            f"the serving signature of {model_dir} has inputs {sorted(inputs)} and outputs "
            f"{sorted(outputs)}; evaluation needs exactly one input (features) and one "
            "output (class probabilities)"
        )
    ((input_name, spec),) = inputs.items()
    (output_name,) = outputs
    # Keep a reference to the loaded object: the signature's variables live on it.
    call = _bind(loaded, signature)
    return Predictor(input_name, spec.dtype.as_numpy_dtype, output_name, call)


def _bind(owner: Any, signature: Any) -> Callable[..., Any]:
    def call(**kwargs: Any) -> Any:
        _ = owner
        return signature(**kwargs)

    return call


def call_data(
    import_path: str, source: Path, ctx: DataContext, role: str
) -> tuple[npt.NDArray[Any], npt.NDArray[Any]]:
    """Call a data function f(ctx) -> (features, labels) and check what it returned."""
    func = load_callable(import_path, source)
    try:
        result = func(ctx)
    except StepError:
        raise
    except Exception as exc:  # the team's code may raise anything
        raise StepError(
            f"{role} {import_path} raised {type(exc).__name__}: {exc} "
            f"({user_frame(exc.__traceback__)})"
        ) from exc
    if not (isinstance(result, (tuple, list)) and len(result) == 2):
        raise StepError(
            f"{role} {import_path} returned {type(result).__name__}; it must return a "
            "(features, labels) pair"
        )
    features, labels = np.asarray(result[0]), np.asarray(result[1])
    if features.ndim < 2 or len(features) == 0:
        raise StepError(
            f"{role} {import_path} returned features of shape {features.shape}; expected "
            "at least one row of shape (n_examples, n_features)"
        )
    if len(labels) != len(features):
        raise StepError(
            f"{role} {import_path} returned {len(features)} feature rows but {len(labels)} labels"
        )
    return features, labels


def dataset_hash(features: npt.NDArray[Any], labels: npt.NDArray[Any]) -> str:
    digest = hashlib.sha256()
    for array in (features, labels):
        contiguous = np.ascontiguousarray(array)
        digest.update(f"{contiguous.dtype.str}{contiguous.shape}".encode())
        digest.update(contiguous.tobytes())
    return digest.hexdigest()


def predict(predictor: Predictor, features: npt.NDArray[Any]) -> FloatArray:
    parts = [
        predictor(features[i : i + _PREDICT_BATCH]) for i in range(0, len(features), _PREDICT_BATCH)
    ]
    return np.asarray(np.concatenate(parts, axis=0), dtype=np.float64)


def class_probabilities(raw: FloatArray) -> FloatArray:
    """(n, k) probabilities, from a softmax output or a single sigmoid unit.

    The gate must not judge logits as probabilities, so an output that is not a probability
    distribution is refused with the fix.
    """
    probs = raw.reshape(len(raw), -1)
    if probs.shape[1] == 1:
        p = probs[:, 0]
        if np.any(p < -1e-6) or np.any(p > 1 + 1e-6):
            raise StepError(
                "the model's single output is not a probability (values outside [0, 1]); end "
                "the model with a sigmoid activation"
            )
        p = np.clip(p, 0.0, 1.0)
        return np.stack([1.0 - p, p], axis=1)
    sums = probs.sum(axis=1)
    if np.any(probs < -1e-6) or not np.allclose(sums, 1.0, atol=1e-3):
        raise StepError(
            "the model's output rows are not probability distributions (negative values or "
            "rows that do not sum to 1); end the model with a softmax activation"
        )
    clipped: FloatArray = np.clip(probs, 0.0, None)
    normalised: FloatArray = clipped / clipped.sum(axis=1, keepdims=True)
    return normalised


def quality_metrics(
    names: list[str], labels: npt.NDArray[Any], probs: FloatArray
) -> tuple[dict[str, float], list[list[int]]]:
    """Built-in metrics and the confusion matrix over all k classes."""
    from sklearn import metrics as skm

    k = probs.shape[1]
    classes = list(range(k))
    y_true = labels.astype(np.int64).reshape(-1)
    unknown = sorted(set(np.unique(y_true).tolist()) - set(classes))
    if unknown:
        raise StepError(
            f"labels {unknown} are outside the model's {k} output classes (0..{k - 1}); the "
            "evaluation dataset and the model disagree"
        )
    y_pred = probs.argmax(axis=1)
    binary = k == 2
    average = "binary" if binary else "macro"
    # Scores computed from predicted labels, all averaged the same way.
    per_label = {"precision": skm.precision_score, "recall": skm.recall_score, "f1": skm.f1_score}
    values: dict[str, float] = {}
    for name in names:
        if name == "accuracy":
            values[name] = float(skm.accuracy_score(y_true, y_pred))
        elif name in per_label:
            values[name] = float(
                per_label[name](
                    y_true,
                    y_pred,
                    labels=classes if not binary else None,
                    average=average,
                    zero_division=0,
                )
            )
        elif name == "loss":
            values[name] = float(skm.log_loss(y_true, probs, labels=classes))
        elif name == "auc":
            values[name] = _auc(skm, y_true, probs, classes)
    confusion = skm.confusion_matrix(y_true, y_pred, labels=classes)
    return values, confusion.astype(int).tolist()


def _auc(skm: Any, y_true: npt.NDArray[np.int64], probs: FloatArray, classes: list[int]) -> float:
    present = np.unique(y_true)
    if len(present) < 2:
        raise StepError(
            "AUC needs at least two classes in the evaluation data, which has only "
            f"{present.tolist()}; use more held-out data or drop 'auc' from evaluate.metrics"
        )
    if len(classes) == 2:
        return float(skm.roc_auc_score(y_true, probs[:, 1]))
    if len(present) < len(classes):
        # One-vs-rest is undefined for a class with no positives: average over those present.
        columns = probs[:, present]
        columns = columns / columns.sum(axis=1, keepdims=True)
        return float(
            skm.roc_auc_score(
                y_true, columns, multi_class="ovr", average="macro", labels=present.tolist()
            )
        )
    return float(
        skm.roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=classes)
    )


def custom_metric(
    metric: CustomMetric, source: Path, labels: npt.NDArray[Any], raw: FloatArray
) -> float:
    """Call the team's f(y_true, y_prob) -> float; any failure names the metric and the fix."""
    func = load_callable(metric.function, source)
    try:
        value = func(labels, raw)
    except Exception as exc:  # the team's code may raise anything
        raise StepError(
            f"custom metric '{metric.name}' ({metric.function}) raised {type(exc).__name__}: "
            f"{exc} ({user_frame(exc.__traceback__)}); fix the function or remove it from "
            "evaluate.metrics"
        ) from exc
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise StepError(
            f"custom metric '{metric.name}' ({metric.function}) returned "
            f"{type(value).__name__} {value!r}; it must return a number"
        ) from None
    if not math.isfinite(number):
        raise StepError(
            f"custom metric '{metric.name}' ({metric.function}) returned {number}; it must "
            "return a finite number"
        )
    return number


def latency(
    predictor: Predictor,
    features: npt.NDArray[Any],
    batch_sizes: tuple[int, ...],
    warmup: int,
    runs: int,
) -> dict[str, dict[str, float]]:
    """Wall-clock time of one signature call per batch size, in milliseconds.

    Each call converts the batch to a tensor and reads the result back to numpy: that is the
    cost a server pays per request, so it is what we time.
    """
    out: dict[str, dict[str, float]] = {}
    for size in batch_sizes:
        repeats = -(-size // len(features))
        batch = np.concatenate([features] * repeats, axis=0)[:size]
        for _ in range(warmup):
            predictor(batch)
        samples = []
        for _ in range(runs):
            start = time.perf_counter_ns()
            predictor(batch)
            samples.append((time.perf_counter_ns() - start) / 1e6)
        timings = np.asarray(samples)
        out[str(size)] = {f"p{p}": float(np.percentile(timings, p)) for p in LATENCY_PERCENTILES}
        out[str(size)]["mean"] = float(timings.mean())
    return out


def directory_size(path: Path) -> int:
    total = 0
    for base, _dirs, files in os.walk(path):
        for name in files:
            total += (Path(base) / name).stat().st_size
    return total


def psi_per_feature(
    reference: npt.NDArray[Any], current: npt.NDArray[Any], bins: int
) -> dict[str, float]:
    """Population stability index of every feature (column after flattening each row).

    PSI = sum over bins of (cur - ref) * ln(cur / ref), bin shares floored at 1e-4. Bin edges
    are the reference's quantiles (deciles for bins=10; ties merged, so a discrete feature gets
    fewer bins) and the outer bins are open, so every evaluation value lands in one.
    Quantile bins keep each reference bin populated, which keeps the small-sample bias of PSI
    low where equal-width bins would leave sparse tails. A feature constant in the
    reference scores the share of evaluation values that left that constant.
    """
    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    cur = np.asarray(current, dtype=np.float64).reshape(len(current), -1)
    if ref.shape[1] != cur.shape[1]:
        raise StepError(
            f"drift: the reference data has {ref.shape[1]} features per example but the "
            f"evaluation data has {cur.shape[1]}; both data functions must return the same shape"
        )
    out: dict[str, float] = {}
    for index in range(ref.shape[1]):
        r, c = ref[:, index], cur[:, index]
        low = float(r.min())
        if float(r.max()) == low:
            # A feature constant in the reference: the share of values that left it.
            moved = float(np.mean(c != low))
            out[f"f{index}"] = drift.psi([1.0, 0.0], [1.0 - moved, moved])
        else:
            edges = drift.inner_edges(r, bins)
            out[f"f{index}"] = drift.psi(
                drift.bin_counts(r, edges).tolist(), drift.bin_counts(c, edges).tolist()
            )
    return out


def measure(
    model_dir: Path,
    evaluate: EvaluateConfig,
    ctx: DataContext,
    source: Path,
) -> Measurements:
    """Run every measurement evaluate declares against the SavedModel at model_dir."""
    # TensorFlow's C++ start-up chatter on stderr would push the verdict off the first lines:
    # import it quietly now, before the team's data functions (which may import it first).
    with contextlib.suppress(ImportError):
        import_tensorflow()
    features, labels = call_data(evaluate.dataset, source, ctx, "evaluate.dataset")
    predictor = load_predictor(model_dir)
    raw = predict(predictor, features)
    if len(raw) != len(features):
        raise StepError(f"the model returned {len(raw)} predictions for {len(features)} examples")
    builtin = [m for m in evaluate.metrics if isinstance(m, str)]
    values: dict[str, float] = {}
    confusion = None
    classes: list[int] = []
    if builtin:
        probs = class_probabilities(raw)
        computed, confusion = quality_metrics(builtin, labels, probs)
        values.update(computed)
        classes = list(range(probs.shape[1]))
    for metric in evaluate.metrics:
        if isinstance(metric, CustomMetric):
            values[metric.name] = custom_metric(metric, source, labels, raw)
    result = Measurements(
        values=values,
        n_examples=len(features),
        dataset_sha256=dataset_hash(features, labels),
        classes=classes,
        confusion=confusion,
        output=predictor.output_name,
    )
    if evaluate.latency is not None:
        spec = evaluate.latency
        result.latency_ms = latency(predictor, features, spec.batch_sizes, spec.warmup, spec.runs)
        for size, timings in result.latency_ms.items():
            for pct in LATENCY_PERCENTILES:
                values[f"latency_b{size}_p{pct}_ms"] = timings[f"p{pct}"]
    result.model_size_bytes = directory_size(model_dir)
    values["model_size_mb"] = result.model_size_bytes / _MB
    if evaluate.drift is not None:
        reference, _ = call_data(evaluate.drift.reference, source, ctx, "evaluate.drift.reference")
        result.psi = psi_per_feature(reference, features, evaluate.drift.bins)
        result.drift_reference = drift.reference_table(reference, evaluate.drift.bins)
        psi = list(result.psi.values())
        values["drift_psi_max"] = max(psi)
        values["drift_psi_mean"] = float(np.mean(psi))
    return result
