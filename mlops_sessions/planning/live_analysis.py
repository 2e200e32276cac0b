"""Live analysis of a canary step: the window judged, the measurements, the outcome.

The rollout's analysis is the evaluation gate applied a second time: the same threshold
grammar (``rollout.analysis.thresholds``, plus the metrics ``evaluate.thresholds``
declares for both places), the same :func:`mlops_sessions.planning.gate.decide`, the same
verdict record. Offline the measurements come from the exported model on held-out data;
here they come from Prometheus, per track, over the step's window, and the baseline of a
``vs_baseline`` bound is the stable track over the same window.

This module holds the types both halves share: the driver (:mod:`planning.rollout`, the
state machine, and the deploy step) asks for a window to be analysed and gets an
:class:`AnalysisResult` back; the executor that queries Prometheus fills it in.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from enum import Enum
from typing import Any

from mlops_sessions.config import LIVE_METRICS, SHARED_METRICS, ModelConfig, Threshold
from mlops_sessions.planning import drift
from mlops_sessions.planning.gate import Verdict, decide, fmt


class Outcome(str, Enum):
    """What one analysed window says.

    INCONCLUSIVE (too few canary requests, an empty result, NaN) is never a pass; ERROR
    means Prometheus could not be asked (unreachable, an error answer) after retries.
    """

    PASSED = "passed"
    FAILED = "failed"
    INCONCLUSIVE = "inconclusive"
    ERROR = "error"


@dataclass(frozen=True)
class Window:
    """The interval a step is judged over, in Unix seconds: it starts no earlier than the
    step's weight change, so no sample of the previous step is counted."""

    start: float
    end: float
    step: int  # index into rollout.steps
    weight: int  # the canary's weight during the window

    @property
    def seconds(self) -> float:
        return self.end - self.start

    def as_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "step": self.step, "weight": self.weight}


@dataclass(frozen=True)
class TrackData:
    """What Prometheus answered for one track over a window (None: no sample)."""

    requests: float | None = None
    errors: float | None = None
    latency_ms: Mapping[str, float | None] = field(default_factory=dict)
    predictions: Mapping[str, float] = field(default_factory=dict)  # class -> count
    input_bins: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # f -> bin -> n
    reference: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # f -> bin -> share


@dataclass(frozen=True)
class AnalysisResult:
    """One window's measurements and judgement."""

    outcome: Outcome
    window: Window
    # track ("stable", "canary") -> metric -> value (None: no data)
    measurements: Mapping[str, Mapping[str, float | None]] = field(default_factory=dict)
    samples: Mapping[str, int] = field(default_factory=dict)  # track -> requests in window
    verdict: Verdict | None = None  # the gate's verdict, when the window was judged
    reason: str = ""  # one line: why inconclusive/error, or the first failure
    # What Prometheus answered per track (not recorded): the driver keeps stable's last
    # window with traffic to stand in as the baseline of a window where stable has none.
    tracks: Mapping[str, TrackData] = field(default_factory=dict, repr=False)

    def as_dict(self) -> dict[str, Any]:
        return {
            "outcome": self.outcome.value,
            "window": self.window.as_dict(),
            "measurements": {k: dict(v) for k, v in self.measurements.items()},
            "samples": dict(self.samples),
            "verdict": self.verdict.as_dict() if self.verdict is not None else None,
            "reason": self.reason,
        }


# --- the series the model server exports (mlops_sessions.server.metrics) ------------------

REQUESTS = "mlops_serve_requests_total"
LATENCY_BUCKETS = "mlops_serve_request_duration_seconds_bucket"
PREDICTIONS = "mlops_serve_predictions_total"
INPUT_BINS = "mlops_serve_input_bin_total"
REFERENCE_SHARES = "mlops_serve_drift_reference_share"
# Requests that ran the model (REST and gRPC predict, OIP infer); metadata and status
# calls are not traffic a model is judged on.
MODEL_ENDPOINTS = "predict|infer"
TRACKS = ("stable", "canary")
PERCENTILES = {"latency_p50_ms": 0.5, "latency_p95_ms": 0.95, "latency_p99_ms": 0.99}


def _label(value: str) -> str:
    """A PromQL string literal (label values are model names here, but never trust that)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def selector(model: str, track: str | None = None, extra: str = "") -> str:
    """The label matchers of one model's series, of one track or (None) of every track."""
    on_track = f",track={_label(track)}" if track is not None else ""
    return f"{{model={_label(model)}{on_track}{extra}}}"


