"""``mlops train``: train models, or reuse the stored run whose cache key still matches.

For each model: plan (key over code, params, data, lock, config) -> reuse the complete run
recorded for that key unless ``--force`` -> otherwise clean leftovers of killed runs and
hand the plan to the model's :class:`~mlops_sessions.drivers.training.base.Trainer` (picked
from the config by :func:`~mlops_sessions.drivers.training.factory.trainer_for`: in the
venv, in the train image, as a Kubernetes Job or a Kubeflow TFJob), which leaves a complete
run in ``.mlops/runs/<run-id>``, and only then record the key. A run killed at any point leaves
no directory under runs/ and no cache entry, so it can never be reused. A damaged cache
entry or run.json is a cache miss: train warns, sets the damaged run aside and retrains.
Run ids are unique per training (``records.runs``), so two ``--force`` trainings of one key
at once both keep their run.

With ``store.remote`` a local miss asks the shared store: a run trained elsewhere with the
same key is reused without retraining (its model is downloaded later, only by a step that
needs it), and a new run is uploaded before its key is published there.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, TextIO

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.console.common import (
    add_models,
    add_offline,
    emit,
    load_config,
    parse_params,
    store_for,
    tracker_for,
)
from mlops_sessions.drivers.training.factory import trainer_for
from mlops_sessions.drivers.training.local import clean_stale_staging
from mlops_sessions.drivers.training.plans import (
    hash_cache_for,
    new_run_id,
    plan_run,
    reusable_run,
)
from mlops_sessions.errors import StepError
from mlops_sessions.hashing import FileHashCache
from mlops_sessions.planning.training import STEP, TrainPlan
from mlops_sessions.records import runs
from mlops_sessions.records.io import RecordError
from mlops_sessions.records.remote import RemoteError
from mlops_sessions.records.store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_models(parser)
    parser.add_argument(
        "--force", action="store_true", help="retrain even when a run with the same key exists"
    )
    parser.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a train param for this run (value read as YAML; part of the cache key); "
        "repeatable, 'a.b=1' reaches nested params",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan and whether it is cached; train nothing",
    )
    add_offline(parser)


def trainable(config: Config, names: list[str]) -> list[ModelConfig]:
    models = config.select_models(names)
    if names:
        missing = [m.name for m in models if m.train is None]
        if missing:
            raise StepError(
                f"model(s) without a 'train' section: {', '.join(missing)}; add one to train them"
            )
    chosen = [m for m in models if m.train is not None]
    if not chosen:
        raise StepError(f"no model in {config.source_file} has a 'train' section")
    return chosen


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    store = store_for(config, offline=args.offline)
    overrides = parse_params(args.param)
    models = trainable(config, list(args.models))
    # Progress goes to stderr with --json so stdout stays one JSON document.
    stream = sys.stderr if args.json else sys.stdout
    cache = hash_cache_for(config)
    if args.dry_run:
        plans = [
            dry_run(
                config,
                store,
                plan_run(config, m, params_override=overrides, hash_cache=cache),
            )
            for m in models
        ]
        emit(args, {"dry_run": True, "plans": plans}, "\n".join(_dry_text(p) for p in plans))
        return 0
    results = [
        train_model(
            config,
            store,
            m,
            overrides=overrides,
            force=args.force,
            stream=stream,
            cache=cache,
            offline=args.offline,
        )
        for m in models
    ]
    emit(args, {"runs": results}, "\n".join(_result_text(r) for r in results))
    return 0


def dry_run(config: Config, store: Store, plan: TrainPlan) -> dict[str, Any]:
    cached = reusable_run(store, plan.key)
    trainer = trainer_for(config, store, config.models[plan.model])
    return {
        **plan.describe(),
        "cached": cached is not None,
        "run_id": cached["run_id"] if cached else None,
        **trainer.describe(plan),
    }


def train_model(
    config: Config,
    store: Store,
    model: ModelConfig,
    *,
    overrides: dict[str, Any] | None = None,
    force: bool = False,
    stream: TextIO | None = None,
    cache: FileHashCache | None = None,
    offline: bool = False,
) -> dict[str, Any]:
    """Train one model (or reuse its cached run); returns a summary for output.

    offline: no s3:// data input is downloaded; one that is not cached is refused before
    anything is written (a reused run needs none).
    """
    out = stream if stream is not None else sys.stdout
    plan = plan_run(config, model, params_override=overrides, hash_cache=cache)
    if not force:
        cached = _reusable(store, plan, out)
        if cached is not None:
            return _summary(store, cached, reused=True)
    trainer = trainer_for(config, store, model)
    if offline and trainer.fetches_inputs_here:
        refuse_offline_fetch(plan)
    removed = clean_stale_staging(store)
    if removed:
        print(
            f"[{model.name}] removed {removed} leftover(s) of interrupted runs from {store.tmp}",
            file=out,
            flush=True,
        )
    run_id = new_run_id(store, plan.key)
    print(
        f"[{model.name}] training {plan.entrypoint} (key {plan.short_key}) -> run {run_id}",
        file=out,
        flush=True,
    )
    record = trainer.train(plan, run_id, out)
    # Under the model's lock: two trainings of one key finishing together each leave their
    # run; the pointer names the last one written, never a half-written entry.
    store.record_cache(STEP, plan.key, run_id, model=plan.model)
    tracker = tracker_for(config)
    if tracker is not None:  # a copy for MLflow users, after the store's own record
        tracker.log_training(record)
    return _summary(store, record, reused=False)


def refuse_offline_fetch(plan: TrainPlan) -> None:
    """With --offline, an s3:// input that is not cached is an error (nothing downloads)."""
    from mlops_sessions.planning.datainputs import offline_refusal

    for obj in plan.pending_objects:
        raise offline_refusal(obj, "train")


