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
import sys
from typing import Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.errors import StepError
from mlops_sessions.planning import release_policy
from mlops_sessions.planning.manifests import RenderInputs
from mlops_sessions.records import builds
from mlops_sessions.steps.cluster import add_cluster_arguments, connect_for, rollout_seconds
from mlops_sessions.steps.common import add_models, emit, load_config, store_for


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


def release_facts(config: Config, model: ModelConfig) -> release_policy.ReleaseFacts:
    """What the store says about model and its images, for the release policy."""
    store = store_for(config)
    blessed = store.blessed(model.name)
    names = release_policy.image_names(model)
    return release_policy.ReleaseFacts(
        blessed_hash=blessed.get("model_hash") if blessed else None,
        ever_blessed={str(b.get("model_hash")) for b in store.blessings(model.name)},
        builds={name: builds.load_record(config.store_path, name, "latest") for name in names},
        scans={name: builds.load_record(config.store_path, name, "scan") for name in names},
        scan_paths={
            name: str(builds.record_path(config.store_path, name, "scan")) for name in names
        },
    )


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
        problems = release_policy.problems(
            model,
            inputs,
            release_facts(config, model),
            overridden=overrides,
            profile=config.profile,
        )
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
