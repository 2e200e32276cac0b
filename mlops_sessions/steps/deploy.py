"""``mlops deploy``: render, check the release policy, apply, wait, record — or restore.

Front end only. Per model it finds the image digests (:mod:`planning.k8s_inputs`), refuses
what must not ship (policy below), renders and validates the manifests offline, logs in to
the cluster (:mod:`executors.kube`) and hands over to :mod:`executors.kube_deploy`.

Release policy (``--force`` overrides each, and the record says it was forced):

- the model the new build carries must be the blessed one (``Store.blessed(model)``'s
  model_hash): a model that did not pass the gate is not deployed;
- an image whose scan failed (``.mlops/builds/<image>/scan.json`` with ``"passed": false``)
  is not deployed;
- a build from a dirty git tree (its pushed tag ends ``-dirty-<digest>``, or its build
  record says ``"git_dirty": true``) does not go to a protected target (``deploy.protected``).
"""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.errors import StepError
from mlops_sessions.planning.k8s_common import seconds
from mlops_sessions.planning.manifests import RenderInputs
from mlops_sessions.records import builds
from mlops_sessions.steps.common import add_models, emit, load_config, store_for


def add_cluster_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by deploy, rollback and status."""
    group = parser.add_argument_group("Kubernetes API")
    group.add_argument(
        "--kubeconfig",
        default=None,
        help="kubeconfig file (default: $KUBECONFIG, ~/.kube/config, in-cluster)",
    )
    group.add_argument(
        "--api-timeout",
        type=float,
        default=15.0,
        metavar="SECONDS",
        help="timeout of one API request (default: 15)",
    )
    group.add_argument(
        "--api-retries",
        type=int,
        default=6,
        metavar="N",
        help="attempts for an API call failing with 409/429/5xx/timeout (default: 6)",
    )
    group.add_argument(
        "--api-backoff",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="first retry delay, doubling with jitter up to 8s (default: 0.5)",
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_models(parser)
    parser.add_argument(
        "--image",
        metavar="NAME=REF@sha256:DIGEST",
        action="append",
        default=[],
        help="deploy this image for NAME (a key under 'images:') instead of the recorded build",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="print the diff against the cluster; change nothing"
    )
    parser.add_argument(
        "--force",
        action="store_true",
        help="deploy despite the release policy (ungated model, failed scan, dirty build "
        "to a protected target); the record notes it",
    )
    add_cluster_arguments(parser)


def connect_for(model: ModelConfig, args: argparse.Namespace) -> Any:
    """A reachable Cluster for the model's deploy.context / deploy.namespace."""
    from mlops_sessions.executors.kube import RetryPolicy, connect

    policy = RetryPolicy(
        attempts=max(1, args.api_retries),
        initial=args.api_backoff,
        maximum=max(args.api_backoff, 8.0),
        request_timeout=args.api_timeout,
    )
    cluster = connect(
        model.deploy.context, model.deploy.namespace, kubeconfig=args.kubeconfig, policy=policy
    )
    cluster.ping()
    return cluster


def rollout_seconds(model: ModelConfig) -> tuple[float, float]:
    """(deadline, poll interval) from deploy.rollout_timeout."""
    timeout = float(seconds(model.deploy.rollout_timeout, minimum=1))
    return timeout, min(1.0, timeout / 20)


# --- release policy -----------------------------------------------------------------------


def _build_record(config: Config, image_name: str) -> dict[str, Any]:
    return builds.load_record(config.store_path, image_name, "latest") or {}


# The tag policy marks a dirty-tree build's tag '<tag>-dirty-<12 hex of the input digest>'.
_DIRTY_TAG = re.compile(r"-dirty-[0-9a-f]{12}$")


def _dirty(record: dict[str, Any]) -> bool:
    """Whether a build record is of a dirty git tree: its flag, or its tags say so."""
    if record.get("git_dirty") or record.get("dirty"):
        return True
    tags = record.get("tags") or []
    return any(_DIRTY_TAG.search(str(tag)) for tag in tags)


def _image_names(model: ModelConfig) -> list[str]:
    names = [model.image] if model.image else []
    if model.rollout is not None and model.rollout.canary is not None:
        canary = model.rollout.canary.image
        if canary and canary not in names:
            names.append(canary)
    return names