def _by(labels: tuple[str, ...]) -> str:
    return f" by ({', '.join(labels)}) " if labels else ""


def range_text(seconds: float) -> str:
    """A PromQL range covering the window: whole seconds, at least one."""
    return f"{max(1, round(seconds))}s"


# The builders below are the one place each measurement's PromQL is written. The live
# analysis calls them with ``increase`` over one track and its exact window; the alerting
# and recording rules (:mod:`planning.alerts`) and the dashboard call them with ``rate``
# over every track, grouped by track. Same series, same label filters, same arithmetic.


def requests_expr(
    model: str,
    track: str | None,
    window: str,
    *,
    errors: bool = False,
    func: str = "increase",
    by: tuple[str, ...] = (),
) -> str:
    """Model requests (``errors``: those answered 5xx) over ``window``, summed ``by``."""
    extra = f",endpoint=~{_label(MODEL_ENDPOINTS)}" + (',code=~"5.."' if errors else "")
    return f"sum{_by(by)}({func}({REQUESTS}{selector(model, track, extra)}[{window}]))"


def latency_ms_expr(
    model: str,
    track: str | None,
    quantile: float,
    window: str,
    *,
    func: str = "increase",
    by: tuple[str, ...] = (),
) -> str:
    """A latency percentile of model requests in milliseconds, from the histogram."""
    served = selector(model, track, f",endpoint=~{_label(MODEL_ENDPOINTS)}")
    return (
        f"1000 * histogram_quantile({quantile}, sum{_by(('le', *by))}"
        f"({func}({LATENCY_BUCKETS}{served}[{window}])))"
    )


def predictions_expr(
    model: str, track: str | None, window: str, *, func: str = "increase", by: tuple[str, ...] = ()
) -> str:
    """Predicted-class counts (or rates) per class."""
    return f"sum{_by((*by, 'class'))}({func}({PREDICTIONS}{selector(model, track)}[{window}]))"


def input_bins_expr(
    model: str, track: str | None, window: str, *, func: str = "increase", by: tuple[str, ...] = ()
) -> str:
    """Input values per feature and bin of the training reference."""
    return (
        f"sum{_by((*by, 'feature', 'bin'))}({func}({INPUT_BINS}{selector(model, track)}[{window}]))"
    )


def reference_shares_expr(model: str, track: str | None, *, by: tuple[str, ...] = ()) -> str:
    """The training reference's share of each feature's bin (a gauge the server exports)."""
    return f"max{_by((*by, 'feature', 'bin'))}({REFERENCE_SHARES}{selector(model, track)})"


def queries(model: str, track: str, seconds: float) -> dict[str, str]:
    """The PromQL of every live measurement of one track, evaluated at the window's end.

    Counts use ``increase`` over exactly the window, so no sample from before the weight
    change is counted. Rates and ratios are computed from the counts by :func:`values_of`:
    zero requests then means "no data", never a division by zero that Prometheus would
    answer with NaN.
    """
    window = range_text(seconds)
    out = {
        "requests": requests_expr(model, track, window),
        "errors": requests_expr(model, track, window, errors=True),
        "predictions": predictions_expr(model, track, window),
        "input_bins": input_bins_expr(model, track, window),
        "reference_shares": reference_shares_expr(model, track),
    }
    for metric, quantile in PERCENTILES.items():
        out[metric] = latency_ms_expr(model, track, quantile, window)
    return out


def _usable(value: float | None) -> float | None:
    return None if value is None or math.isnan(value) or math.isinf(value) else value


def values_of(data: TrackData, seconds: float) -> dict[str, float | None]:
    """The track's own live metrics (those that need no other track)."""
    requests = _usable(data.requests)
    values: dict[str, float | None] = {
        "request_rate": requests / seconds if requests is not None and seconds > 0 else None,
        "error_rate": (
            (_usable(data.errors) or 0.0) / requests
            if requests is not None and requests > 0
            else None
        ),
    }
    for metric in PERCENTILES:
        values[metric] = _usable(data.latency_ms.get(metric)) if requests else None
    if data.input_bins and data.reference:
        per_feature = [
            drift.psi_of_counts(data.reference[feature], bins)
            for feature, bins in sorted(data.input_bins.items())
            if feature in data.reference and sum(bins.values()) > 0
        ]
        if per_feature:
            values["drift_psi_max"] = max(per_feature)
            values["drift_psi_mean"] = sum(per_feature) / len(per_feature)
    return values


