"""The baseline a gate compares against: what a spec means, decided on facts the step found.

The baseline is named in ``evaluate.baseline`` (or ``--baseline``):

* ``none``      — no comparison (relative thresholds are a config error with it);
* ``blessed``   — the model's current blessed run;
* ``run:<id>``  — that run;
* ``git:<ref>`` — the newest blessed run whose lineage commit is ``<ref>`` resolved by git.

A baseline's metric values are those its own passing evaluation recorded (for ``run:<id>``,
its newest evaluation). Pure: the step reads the store and asks git (the blessing, the
named run and its evaluation, the commit a ref resolves to) into :class:`BaselineFacts`,
and :func:`decide_baseline` turns them into a :class:`Baseline` or the one-line error a
spec that names something impossible deserves.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from mlops_sessions.errors import StepError

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


@dataclass(frozen=True)
class BaselineEvaluation:
    """What a baseline takes from a stored evaluation."""

    eval_id: str
    values: dict[str, float]
    dataset_sha256: str | None = None


@dataclass(frozen=True)
class BaselineFacts:
    """What the step found for one model and spec (see :func:`decide_baseline`).

    ``blessing``: for ``blessed`` the current pointer, for ``git:`` the newest blessing
    whose run was trained at ``commit``; ``run``: the run ``run:<id>`` names;
    ``evaluation``: the blessing's evaluation, or the named run's newest one (None when
    missing); ``commit``: what git resolved the ref to (None: git could not).
    ``evaluations_at`` and ``runs_at`` say where the store looked, for messages.
    """

    spec: str
    model: str
    blessing: Mapping[str, Any] | None = None
    run: Mapping[str, Any] | None = None
    evaluation: BaselineEvaluation | None = None
    commit: str | None = None
    runs_at: str = ""
    evaluations_at: str = ""
    repository: str = ""


def check_spec(spec: str) -> str:
    if not _SPEC.match(spec):
        raise StepError(
            f"baseline '{spec}' is not understood; use 'none', 'blessed', 'run:<run-id>' "
            "or 'git:<ref>' (a branch, tag or commit)"
        )
    return spec


def named_run(spec: str) -> str | None:
    """The run id of a ``run:<id>`` spec."""
    return spec[len("run:") :] if spec.startswith("run:") else None


def named_ref(spec: str) -> str | None:
    """The git ref of a ``git:<ref>`` spec."""
    return spec[len("git:") :] if spec.startswith("git:") else None


def commit_of(run: Mapping[str, Any]) -> str | None:
    """The git commit a run was trained at (its lineage), if recorded."""
    commit = ((run.get("lineage") or {}).get("git") or {}).get("commit")
    return str(commit) if commit else None


def decide_baseline(facts: BaselineFacts) -> Baseline:
    """The baseline facts.spec names; ``Baseline.metrics`` is None when no such model exists.

    A spec that names something impossible (an unknown run, a run of another model, a git
    ref git cannot resolve) is a StepError: the user asked for it by name.
    """
    spec, model = check_spec(facts.spec), facts.model
    if spec == "none":
        return Baseline(spec, "baseline: none")
    if spec == "blessed":
        if facts.blessing is None:
            return Baseline(spec, f"no blessed model of '{model}' yet")
        return _from_blessing(facts, facts.blessing, "blessed run")
    run_id = named_run(spec)
    if run_id is not None:
        return _from_run(facts, run_id)
    ref = str(named_ref(spec))
    if facts.commit is None:
        raise StepError(
            f"baseline git:{ref}: git cannot resolve '{ref}' in {facts.repository}; "
            "use a branch, tag or commit of this repository"
        )
    commit = facts.commit
    if facts.blessing is not None:
        return _from_blessing(facts, facts.blessing, f"blessed run at {ref} ({commit[:12]})")
    return Baseline(
        spec, f"no blessed run of '{model}' at git {ref} ({commit[:12]})", git_commit=commit
    )


def _from_run(facts: BaselineFacts, run_id: str) -> Baseline:
    run, model = facts.run, facts.model
    if run is None:
        raise StepError(
            f"baseline run '{run_id}' is not in the store ({facts.runs_at}); "
            "list runs with `mlops lineage <model-hash|commit>` or pick another --baseline"
        )
    if run.get("model") != model:
        raise StepError(
            f"baseline run '{run_id}' trained model '{run.get('model')}', not '{model}'; "
            f"pick a run of '{model}'"
        )
    if facts.evaluation is None:
        raise StepError(
            f"baseline run '{run_id}' has never been evaluated; run "
            f"`mlops evaluate {model} --run {run_id} --baseline none` first"
        )
    return Baseline(
        facts.spec,
        f"run {run_id}",
        run_id=run_id,
        model_hash=run.get("model_hash"),
        eval_id=facts.evaluation.eval_id,
        metrics=facts.evaluation.values,
        dataset_sha256=facts.evaluation.dataset_sha256,
        git_commit=commit_of(run),
    )


def _from_blessing(facts: BaselineFacts, record: Mapping[str, Any], what: str) -> Baseline:
    run_id = str(record.get("run_id"))
    evaluation = facts.evaluation
    if evaluation is None:
        raise StepError(
            f"the blessing of run {run_id} points at evaluation '{record.get('eval_id')}', "
            f"which is missing from {facts.evaluations_at}; re-evaluate that run or "
            "choose another --baseline"
        )
    return Baseline(
        facts.spec,
        f"{what} {run_id}",
        run_id=run_id,
        model_hash=record.get("model_hash"),
        eval_id=evaluation.eval_id,
        metrics=evaluation.values,
        dataset_sha256=evaluation.dataset_sha256,
        git_commit=record.get("git_commit"),
    )


def is_blessed(blessings: Iterable[Mapping[str, Any]], model_hash: str) -> bool:
    """Has a model with exactly this SavedModel hash ever passed the gate and been blessed?"""
    return any(record.get("model_hash") == model_hash for record in blessings)


def blessings_of_run(
    blessings: Iterable[Mapping[str, Any]], run_id: str
) -> list[Mapping[str, Any]]:
    return [record for record in blessings if record.get("run_id") == run_id]
