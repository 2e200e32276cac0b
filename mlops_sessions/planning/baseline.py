"""Evaluation records in the store: finding evaluations, the baseline, and blessings.

An evaluation of run ``R`` lives at ``.mlops/runs/R/eval/<eval-id>/`` (verdict.json,
metrics.json, report.md, report.html; layout and reader in ``records.evaluations``).
The baseline a gate compares against is named in ``evaluate.baseline`` (or ``--baseline``):

* ``none``      — no comparison (relative thresholds are a config error with it);
* ``blessed``   — the model's current blessed run (``records.blessings``);
* ``run:<id>``  — that run;
* ``git:<ref>`` — the newest blessed run whose lineage commit is ``<ref>`` resolved by git.

A baseline's metric values are those its own passing evaluation recorded (for ``run:<id>``,
its newest evaluation). Reads only: nothing here writes, imports TensorFlow or runs code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_sessions import gitinfo
from mlops_sessions.errors import StepError
from mlops_sessions.records import evaluations as evaluation_records
from mlops_sessions.records.store import Store

_SPEC = re.compile(r"^(none|blessed|run:[A-Za-z0-9._-]+|git:\S+)$")


@dataclass(frozen=True)
class Baseline:
    """The baseline resolved for one model. ``metrics`` is None when there is none."""

    spec: str
    label: str  # how reports name it, e.g. "blessed run 2026...-ab12cd34"
    run_id: str | None = None
    model_hash: str | None = None
    eval_id: str | None = None
    metrics: dict[str, float] | None = None
    dataset_sha256: str | None = None
    git_commit: str | None = None

    @property
    def available(self) -> bool:
        return self.metrics is not None

    def as_dict(self) -> dict[str, Any]:
        return {
            "spec": self.spec,
            "label": self.label,
            "available": self.available,
            "run_id": self.run_id,
            "model_hash": self.model_hash,
            "eval_id": self.eval_id,
            "git_commit": self.git_commit,
            "dataset_sha256": self.dataset_sha256,
        }


# The stored evaluation record (its layout and reader are records.evaluations').
Evaluation = evaluation_records.Evaluation


def check_spec(spec: str) -> str:
    if not _SPEC.match(spec):
        raise StepError(
            f"baseline '{spec}' is not understood; use 'none', 'blessed', 'run:<run-id>' "
            "or 'git:<ref>' (a branch, tag or commit)"
        )
    return spec


def eval_dir(store: Store, run_id: str) -> Path:
    return evaluation_records.eval_dir(store.root, run_id)


def evaluations(store: Store, run_id: str) -> list[Evaluation]:
    """Every complete evaluation of a run, oldest first (eval ids start with a UTC stamp)."""
    return evaluation_records.evaluations(store.root, run_id)


def load_evaluation(store: Store, run_id: str, eval_id: str) -> Evaluation | None:
    # With a shared store: its verdict.json and metrics.json only (what a baseline needs).
    store.fetch_evaluation(run_id, eval_id)
    return evaluation_records.load_evaluation(store.root, run_id, eval_id)


def resolve_baseline(store: Store, model: str, spec: str, root: Path) -> Baseline:
    """The baseline named by spec; ``Baseline.metrics`` is None when no such model exists.

    A spec that names something impossible (an unknown run, a run of another model, a git
    ref git cannot resolve) is a StepError: the user asked for it by name.
    """
    check_spec(spec)
    if spec == "none":
        return Baseline(spec, "baseline: none")
    if spec == "blessed":
        record = store.blessed(model)
        if record is None:
            return Baseline(spec, f"no blessed model of '{model}' yet")
        return _from_blessing(store, spec, record, "blessed run")
    if spec.startswith("run:"):
        run_id = spec[len("run:") :]
        run = store.load_run(run_id)
        if run is None:
            raise StepError(
                f"baseline run '{run_id}' is not in the store ({store.runs}); "
                "list runs with `mlops lineage <model-hash|commit>` or pick another --baseline"
            )
        if run.get("model") != model:
            raise StepError(
                f"baseline run '{run_id}' trained model '{run.get('model')}', not '{model}'; "
                f"pick a run of '{model}'"
            )
        done = evaluations(store, run_id)
        if not done:
            raise StepError(
                f"baseline run '{run_id}' has never been evaluated; run "
                f"`mlops evaluate {model} --run {run_id} --baseline none` first"
            )
        latest = done[-1]
        return Baseline(
            spec,
            f"run {run_id}",
            run_id=run_id,
            model_hash=run.get("model_hash"),
            eval_id=latest.eval_id,
            metrics=latest.values,
            dataset_sha256=latest.metrics.get("dataset_sha256"),
            git_commit=_commit_of(run),
        )
    ref = spec[len("git:") :]
    commit = gitinfo.resolve(root, ref)
    if commit is None:
        raise StepError(
            f"baseline git:{ref}: git cannot resolve '{ref}' in {root}; "
            "use a branch, tag or commit of this repository"
        )
    for record in reversed(store.blessings(model)):
        run = store.load_run(str(record.get("run_id")))
        if run is not None and _commit_of(run) == commit:
            return _from_blessing(store, spec, record, f"blessed run at {ref} ({commit[:12]})")
    return Baseline(
        spec, f"no blessed run of '{model}' at git {ref} ({commit[:12]})", git_commit=commit
    )


def _commit_of(run: dict[str, Any]) -> str | None:
    commit = ((run.get("lineage") or {}).get("git") or {}).get("commit")
    return str(commit) if commit else None


def _from_blessing(store: Store, spec: str, record: dict[str, Any], what: str) -> Baseline:
    run_id = str(record.get("run_id"))
    evaluation = None
    if record.get("eval_id"):
        evaluation = load_evaluation(store, run_id, str(record["eval_id"]))
    if evaluation is None:
        raise StepError(
            f"the blessing of run {run_id} points at evaluation '{record.get('eval_id')}', "
            f"which is missing from {eval_dir(store, run_id)}; re-evaluate that run or "
            "choose another --baseline"
        )
    return Baseline(
        spec,
        f"{what} {run_id}",
        run_id=run_id,
        model_hash=record.get("model_hash"),
        eval_id=evaluation.eval_id,
        metrics=evaluation.values,
        dataset_sha256=evaluation.metrics.get("dataset_sha256"),
        git_commit=record.get("git_commit"),
    )


def is_blessed(store: Store, model: str, model_hash: str) -> bool:
    """Has a model with exactly this SavedModel hash ever passed the gate and been blessed?"""
    return any(record.get("model_hash") == model_hash for record in store.blessings(model))


def blessings_of_run(store: Store, model: str, run_id: str) -> list[dict[str, Any]]:
    return [record for record in store.blessings(model) if record.get("run_id") == run_id]