def live_thresholds(model: ModelConfig) -> dict[str, Threshold]:
    """The thresholds judged live: ``rollout.analysis.thresholds``, plus the metrics that
    exist offline and live (drift) as ``evaluate.thresholds`` declares them — one
    declaration checks both places."""
    rollout = model.rollout
    analysis = rollout.analysis if rollout is not None else None
    chosen: dict[str, Threshold] = dict(analysis.thresholds) if analysis is not None else {}
    evaluate = model.evaluate
    if evaluate is not None and evaluate.drift is not None:
        for name in SHARED_METRICS:
            if name in evaluate.thresholds and name not in chosen:
                chosen[name] = evaluate.thresholds[name]
    return chosen


def judge(
    window: Window,
    canary: TrackData,
    stable: TrackData,
    thresholds: Mapping[str, Threshold],
    *,
    min_requests: int,
    fallback_stable: TrackData | None = None,
) -> AnalysisResult:
    """One window's outcome, by the gate's own code (:func:`gate.decide`).

    Fail closed: fewer than ``min_requests`` canary requests, or a thresholded metric with
    no value, is INCONCLUSIVE, never a pass. The baseline of ``vs_baseline`` bounds and of
    ``prediction_drift_psi`` is stable over the same window; where stable had fewer than
    ``min_requests`` (a 100% step), ``fallback_stable`` — stable's last window with traffic
    — stands in, and the verdict notes it.
    """
    seconds = window.seconds
    canary_values = values_of(canary, seconds)
    notes: list[str] = []
    baseline_data = stable
    if (_usable(stable.requests) or 0) < min_requests and fallback_stable is not None:
        baseline_data = fallback_stable
        notes.append("stable had too little traffic in this window; its last window stands in")
    stable_values = values_of(stable, seconds)
    baseline_values = values_of(baseline_data, seconds)
    if canary.predictions and baseline_data.predictions:
        canary_values["prediction_drift_psi"] = drift.psi_of_counts(
            baseline_data.predictions, canary.predictions
        )
    measurements = {"canary": canary_values, "stable": stable_values}
    tracks = {"canary": canary, "stable": stable}
    samples = {
        "canary": int(_usable(canary.requests) or 0),
        "stable": int(_usable(stable.requests) or 0),
    }
    if samples["canary"] < min_requests:
        return AnalysisResult(
            Outcome.INCONCLUSIVE,
            window,
            measurements,
            samples,
            reason=(
                f"the canary served {samples['canary']} requests in the {fmt(seconds)}s window "
                f"of step {window.step + 1} ({window.weight}%); at least {min_requests} are needed"
            ),
            tracks=tracks,
        )
    missing = [name for name in thresholds if canary_values.get(name) is None]
    baseline_gaps = [
        name
        for name, threshold in thresholds.items()
        if threshold.vs_baseline is not None and baseline_values.get(name) is None
    ]
    if missing or baseline_gaps:
        parts = []
        if missing:
            parts.append(f"no canary value for {', '.join(sorted(missing))}")
        if baseline_gaps:
            parts.append(f"no stable value to compare for {', '.join(sorted(baseline_gaps))}")
        return AnalysisResult(
            Outcome.INCONCLUSIVE,
            window,
            measurements,
            samples,
            reason="; ".join(parts) + f" in step {window.step + 1} ({window.weight}%)",
            tracks=tracks,
        )
    baseline = {k: v for k, v in baseline_values.items() if v is not None}
    judged = {name: canary_values.get(name) for name in thresholds}
    verdict = decide(
        judged, thresholds, LIVE_METRICS, baseline, baseline_label="stable track, same window"
    )
    if notes:
        verdict = replace(verdict, notes=(*verdict.notes, *notes))
    if verdict.passed:
        return AnalysisResult(Outcome.PASSED, window, measurements, samples, verdict, tracks=tracks)
    first = verdict.failed_checks[0]
    bound = first.threshold_text() or "its bound"
    reason = (
        f"{first.metric} = {fmt(first.value)} violates {bound} at step {window.step + 1} "
        f"({window.weight}% canary), window {fmt(seconds)}s: {first.failures[0]}"
    )
    return AnalysisResult(
        Outcome.FAILED, window, measurements, samples, verdict, reason, tracks=tracks
    )
