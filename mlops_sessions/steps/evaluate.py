"""``mlops evaluate``: measure a trained run's exported model, judge it, report, bless it.

By default the run evaluated is the one ``mlops train`` would reuse for the current code,
params and data (``drivers.training.plans.current_run``); ``--run`` picks another. The record of
an evaluation is staged and renamed into ``.mlops/runs/<run>/eval/<eval-id>/`` (verdict.json,
metrics.json, report.md, report.html); a passing model is then blessed. A failing gate exits
with 1 and its first output lines say which metric failed, by how much, against what.
An evaluation whose inputs (model hash, held-out data and code hashes, the evaluate section,
the baseline's model hash) are unchanged reuses its recorded verdict without measuring
(``records.evaluations``); when only the baseline changed (the run right after a first
blessing), the values that evaluation measured are judged again against the new baseline,
a new evaluation record, without loading TensorFlow. ``--force`` measures again.

With ``store.remote`` the run, the baseline and the verdict cache are read through the
remote (the model is downloaded only when measuring) and the blessing moves the remote's
pointer conditionally: if another pipeline blessed a different run while this one was
judging, the measured values are judged again against that run (a new evaluation record,
the first one kept) instead of overwriting its blessing. ``--offline`` judges against the
local cache and says so in the verdict.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from dataclasses import replace
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops_sessions import gitinfo
from mlops_sessions.config import Config, EvaluateConfig, ModelConfig
from mlops_sessions.config.model import plain
from mlops_sessions.console import argtypes
from mlops_sessions.console.common import (
    add_models,
    add_offline,
    emit,
    load_config,
    store_for,
    tracker_for,
)
from mlops_sessions.console.evaluation import Outcome, render_text
from mlops_sessions.contract import DataContext
from mlops_sessions.errors import StepError
from mlops_sessions.hashing import sha256_json
from mlops_sessions.planning import baseline as baselines
from mlops_sessions.planning.gate import Verdict, decide
from mlops_sessions.records import evaluations as evaluation_records
from mlops_sessions.records.io import SCHEMA, RecordError, now
from mlops_sessions.records.remote import BlessConflict, RemoteError
from mlops_sessions.records.store import Store

if TYPE_CHECKING:
    from mlops_sessions.executors.modelsign.bundle import Signed

# Bump when what cache_inputs covers changes: older cached verdicts then miss.
EVAL_CACHE_VERSION = 1
# How many times a blessing that lost the race to another pipeline is judged again.
MAX_REJUDGE = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_models(parser)
    parser.add_argument(
        "--run",
        type=argtypes.label,
        metavar="RUN_ID",
        default=None,
        help="evaluate this stored run instead of the one matching the current inputs",
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="find the run `mlops train --param KEY=VALUE` made (same overrides, repeatable)",
    )
    parser.add_argument(
        "--baseline",
        metavar="SPEC",
        default=None,
        help="compare against 'none', 'blessed', 'run:<id>' or 'git:<ref>' "
        "(default: evaluate.baseline in mlops.yaml)",
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="measure again even when the model, data, evaluate section and baseline are "
        "unchanged since a recorded verdict",
    )
    add_offline(parser)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    store = store_for(config, offline=args.offline)
    overrides: dict[str, Any] = {}
    if args.param:
        from mlops_sessions.console.common import parse_params

        if args.run is not None:
            raise StepError("--run names the run already; drop --param (or --run)")
        overrides = parse_params(list(args.param))
    targets = _targets(config, store, list(args.models), args.run, overrides)
    outcomes = [
        evaluate_model(
            config,
            store,
            model,
            run_record,
            baseline_spec=args.baseline,
            force=args.force,
            offline=args.offline,
        )
        for model, run_record in targets
    ]
    passed = all(o.passed for o in outcomes)
    if args.json and not passed:
        # stdout carries the JSON document; CI logs still lead with what failed.
        for outcome in outcomes:
            for line in outcome.verdict.failure_lines():
                print(f"{outcome.model}: {line}", file=sys.stderr)
    result: dict[str, Any] = {"passed": passed, "models": {o.model: o.as_dict() for o in outcomes}}
    if config.store_remote is not None:
        result["store"] = {
            "remote": config.store_remote.url,
            "offline": store.offline,
            "downloaded_bytes": store.downloaded,
        }
    emit(args, result, render_text(outcomes))
    return 0 if passed else 1


def _targets(
    config: Config,
    store: Store,
    names: list[str],
    run_id: str | None,
    overrides: dict[str, Any] | None = None,
) -> list[tuple[ModelConfig, dict[str, Any]]]:
    """(model, run.json) pairs to evaluate."""
    if run_id is not None:
        record = store.load_run(run_id)
        if record is None:
            known = [r["run_id"] for r in store.list_runs()][-5:]
            raise StepError(
                f"run '{run_id}' is not in the store ({store.runs}); "
                + (f"recent runs: {', '.join(known)}" if known else "train one with `mlops train`")
            )
        owner = str(record.get("model"))
        if names and names != [owner]:
            raise StepError(
                f"run '{run_id}' trained model '{owner}'; name only that model with --run "
                f"(or drop the model names)"
            )
        (model,) = config.select_models([owner])
        _evaluate_section(model)
        return [(model, record)]
    models = config.select_models(names)
    if names:
        for model in models:
            _evaluate_section(model)
    else:
        models = [m for m in models if m.evaluate is not None]
        if not models:
            raise StepError(
                f"no model in {config.source_file} has an 'evaluate' section; add one to gate it"
            )
    out = []
    for model in models:
        record = _current(config, store, model, overrides or {})
        if record is None:
            with_params = "".join(f" --param {k}={v}" for k, v in (overrides or {}).items())
            raise StepError(
                f"no trained run of '{model.name}' matches the current code, params and data; "
                f"run `mlops train {model.name}{with_params}` (or `nox -s train`) first, or "
                "pick a stored run with --run RUN_ID"
            )
        out.append((model, record))
    return out


def _current(
    config: Config, store: Store, model: ModelConfig, overrides: dict[str, Any]
) -> dict[str, Any] | None:
    """The run `mlops train` (with the same --param overrides) would reuse now."""
    from mlops_sessions.drivers.training import plans

    if not overrides:
        return plans.current_run(config, store, model.name)
    if model.train is None:
        return None
    plan = plans.plan_run(
        config, model, params_override=overrides, hash_cache=plans.hash_cache_for(config)
    )
    return plans.reusable_run(store, plan.key)


def _evaluate_section(model: ModelConfig) -> EvaluateConfig:
    if model.evaluate is None:
        raise StepError(
            f"model '{model.name}' has no 'evaluate' section; add evaluate.dataset and "
            "thresholds to mlops.yaml to gate it"
        )
    return model.evaluate


def new_eval_id(now: datetime | None = None) -> str:
    return evaluation_records.new_eval_id(now)


def cache_inputs(
    config: Config,
    model: ModelConfig,
    evaluate: EvaluateConfig,
    run_record: dict[str, Any],
    baseline: baselines.Baseline,
) -> dict[str, Any]:
    """Everything a verdict depends on: equal inputs, equal verdict (records.evaluations)."""
    from mlops_sessions.drivers.training import plans

    code: str | None = None
    data: dict[str, str] = {}
    if model.train is not None:
        # The held-out data comes from the train inputs through the team's code (the
        # dataset function and custom metrics live in train.source): hash both as they
        # are now, which is what a new measurement would read.
        plan = plans.plan_run(config, model, hash_cache=plans.hash_cache_for(config))
        lineage = plan.lineage()
        code = lineage.get("code_hash")
        data = dict(lineage.get("data_hashes") or {})
    return {
        "version": EVAL_CACHE_VERSION,
        "run_id": run_record.get("run_id"),
        "model_hash": run_record.get("model_hash"),
        "code_hash": code,
        "data_hashes": data,
        "evaluate": sha256_json(plain(evaluate)),
        "baseline": {
            "spec": baseline.spec,
            "model_hash": baseline.model_hash,
            "available": baseline.available,
        },
    }


def _reused(
    config: Config,
    store: Store,
    model: ModelConfig,
    run_record: dict[str, Any],
    key: str,
    baseline: baselines.Baseline,
) -> Outcome | None:
    """The Outcome of the evaluation recorded under key, or None (a miss).

    A damaged cache entry or evaluation is a miss too: measuring again rewrites both.
    """
    try:
        found = store.cached_evaluation(key)
    except RemoteError:
        raise  # the shared store is down: not a miss to measure and bless around
    except RecordError:
        return None
    if found is None or found.run_id != str(run_record["run_id"]):
        return None
    verdict = Verdict.from_dict(found.verdict)
    blessed = False
    if verdict.passed:
        # evaluate.sign: a pass blessed before signing was switched on is signed now.
        signed = _sign(config, store, model, run_record, found.eval_id)
        current = store.blessed(model.name)
        blessed = current is not None and current.get("run_id") == found.run_id
        if not blessed:
            # May raise BlessConflict: the caller then judges again against the new pointer.
            _bless(
                store,
                model.name,
                run_record,
                found.eval_id,
                found.path,
                verdict.first_run,
                expected_run=baseline.run_id,
                signed=signed,
            )
            blessed = True
    notes = [str(n) for n in found.verdict.get("notes", []) if n not in verdict.notes]
    return Outcome(
        model.name,
        found.run_id,
        found.eval_id,
        found.path,
        verdict,
        baseline,
        blessed,
        notes,
        reused=True,
    )


def measurement_key(inputs: Mapping[str, Any]) -> str:
    """The cache key of the measured values: a verdict's inputs without the baseline.

    The values depend on the model, the held-out data, the team's code and the evaluate
    section, not on what they are compared with; when only the baseline moved (the first
    blessing makes the next run's baseline the model itself), judging the recorded values
    again gives the verdict a new measurement would, without loading TensorFlow.
    """
    return evaluation_records.cache_key({**inputs, "baseline": None, "of": "measurements"})


def _recorded_measurements(
    store: Store, run_record: dict[str, Any], key: str, *, needs_reference: bool
) -> tuple[Any, str | None]:
    """The Measurements an earlier evaluation of this run recorded under key, and a note
    saying where they come from; (None, None) when there are none to trust.

    With evaluate.drift declared, values without their drift reference are not enough: the
    new evaluation must carry the reference the serve image counts live inputs against (an
    evaluation fetched from the shared store has none), so that case measures again.
    """
    try:
        found = store.cached_evaluation(key)
    except RemoteError:
        raise  # the shared store is down: not a miss to measure around
    except RecordError:
        return None, None
    if found is None or found.run_id != str(run_record["run_id"]):
        return None, None
    from mlops_sessions.executors.tf.evaluate import Measurements

    try:
        reference = evaluation_records.read_drift_reference(found)
    except RecordError:
        return None, None
    if needs_reference and reference is None:
        return None, None
    try:
        measured = Measurements.from_dict(found.metrics, reference)
    except (TypeError, ValueError, AttributeError):
        return None, None  # a metrics.json this version cannot read back: measure again
    note = (
        f"values measured by evaluation {found.eval_id} (same model, data, code and evaluate "
        "section), judged again against the current baseline; --force measures again"
    )
    return measured, note


def baseline_facts(store: Store, model: str, spec: str, root: Path) -> baselines.BaselineFacts:
    """What the store (read through the shared one) and git say about the baseline spec
    names, for planning.baseline to decide on."""
    facts = baselines.BaselineFacts(spec, model, runs_at=str(store.runs), repository=str(root))
    blessing: dict[str, Any] | None = None
    if spec == "blessed":
        blessing = store.blessed(model)
    elif (run_id := baselines.named_run(spec)) is not None:
        run = store.load_run(run_id)
        done = evaluation_records.evaluations(store.root, run_id) if run is not None else []
        latest = _baseline_evaluation(done[-1]) if done else None
        return replace(facts, run=run, evaluation=latest)
    elif (ref := baselines.named_ref(spec)) is not None:
        commit = gitinfo.resolve(root, ref)
        facts = replace(facts, commit=commit)
        for record in reversed(store.blessings(model) if commit is not None else []):
            run = store.load_run(str(record.get("run_id")))
            if run is not None and baselines.commit_of(run) == commit:
                blessing = record
                break
    if blessing is None:
        return facts
    run_id, eval_id = str(blessing.get("run_id")), blessing.get("eval_id")
    found = None
    if eval_id:
        # With a shared store: its verdict.json and metrics.json only (what a baseline needs).
        store.fetch_evaluation(run_id, str(eval_id))
        found = evaluation_records.load_evaluation(store.root, run_id, str(eval_id))
    return replace(
        facts,
        blessing=blessing,
        evaluation=None if found is None else _baseline_evaluation(found),
        evaluations_at=str(evaluation_records.eval_dir(store.root, run_id)),
    )


def _baseline_evaluation(found: evaluation_records.Evaluation) -> baselines.BaselineEvaluation:
    dataset = found.metrics.get("dataset_sha256")
    return baselines.BaselineEvaluation(found.eval_id, found.values, dataset)


def _bless(
    store: Store,
    model: str,
    run_record: dict[str, Any],
    eval_id: str,
    path: Path,
    first_run: bool,
    *,
    expected_run: str | None = None,
    signed: Signed | None = None,
) -> None:
    git = (run_record.get("lineage") or {}).get("git") or {}
    # With evaluate.sign the blessing names the signed digest and the key (the bundle is
    # in the evaluation's record, keys.model_signature).
    signature = (
        {"model_signature": {"digest": signed.digest, "key": signed.key_fingerprint}}
        if signed is not None
        else {}
    )
    store.bless(
        model,
        {
            **signature,
            "model": model,
            "run_id": str(run_record["run_id"]),
            "model_hash": run_record.get("model_hash"),
            "git_commit": git.get("commit"),
            "git_dirty": git.get("dirty"),
            "eval_id": eval_id,
            "verdict": str(evaluation_records.EvaluationFiles(path).verdict),
            "first_run": first_run,
            "blessed_at": now(),
        },
        expected_run=expected_run,
    )


def evaluate_model(
    config: Config,
    store: Store,
    model: ModelConfig,
    run_record: dict[str, Any],
    *,
    baseline_spec: str | None = None,
    force: bool = False,
    offline: bool = False,
) -> Outcome:
    """Measure, judge, record and (on pass) bless one run of one model.

    Unless force, a verdict recorded for the same inputs (:func:`cache_inputs`) is reused
    without measuring: nothing it depends on has changed. A blessing that loses the race
    for the shared store's pointer (:class:`BlessConflict`) is judged again against the
    run now blessed, with the values already measured. offline: an s3:// data input that
    is not cached is refused, never downloaded.
    """
    evaluate = _evaluate_section(model)
    spec = baselines.check_spec(baseline_spec or evaluate.baseline)
    measured: Any = None
    lost: list[str] = []  # notes of the blessings that lost the race, for the final verdict
    for _ in range(MAX_REJUDGE):
        baseline = baselines.decide_baseline(baseline_facts(store, model.name, spec, config.root))
        inputs = cache_inputs(config, model, evaluate, run_record, baseline)
        key = evaluation_records.cache_key(inputs)
        if not force and measured is None:
            try:
                reused = _reused(config, store, model, run_record, key, baseline)
            except BlessConflict as conflict:
                lost.append(_lost_note(conflict, None))
                continue
            if reused is not None:
                reused.notes = [*_offline_notes(config, store), *reused.notes]
                return reused
        values_key = measurement_key(inputs)
        if measured is None and not force:
            measured, values_note = _recorded_measurements(
                store, run_record, values_key, needs_reference=evaluate.drift is not None
            )
            if values_note:
                lost.append(values_note)
        if measured is None:
            measured = _measure(config, store, model, evaluate, run_record, offline=offline)
        outcome = _judge(config, store, model, evaluate, run_record, measured, baseline, lost)
        store.record_evaluation(
            key, model.name, outcome.run_id, outcome.eval_id, inputs, also=(values_key,)
        )
        tracker = tracker_for(config)
        if tracker is not None:  # a copy for MLflow users, after the store's own record
            tracker.log_evaluation(
                run_record,
                outcome.eval_id,
                dict(measured.values),
                outcome.passed,
                outcome.verdict.failure_lines(),
            )
        if not outcome.passed:
            return outcome
        # The gate signs what it blesses, before the pointer moves (evaluate.sign).
        signed = _sign(config, store, model, run_record, outcome.eval_id)
        try:
            _bless(
                store,
                model.name,
                run_record,
                outcome.eval_id,
                outcome.path,
                outcome.verdict.first_run,
                expected_run=baseline.run_id,
                signed=signed,
            )
        except BlessConflict as conflict:
            lost.append(_lost_note(conflict, outcome.eval_id))
            continue
        outcome.blessed = True
        if tracker is not None:
            tracker.register_blessed(
                run_record, _model_source(config, store, run_record), {"eval_id": outcome.eval_id}
            )
        return outcome
    raise StepError(
        f"{model.name}: the blessed pointer of the shared store moved {MAX_REJUDGE} times "
        "while this evaluation was judging; re-run `mlops evaluate`"
    )


def _sign(
    config: Config, store: Store, model: ModelConfig, run_record: dict[str, Any], eval_id: str
) -> Signed | None:
    """evaluate.sign: the passing evaluation's signature of the model (None: not signing,
    or signed already). The signing library is imported only when the model signs."""
    if model.evaluate is None or model.evaluate.sign is None:
        return None
    from mlops_sessions.drivers import model_signing

    return model_signing.sign_blessed(config, store, model, run_record, eval_id)


def _model_source(config: Config, store: Store, run: dict[str, Any]) -> str:
    """Where the Model Registry says the blessed model is: in the store (its truth)."""
    run_id = str(run["run_id"])
    if config.store_remote is not None:
        return f"{config.store_remote.url.rstrip('/')}/runs/{run_id}/model.tar.gz"
    return (store.run_dir(run_id) / str(run.get("model_dir", "model"))).as_uri()


def _lost_note(conflict: BlessConflict, eval_id: str | None) -> str:
    first = f" (the first verdict is evaluation {eval_id})" if eval_id else ""
    return (
        f"re-judged: while this evaluation ran, another pipeline blessed run "
        f"{conflict.current.get('run_id')}; this verdict is against that run{first}"
    )


def _offline_notes(config: Config, store: Store) -> list[str]:
    if not store.offline or config.store_remote is None:
        return []
    return [
        f"offline: judged against the local cache of the shared store "
        f"{config.store_remote.url}; its blessed model may be newer and nothing was "
        "written to it — re-run online before shipping"
    ]


def _fetch_objects(
    config: Config, model: str, inputs: tuple[str, ...], *, offline: bool = False
) -> None:
    """The s3:// data inputs the dataset function reads, fetched unless already cached
    (offline: one that is not cached is an error)."""
    from mlops_sessions.drivers.datainputs import places
    from mlops_sessions.drivers.training import plans
    from mlops_sessions.planning.datainputs import object_inputs, offline_refusal

    pending = [
        obj
        for obj in object_inputs(
            config, inputs, places(config), plans.hash_cache_for(config)
        ).values()
        if not obj.cached
    ]
    if pending and offline:
        raise offline_refusal(pending[0], "evaluate")
    if pending:
        from mlops_sessions.drivers.datainputs import ensure

        ensure(pending, log=lambda line: print(f"[{model}] {line}", file=sys.stderr, flush=True))


def _measure(
    config: Config,
    store: Store,
    model: ModelConfig,
    evaluate: EvaluateConfig,
    run_record: dict[str, Any],
    *,
    offline: bool = False,
) -> Any:
    # Imported only when measuring: TensorFlow is what makes an evaluation take seconds.
    from mlops_sessions.drivers.datainputs import places
    from mlops_sessions.executors.tf import evaluate as tf_evaluate
    from mlops_sessions.planning.datainputs import resolve_inputs

    train = model.train
    if train is not None:
        _fetch_objects(config, model.name, train.inputs, offline=offline)
    # A run reused from the shared store has its model downloaded here, not before.
    model_dir = store.ensure_model(run_record)
    source = config.resolve(train.source) if train is not None else config.root
    ctx = DataContext(
        model=model.name,
        params=dict(run_record.get("params") or {}),
        seed=int(run_record.get("seed", train.seed if train else 0)),
        inputs=resolve_inputs(config, train.inputs, places(config)) if train is not None else {},
    )
    return tf_evaluate.measure(model_dir, evaluate, ctx, source)


def _judge(
    config: Config,
    store: Store,
    model: ModelConfig,
    evaluate: EvaluateConfig,
    run_record: dict[str, Any],
    measured: Any,
    baseline: baselines.Baseline,
    lost: list[str],
) -> Outcome:
    """Decide the gate on measured values against baseline; stage the evaluation record."""
    from mlops_sessions.reports import verdict as report

    run_id = str(run_record["run_id"])
    produced = evaluate.produced_metrics()
    values = dict(measured.values)  # measured order: quality, custom, latency, size, drift
    verdict = decide(
        values,
        evaluate.thresholds,
        produced,
        baseline.metrics,
        allow_first_run=evaluate.allow_first_run,
        baseline_label=baseline.label,
    )
    notes = [*_offline_notes(config, store), *lost]
    if baseline.available and baseline.dataset_sha256 not in (None, measured.dataset_sha256):
        notes.append(
            "the baseline was evaluated on different held-out data (dataset sha256 "
            f"{str(baseline.dataset_sha256)[:12]} vs {measured.dataset_sha256[:12]}); deltas "
            "compare different datasets"
        )

    eval_id = new_eval_id()
    created = now()
    final = evaluation_records.eval_dir(store.root, run_id) / eval_id
    common = {
        "schema": SCHEMA,
        "model": model.name,
        "run_id": run_id,
        "eval_id": eval_id,
        "model_hash": run_record.get("model_hash"),
        "created_at": created,
    }
    verdict_record = {
        **common,
        **verdict.as_dict(),
        "baseline": baseline.as_dict(),
        "config_hash": config.model_hash(model.name),
    }
    verdict_record["verdict_notes"] = list(verdict.notes)  # the gate's own, for reuse
    verdict_record["notes"] = [*verdict_record["notes"], *notes]
    document = report.ReportInput(
        model=model.name,
        run=run_record,
        eval_id=eval_id,
        verdict=verdict,
        baseline=baseline.as_dict(),
        measurements=measured.as_dict(),
        created_at=created,
        extra_notes=tuple(notes),
    )
    with store.staging(final) as stage:
        evaluation_records.write_evaluation(
            stage,
            metrics={**common, **measured.as_dict(), "values": values},
            verdict=verdict_record,
            report_md=report.markdown(document),
            report_html=report.html_report(document),
            drift_reference=measured.drift_reference,
        )
    return Outcome(model.name, run_id, eval_id, final, verdict, baseline, False, notes)
