"""``mlops abort``: end a progressive rollout — 100 % stable at once, the canary to 0.

Front end only. The process driving the rollout does it when one is alive (asked through
the rollout's ConfigMap); otherwise this command does it under the deploy Lease
(:func:`drivers.rollout_operator.operator_request`). The revision is recorded as failed
with the measurements so far, and what was restored.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlops_sessions.console.cluster_options import add_cluster_arguments
from mlops_sessions.console.common import emit, load_config, store_for
from mlops_sessions.drivers.cluster import connect_for, rollout_timing
from mlops_sessions.errors import StepError


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", nargs="?", metavar="MODEL", help="model whose rollout to abort")
    add_cluster_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from mlops_sessions.drivers import rollout_operator
    from mlops_sessions.executors.kube.lease import holder_identity

    config = load_config(args)
    if args.model is not None:
        (model,) = config.select_models([args.model])
    elif len(config.models) == 1:
        model = next(iter(config.models.values()))
    else:
        raise StepError("several models are declared; name one: mlops abort MODEL")
    cluster = connect_for(model, args)
    timing = rollout_timing(model)
    outcome = rollout_operator.operator_request(
        cluster,
        store_for(config),
        model.name,
        "abort",
        f"mlops abort ({holder_identity()})",
        timing,
        wait_s=3 * timing.rollout_timeout + 60,
        progress=None if args.json else _progress,
    )
    result: dict[str, Any] = {"model": model.name, **outcome.as_dict()}
    emit(
        args,
        result,
        f"{model.name}: rollout of revision {outcome.revision} {outcome.status}: "
        f"{outcome.first_line}; restored revision {outcome.restored_to}\n"
        f"  report: {outcome.report}",
    )
    return 0


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)
