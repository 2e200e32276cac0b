"""``mlops promote``: end a progressive rollout early — stable takes the canary's build now.

Front end only. The remaining steps are skipped; the promotion itself is the one a
rollout ends with (stable rolls out the canary's build, then 100 % stable, then the canary
to 0), done by the process driving the rollout when one is alive (asked through the
rollout's ConfigMap), else by this command under the deploy Lease
(:func:`drivers.rollout_operator.operator_request`). The release policy judges the
canary's build as it would judge a deploy of it: ``--force`` overrides, and says so.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlops_sessions.console.cluster_options import add_cluster_arguments
from mlops_sessions.console.common import emit, load_config, store_for
from mlops_sessions.drivers.cluster import connect_for, release_facts, rollout_timing
from mlops_sessions.errors import StepError
from mlops_sessions.planning import release_policy
from mlops_sessions.planning.manifests import RenderInputs


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", metavar="MODEL", help="model whose rollout to promote")
    parser.add_argument(
        "--force",
        action="store_true",
        help="promote despite the release policy (ungated model, failed scan, dirty build "
        "to a protected target)",
    )
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from mlops_sessions.drivers import rollout_operator, rollout_records
    from mlops_sessions.drivers.deploy import find_record, history
    from mlops_sessions.executors.kube.lease import holder_identity

    config = load_config(args)
    model = _pick(config, args.model)
    cluster = connect_for(model, args)
    store = store_for(config)
    state = rollout_records.unfinished(cluster, store, model.name)
    if state is None:
        raise StepError(f"no rollout of {model.name!r} is in progress; nothing to promote")
    records, _ = history(cluster, store, model.name)
    record = find_record(records, state.revision) or {}
    lineage = record.get("lineage") or {}
    inputs = RenderInputs(
        stable_image=state.canary_image,
        run_id=lineage.get("run_id"),
        model_hash=lineage.get("model_hash"),
        git_commit=lineage.get("git_commit"),
        config_hash=str(lineage.get("config_hash") or ""),
    )
    problems = release_policy.problems(
        model, inputs, release_facts(config, model, store_for(config)), profile=config.profile
    )
    if problems and not args.force:
        raise StepError(
            f"refusing to promote {model.name!r}:\n  - "
            + "\n  - ".join(problems)
            + "\n    (--force promotes anyway; `mlops abort` ends the rollout instead)"
        )
    if problems:
        print(f"mlops promote: --force overrides: {'; '.join(problems)}", file=sys.stderr)
    timing = rollout_timing(model)
    outcome = rollout_operator.operator_request(
        cluster,
        store,
        model.name,
        "promote",
        f"mlops promote ({holder_identity()})",
        timing,
        wait_s=3 * timing.rollout_timeout + 60,
        progress=None if args.json else _progress,
    )
    result: dict[str, Any] = {"model": model.name, **outcome.as_dict()}
    emit(args, result, f"{model.name}: {outcome.first_line}\n  report: {outcome.report}")
    if outcome.status != "promoted":
        print(f"mlops promote: {model.name}: {outcome.first_line}", file=sys.stderr)
        return 1
    return 0


def _pick(config: Any, name: str | None) -> Any:
    if name is not None:
        (model,) = config.select_models([name])
        return model
    if len(config.models) == 1:
        return next(iter(config.models.values()))
    raise StepError("several models are declared; name one: mlops promote MODEL")


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)