def _reusable(store: Store, plan: TrainPlan, out: TextIO) -> dict[str, Any] | None:
    """The cached run of plan's key; a damaged cache entry or run.json is a miss (warned).

    The damaged run is set aside into ``tmp/`` (where later steps never look and the stale
    staging sweep removes it), so evaluate and lineage do not trip over it again.
    """
    try:
        return reusable_run(store, plan.key)
    except RemoteError:
        raise  # an unreachable shared store is not a cache miss: never train blind
    except RecordError as exc:
        print(f"[{plan.model}] warning: {exc}", file=out, flush=True)
    moved = runs.set_aside_damaged(store.root, STEP, plan.key, store.tmp)
    where = f"; the damaged run is kept in {moved}" if moved else ""
    print(
        f"[{plan.model}] the cached run is unusable: training again{where}",
        file=out,
        flush=True,
    )
    return None


def _summary(store: Store, record: dict[str, Any], *, reused: bool) -> dict[str, Any]:
    history = record.get("history") or {}
    final = {name: values[-1] for name, values in history.items() if values}
    return {
        "model": record["model"],
        "run_id": record["run_id"],
        "reused": reused,
        "key": record["key"],
        "run_dir": str(store.run_dir(record["run_id"])),
        # Reused from the shared store, its model not downloaded (yet): nothing needed it.
        "model_on_remote_only": not (
            store.run_dir(record["run_id"]) / str(record.get("model_dir", "model"))
        ).is_dir(),
        "model_hash": record.get("model_hash"),
        "duration_s": record.get("duration_s"),
        "final_metrics": final,
        "warnings": record.get("warnings", []),
    }


def _result_text(result: dict[str, Any]) -> str:
    if result["reused"]:
        return (
            f"{result['model']}: reused run {result['run_id']} (key {result['key'][:8]} "
            "unchanged; --force retrains)"
        )
    metrics = ", ".join(
        f"{k} {v:.4f}" for k, v in result["final_metrics"].items() if isinstance(v, (int, float))
    )
    return (
        f"{result['model']}: created run {result['run_id']} in {result['duration_s']:.1f}s"
        f"{f' ({metrics})' if metrics else ''} -> {_rel(Path(result['run_dir']))}"
    )


def _dry_text(plan: dict[str, Any]) -> str:
    state = (
        f"cached: would reuse run {plan['run_id']}" if plan["cached"] else "not cached: would train"
    )
    hashes = plan["lineage"]["data_hashes"]
    objects = plan.get("objects") or {}
    inputs = (
        "".join(
            _object_text(name, objects[name], plan["backend"])
            if name in objects
            else f"\n    {name}: {path} (sha256 {hashes[name][:12]})"
            for name, path in plan["inputs"].items()
        )
        or " none"
    )
    return (
        f"{plan['model']}: key {plan['key']} — {state}\n"
        f"  entrypoint: {plan['entrypoint']} (source {_rel(Path(plan['source']))})\n"
        f"  params: {json.dumps(plan['params'], sort_keys=True)}\n"
        f"  seed: {plan['seed']} (op determinism {'on' if plan['deterministic'] else 'off'})\n"
        f"  inputs:{inputs}"
        + (_container_text(plan["container_run"]) if plan.get("container_run") else "")
        + (_job_text(plan["kubernetes_job"]) if plan.get("kubernetes_job") else "")
    )


def _object_text(name: str, obj: dict[str, Any], backend: str) -> str:
    if backend == "kubernetes":
        where = "fetched by each training pod"
    else:
        where = f"{'cached' if obj['cached'] else 'to fetch'}: {_rel(Path(obj['path']))}"
    return f"\n    {name}: {obj['uri']} (sha256 {obj['sha256']})\n      {where}"


def _container_text(run: dict[str, Any]) -> str:
    mounts = "".join(
        f"\n    {m['source']} -> {m['target']}{' (read-only)' if m['read_only'] else ''}"
        for m in run["mounts"]
    )
    return (
        f"\n  container: image {run['image']} ({', '.join(run['refs'])}; environment "
        f"{run['environment_digest'][:12]}), user {run['user']}, network {run['network']}, "
        f"{run['gpus']} GPU(s)\n  command: {' '.join(run['command'])}\n  mounts:{mounts}"
    )


def _job_text(job: dict[str, Any]) -> str:
    namespace = job["namespace"] or "the context's namespace"
    return (
        f"\n  kubernetes: Job in {namespace}, {job['workers']} worker(s), image {job['image']}, "
        f"timeout {job['timeout'] or 'none'}, retries {job['retries']}"
    )


def _rel(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