def policy_problems(
    config: Config, model: ModelConfig, inputs: RenderInputs, overrides: dict[str, str]
) -> list[str]:
    """Every reason the release policy refuses this deploy (empty: it may go)."""
    store = store_for(config)
    problems: list[str] = []
    blessed = store.blessed(model.name)
    incoming = inputs.canary_model_hash or inputs.model_hash
    if incoming is None:
        problems.append(
            f"the image's model is unknown (no model_hash in its build record"
            f"{' — --image carries no lineage' if overrides else ''}); deploy a recorded "
            "build of a blessed model"
        )
    elif blessed is None:
        problems.append(
            f"model {model.name!r} has no blessed run: it did not pass the gate; run "
            f"`mlops evaluate {model.name}`"
        )
    elif blessed.get("model_hash") != incoming:
        problems.append(
            f"the image carries model {incoming[:12]}, but the blessed model is "
            f"{str(blessed.get('model_hash'))[:12]}: this model did not pass the gate; "
            f"evaluate it (`mlops evaluate {model.name}`) or build the blessed one"
        )
    if (
        blessed is not None
        and inputs.canary_model_hash is not None
        and inputs.model_hash not in {b.get("model_hash") for b in store.blessings(model.name)}
    ):
        problems.append(f"the stable track's model {str(inputs.model_hash)[:12]} was never blessed")
    for name in _image_names(model):
        scan = builds.record_path(config.store_path, name, "scan")
        verdict = builds.load_record(config.store_path, name, "scan")
        if verdict is not None and verdict.get("passed") is False:
            summary = verdict.get("summary") or verdict.get("reason") or ""
            problems.append(
                f"image {name!r} failed its scan ({scan})"
                + (f": {summary}" if summary else "")
                + "; fix the findings and rebuild"
            )
        if model.deploy.protected and name not in overrides:
            record = _build_record(config, name)
            if _dirty(record):
                target = f"profile {config.profile!r}" if config.profile else "this target"
                problems.append(
                    f"image {name!r} was built from a dirty git tree and {target} is protected "
                    "(deploy.protected); commit and rebuild"
                )
    return problems


# --- the step -----------------------------------------------------------------------------


def run(args: argparse.Namespace) -> int:
    from mlops_sessions.planning import k8s_inputs, k8s_validate, manifests

    config = load_config(args)
    overrides = k8s_inputs.parse_overrides(args.image, config)
    models = config.select_models(list(args.models))
    plans = []
    # Every model is checked and rendered before anything is applied to any cluster.
    for model in models:
        inputs = k8s_inputs.inputs_for(config, model, overrides)
        problems = policy_problems(config, model, inputs, overrides)
        if problems and not args.force:
            raise StepError(
                f"refusing to deploy {model.name!r}:\n  - "
                + "\n  - ".join(problems)
                + "\n    (--force deploys anyway and records that it was forced)"
            )
        objects = manifests.render(config, model, inputs)
        k8s_validate.validate_objects(objects, model.deploy.kubernetes_version)
        plans.append((model, inputs, objects, tuple(problems)))

    results = []
    failed = []
    for model, inputs, objects, forced in plans:
        outcome = deploy_model(config, model, inputs, objects, forced, args)
        results.append({"model": model.name, **outcome.as_dict()})
        if outcome.status == "failed":
            failed.append(
                f"{model.name}: revision {outcome.revision} failed: {outcome.reason}; "
                f"{(outcome.record or {}).get('restore', '')}"
            )
    emit(args, {"deployments": results}, "\n".join(_describe(r) for r in results))
    if failed:
        print("mlops deploy: " + "\n".join(failed), file=sys.stderr)
        return 1
    return 0


def deploy_model(
    config: Config,
    model: ModelConfig,
    inputs: RenderInputs,
    objects: list[dict[str, Any]],
    forced: tuple[str, ...],
    args: argparse.Namespace,
) -> Any:
    from mlops_sessions.executors.kube_deploy import ApplyRequest, apply_revision

    if forced:
        print(f"mlops deploy: --force overrides: {'; '.join(forced)}", file=sys.stderr)
    cluster = connect_for(model, args)
    timeout, poll = rollout_seconds(model)
    lineage = {
        "stable_image": inputs.stable_image,
        "run_id": inputs.run_id,
        "model_hash": inputs.model_hash,
        "git_commit": inputs.git_commit,
        "config_hash": inputs.config_hash,
        "canary_image": inputs.canary_image,
        "canary_model_hash": inputs.canary_model_hash,
        "canary_git_commit": inputs.canary_git_commit,
    }
    request = ApplyRequest(
        app=model.name,
        manifests=objects,
        lineage=lineage,
        rollout_timeout=timeout,
        profile=config.profile,
        forced=forced,
        poll=poll,
    )
    progress = None if args.json or args.dry_run else _progress
    return apply_revision(
        cluster, store_for(config), request, dry_run=args.dry_run, progress=progress
    )


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def _describe(result: dict[str, Any]) -> str:
    model, status, revision = result["model"], result["status"], result["revision"]
    if status == "dry-run":
        diff = result.get("diff") or ""
        return diff if diff else f"{model}: no changes (the cluster runs revision {revision})"
    if status == "unchanged":
        return f"{model}: unchanged — revision {revision} already runs; nothing was written"
    if status == "rolled-out":
        changed = [c for c in result["changes"] if c["action"] != "unchanged"]
        lines = [f"{model}: revision {revision} rolled out ({len(changed)} objects changed)"]
        lines += [f"  {c['action']:>9} {c['object']}" for c in changed]
        return "\n".join(lines)
    restored = result.get("restored_to")
    after = f"restored revision {restored}" if restored is not None else "nothing restored"
    return f"{model}: revision {revision} FAILED ({result['reason']}); {after}"
