"""Evaluations of a run and the evaluation cache.

An evaluation of run ``R`` lives at ``runs/R/eval/<eval-id>/``: ``verdict.json``,
``metrics.json``, ``report.md``, ``report.html``, renamed into place complete. Eval ids are
``<UTC yyyymmddThhmmssZ>-<6 random hex>``, so they sort by time and never collide.

The evaluation cache, ``cache/evaluate/<key>.json`` -> ``{"run_id", "eval_id"}``, makes a
verdict reusable: the key covers everything the verdict depends on (the model's hash, the
held-out data's hashes, the evaluate section, the baseline's model hash), so an unchanged
key means measuring again would judge the same model on the same data by the same rules.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from mlops_sessions.records import keys, runs
from mlops_sessions.records.io import Record, read_record, write_json_atomic, write_text_atomic

STEP = "evaluate"


@dataclass(frozen=True)
class Evaluation:
    """One stored evaluation of a run."""

    run_id: str
    eval_id: str
    path: Path
    verdict: dict[str, Any] = field(repr=False)
    metrics: dict[str, Any] = field(repr=False)

    @property
    def passed(self) -> bool:
        return bool(self.verdict.get("passed"))

    @property
    def values(self) -> dict[str, float]:
        values = self.metrics.get("values", {})
        if not isinstance(values, dict):
            return {}
        return {str(k): float(v) for k, v in values.items() if isinstance(v, (int, float))}


def eval_dir(root: Path, run_id: str) -> Path:
    return keys.local(root, keys.evaluations(run_id))


def new_eval_id(now: datetime | None = None) -> str:
    stamp = (now or datetime.now(timezone.utc)).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{os.urandom(3).hex()}"


def load_evaluation(root: Path, run_id: str, eval_id: str) -> Evaluation | None:
    """One evaluation; None when it is not there (or was never completed)."""
    path = eval_dir(root, run_id) / eval_id
    fix = f"delete {path} and re-evaluate with `mlops evaluate --force`"
    verdict = read_record(path / keys.VERDICT, fix=fix)
    metrics = read_record(path / keys.METRICS, fix=fix)
    if verdict is None or metrics is None:
        return None
    return Evaluation(run_id=run_id, eval_id=eval_id, path=path, verdict=verdict, metrics=metrics)


def evaluations(root: Path, run_id: str) -> list[Evaluation]:
    """Every complete evaluation of a run, oldest first.

    Ordered by the verdict's ``created_at`` (milliseconds), then the id: two evaluations in
    one second have ids whose random part does not say which came first.
    """
    directory = eval_dir(root, run_id)
    if not directory.is_dir():
        return []
    found = []
    for child in sorted(directory.iterdir()):
        if child.is_dir():
            loaded = load_evaluation(root, run_id, child.name)
            if loaded is not None:
                found.append(loaded)
    found.sort(key=lambda e: (str(e.verdict.get("created_at", "")), e.eval_id))
    return found


DRIFT_REFERENCE = keys.DRIFT_REFERENCE


@dataclass(frozen=True)
class EvaluationFiles:
    """Where an evaluation's files are (in its final directory), for messages and records."""

    path: Path

    @property
    def verdict(self) -> Path:
        return self.path / keys.VERDICT

    @property
    def metrics(self) -> Path:
        return self.path / keys.METRICS

    @property
    def report_md(self) -> Path:
        return self.path / keys.REPORT_MD

    @property
    def report_html(self) -> Path:
        return self.path / keys.REPORT_HTML

    @property
    def drift_reference(self) -> Path:
        return self.path / keys.DRIFT_REFERENCE


def write_evaluation(
    directory: Path,
    *,
    metrics: Record,
    verdict: Record,
    report_md: str,
    report_html: str,
    drift_reference: Record | None = None,
) -> None:
    """The one writer of an evaluation's files, into its (staging) directory.

    The caller renames the directory into ``runs/<run>/eval/<eval-id>/`` complete; the
    drift reference is written only where evaluate.drift produced one.
    """
    files = EvaluationFiles(directory)
    write_json_atomic(files.metrics, metrics)
    write_json_atomic(files.verdict, verdict)
    write_text_atomic(files.report_md, report_md)
    write_text_atomic(files.report_html, report_html)
    if drift_reference is not None:
        write_json_atomic(files.drift_reference, drift_reference)


def read_drift_reference(evaluation: Evaluation) -> Record | None:
    """The evaluation's drift reference; None when it wrote none (a damaged one raises)."""
    return read_record(
        EvaluationFiles(evaluation.path).drift_reference,
        fix=f"delete {evaluation.path} and re-evaluate with `mlops evaluate --force`",
    )


def drift_reference(root: Path, run_id: str) -> Path | None:
    """The drift reference of the run's latest passing evaluation, if it wrote one."""
    for evaluation in reversed(evaluations(root, run_id)):
        path = evaluation.path / DRIFT_REFERENCE
        if evaluation.passed and path.is_file():
            return path
    return None


# --- the evaluation cache ------------------------------------------------------------------
def cache_key(inputs: Mapping[str, Any]) -> str:
    """sha256 over the inputs a verdict depends on (any JSON-ready mapping)."""
    blob = json.dumps(dict(inputs), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def cached_evaluation(root: Path, key: str) -> Evaluation | None:
    """The evaluation recorded for key if it is still complete in the store, else None."""
    entry = runs.read_cache(root, STEP, key, fields=("run_id", "eval_id"))
    if entry is None:
        return None
    return load_evaluation(root, str(entry["run_id"]), str(entry["eval_id"]))


def record_evaluation(
    root: Path, key: str, model: str, run_id: str, eval_id: str, inputs: Record
) -> None:
    runs.write_cache(
        root, STEP, key, {"run_id": run_id, "eval_id": eval_id, "inputs": inputs}, model=model
    )
