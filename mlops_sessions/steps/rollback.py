"""``mlops rollback``: return a model to its previous revision, or to a named one.

Front end only. The revisions are the records ``deploy`` wrote on the cluster (ConfigMap
``<app>-mlops-history``) and in the store; a rollback re-applies the recorded manifests —
the same image digests and traffic weights — as a new revision, so it takes seconds and
rebuilds nothing. Without ``--to`` it picks the last revision before the current one that
rolled out and differs from it (rolling back twice swaps back, as ``kubectl rollout undo``).
A rollback during a progressive rollout aborts the rollout first.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.console import argtypes
from mlops_sessions.console.cluster_options import add_cluster_arguments
from mlops_sessions.console.common import emit, load_config, store_for
from mlops_sessions.drivers.cluster import connect_for, rollout_seconds, rollout_timing
from mlops_sessions.errors import StepError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "model", nargs="?", metavar="MODEL", help="model to roll back (default: the only model)"
    )
    parser.add_argument(
        "--to",
        type=argtypes.positive_int,
        default=None,
        metavar="REVISION",
        help="revision number to return to (see `mlops status`)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the diff against the cluster; change nothing"
    )
    add_cluster_arguments(parser)


def pick_model(config: Config, name: str | None, command: str) -> ModelConfig:
    if name is not None:
        (model,) = config.select_models([name])
        return model
    if len(config.models) == 1:
        return next(iter(config.models.values()))
    raise StepError(f"several models are declared; name one: mlops {command} MODEL")


def run(args: argparse.Namespace) -> int:
    from mlops_sessions.drivers.deploy import ApplyRequest, apply_revision, history
    from mlops_sessions.planning.deploy_plan import pick_target

    config = load_config(args)
    model = pick_model(config, args.model, "rollback")
    store = store_for(config)
    cluster = connect_for(model, args)
    if not args.dry_run:
        _abort_rollout_first(cluster, store, model)
    records, current = history(cluster, store, model.name)
    if not records:
        raise StepError(
            f"no deploy of {model.name!r} is recorded on {cluster.context}/{cluster.namespace}; "
            f"nothing to roll back to (deploy first: `mlops deploy {model.name}`)"
        )
    target = pick_target(records, current, args.to)
    if target is None:
        listing = ", ".join(f"{r['revision']} ({r.get('status')})" for r in records)
        wanted = (
            f"revision {args.to}" if args.to is not None else "an earlier revision that rolled out"
        )
        raise StepError(
            f"cannot roll {model.name!r} back: {wanted} is not recorded (revisions: {listing}; "
            f"current: {current}); pick one with --to REVISION"
        )
    if target.get("status") != "rolled-out":
        print(
            f"mlops rollback: note: revision {target['revision']} was recorded as "
            f"{target.get('status')!r}",
            file=sys.stderr,
        )
    timeout, poll = rollout_seconds(model)
    request = ApplyRequest(
        app=model.name,
        manifests=target["manifests"],
        lineage=target.get("lineage") or {},
        rollout_timeout=timeout,
        source="rollback",
        rollback_of=int(target["revision"]),
        profile=config.profile,
        poll=poll,
    )
    progress = None if args.json or args.dry_run else _progress
    outcome = apply_revision(cluster, store, request, dry_run=args.dry_run, progress=progress)
    result: dict[str, Any] = {
        "model": model.name,
        "target": target["revision"],
        "from": current,
        **outcome.as_dict(),
    }
    emit(args, result, _describe(result))
    if outcome.status == "failed":
        print(
            f"mlops rollback: {outcome.reason}; {(outcome.record or {}).get('restore', '')}",
            file=sys.stderr,
        )
        return 1
    return 0


def _abort_rollout_first(cluster: Any, store: Any, model: ModelConfig) -> None:
    """A rollback during a progressive rollout aborts the rollout first (100 % stable,
    recorded), so the rollback never races the rollout's driver."""
    from mlops_sessions.drivers import rollout_operator, rollout_records
    from mlops_sessions.executors.kube.lease import holder_identity

    if rollout_records.unfinished(cluster, store, model.name) is None:
        return
    timing = rollout_timing(model)
    outcome = rollout_operator.operator_request(
        cluster,
        store,
        model.name,
        "abort",
        f"mlops rollback ({holder_identity()})",
        timing,
        wait_s=3 * timing.rollout_timeout + 60,
        progress=_progress,
    )
    print(
        f"mlops rollback: first aborted the rollout of revision {outcome.revision}: "
        f"{outcome.first_line}",
        file=sys.stderr,
    )


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def _describe(result: dict[str, Any]) -> str:
    model, target, status = result["model"], result["target"], result["status"]
    if status == "dry-run":
        return result.get("diff") or f"{model}: revision {target} is what runs; no changes"
    if status == "unchanged":
        return f"{model}: revision {target}'s manifests already run; nothing was written"
    if status == "rolled-out":
        return (
            f"{model}: rolled back from revision {result['from']} to revision {target} "
            f"(recorded as revision {result['revision']})"
        )
    return f"{model}: rollback to revision {target} FAILED: {result['reason']}"
