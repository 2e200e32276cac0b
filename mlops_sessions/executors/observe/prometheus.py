"""Ask Prometheus for a rollout window's measurements, and judge them.

Thin: the PromQL and the judgement are pure (:mod:`mlops_sessions.planning.live_analysis`);
this module runs the queries over Prometheus's HTTP API (``GET /api/v1/query`` at the
window's end time), retries what may pass (connection errors, timeouts, 5xx and 429) with
tenacity, and turns a Prometheus that stays unreachable or answers errors into an
``ERROR`` outcome — the rollout counts those and aborts after ``analysis.error_limit`` in a
row. It never turns a failed query into "no data": an empty answer and an unanswered
question are different things.
"""

from __future__ import annotations

import json
import math
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.planning.live_analysis import (
    PERCENTILES,
    TRACKS,
    AnalysisResult,
    Outcome,
    TrackData,
    Window,
    judge,
    live_thresholds,
    queries,
)

USER_AGENT = "mlops-sessions"


class PrometheusError(Exception):
    """Prometheus could not answer (after retries): unreachable, an error status, bad JSON."""


class _Retryable(PrometheusError):
    pass


@dataclass(frozen=True)
class QueryPolicy:
    """How hard to try one query."""

    timeout_s: float = 10.0
    attempts: int = 3
    backoff_s: float = 0.5


Vector = list[tuple[dict[str, str], float]]


def instant(base_url: str, promql: str, at: float, policy: QueryPolicy | None = None) -> Vector:
    """An instant query's vector result: (labels, value) per series; [] when empty."""
    from tenacity import (
        retry,
        retry_if_exception_type,
        stop_after_attempt,
        wait_exponential,
    )

    policy = policy or QueryPolicy()
    url = (
        base_url.rstrip("/")
        + "/api/v1/query?"
        + urllib.parse.urlencode({"query": promql, "time": f"{at:.3f}"})
    )

    @retry(
        retry=retry_if_exception_type(_Retryable),
        stop=stop_after_attempt(max(1, policy.attempts)),
        wait=wait_exponential(multiplier=policy.backoff_s, max=8),
        reraise=True,
    )
    def ask() -> Any:
        request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
        try:
            with urllib.request.urlopen(request, timeout=policy.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            body = exc.read()[:500].decode("utf-8", "replace")
            if exc.code >= 500 or exc.code == 429:
                raise _Retryable(f"Prometheus answered {exc.code}: {body}") from None
            raise PrometheusError(f"Prometheus refused the query ({exc.code}): {body}") from None
        except (urllib.error.URLError, TimeoutError, ConnectionError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise _Retryable(f"Prometheus at {base_url} is unreachable: {reason}") from None
        except ValueError as exc:  # not JSON: a proxy's error page, a wrong URL
            raise _Retryable(f"Prometheus at {base_url} did not answer JSON: {exc}") from None

    answer = ask()
    if not isinstance(answer, dict) or answer.get("status") != "success":
        error = answer.get("error") if isinstance(answer, dict) else answer
        raise PrometheusError(f"Prometheus could not run {promql!r}: {error}")
    data = answer.get("data") or {}
    if data.get("resultType") != "vector":
        raise PrometheusError(f"expected a vector for {promql!r}, got {data.get('resultType')}")
    out: Vector = []
    for series in data.get("result") or []:
        value = float(series["value"][1])  # Prometheus writes NaN and +Inf as strings
        out.append((dict(series.get("metric") or {}), value))
    return out


def _scalar(vector: Vector) -> float | None:
    if not vector:
        return None
    value = vector[0][1]
    return None if math.isnan(value) else value


def _by(vector: Vector, label: str) -> dict[str, float]:
    return {labels.get(label, ""): value for labels, value in vector if not math.isnan(value)}


def _nested(vector: Vector, outer: str, inner: str) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for labels, value in vector:
        if not math.isnan(value):
            out.setdefault(labels.get(outer, ""), {})[labels.get(inner, "")] = value
    return out


def track_data(
    base_url: str, model: str, track: str, window: Window, policy: QueryPolicy | None = None
) -> TrackData:
    """Everything one track did in the window, as Prometheus saw it."""
    asked = queries(model, track, window.seconds)

    def ask(name: str) -> Vector:
        return instant(base_url, asked[name], window.end, policy)

    return TrackData(
        requests=_scalar(ask("requests")),
        errors=_scalar(ask("errors")),
        latency_ms={metric: _scalar(ask(metric)) for metric in PERCENTILES},
        predictions=_by(ask("predictions"), "class"),
        input_bins=_nested(ask("input_bins"), "feature", "bin"),
        reference=_nested(ask("reference_shares"), "feature", "bin"),
    )


def analyse_window(
    config: Config,
    model: ModelConfig,
    window: Window,
    *,
    fallback_stable: TrackData | None = None,
    policy: QueryPolicy | None = None,
) -> AnalysisResult:
    """Measure both tracks over window and judge the canary. ``result.tracks`` holds the
    raw answers: the driver keeps stable's last window with traffic as ``fallback_stable``."""
    del config  # the model's own sections say everything; kept for the driver's signature
    rollout = model.rollout
    if rollout is None or rollout.analysis is None:
        raise ValueError(f"model {model.name!r} declares no rollout.analysis")
    analysis = rollout.analysis
    try:
        data = {
            track: track_data(analysis.prometheus, model.name, track, window, policy)
            for track in TRACKS
        }
    except PrometheusError as exc:
        return AnalysisResult(Outcome.ERROR, window, reason=str(exc))
    return judge(
        window,
        data["canary"],
        data["stable"],
        live_thresholds(model),
        min_requests=analysis.min_requests,
        fallback_stable=fallback_stable,
    )
