"""``mlops deploy``: render, check the release policy, apply, wait, record — or restore.

Front end only. Per model it finds the image digests (:mod:`planning.k8s_inputs`), refuses
what must not ship (policy below), renders and validates the manifests offline, logs in to
the cluster (:mod:`executors.kube.client`) and hands over to :mod:`drivers.deploy`.

With ``rollout.steps`` (docs/rollout.md) a new build of a model that already runs goes
out progressively through :mod:`drivers.rollout`: stable keeps what the
cluster's revision record says runs, the canary gets the new build and the steps' split,
each step is judged live, then promoted or aborted. A first deploy, and a deploy of the
build that already runs, apply as usual. ``--resume`` continues an interrupted rollout.

Release policy (``--force`` overrides each, and the record says it was forced):

- the model the new build carries must be the blessed one (``Store.blessed(model)``'s
  model_hash): a model that did not pass the gate is not deployed;
- an image whose scan failed (``.mlops/builds/<image>/scan.json`` with ``"passed": false``)
  is not deployed;
- a build from a dirty git tree (its pushed tag ends ``-dirty-<digest>``, or its build
  record says ``"git_dirty": true``) does not go to a protected target (``deploy.protected``).

With ``deploy.verify`` every image digest is verified against the registry first
(:mod:`drivers.verification`: signature, SBOM, provenance, the gate's verdict, tags not
moved); a digest that does not verify is refused in one line, ``--force`` or not, before
any request reaches the cluster.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.console.cluster_options import add_cluster_arguments, add_interrupt_argument
from mlops_sessions.console.common import add_models, emit, load_config, store_for
from mlops_sessions.drivers.cluster import (
    ModelAnalyser,
    analyser_for,
    connect_for,
    interrupts,
    release_facts,
    rollout_seconds,
    rollout_timing,
)
from mlops_sessions.errors import StepError
from mlops_sessions.planning import istio_routing, release_policy, rollout_objects
from mlops_sessions.planning import rollout as rollout_plan
from mlops_sessions.planning.manifests import RenderInputs

__all__ = ["add_arguments", "run"]


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
    parser.add_argument(
        "--resume",
        action="store_true",
        help="continue an interrupted progressive rollout from its record on the cluster "
        "(refused unless the canary's build and rollout spec are unchanged)",
    )
    add_interrupt_argument(parser)
    add_cluster_arguments(parser)


# --- the step -----------------------------------------------------------------------------


def run(args: argparse.Namespace, *, analyse: ModelAnalyser | None = None) -> int:
    """analyse: the live analysis of a window (default: Prometheus); tests pass a fake."""
    from mlops_sessions.drivers import render_inputs, verification
    from mlops_sessions.planning import k8s_inputs, k8s_validate, manifests

    config = load_config(args)
    overrides = k8s_inputs.parse_overrides(args.image, config)
    models = config.select_models(list(args.models))
    plans = []
    # Every model is checked and rendered before anything is applied to any cluster.
    for model in models:
        inputs = render_inputs.inputs_for(config, model, overrides)
        problems = release_policy.problems(
            model,
            inputs,
            release_facts(config, model, store_for(config)),
            overridden=overrides,
            profile=config.profile,
        )
        if problems and not args.force:
            raise StepError(
                f"refusing to deploy {model.name!r}:\n  - "
                + "\n  - ".join(problems)
                + "\n    (--force deploys anyway and records that it was forced)"
            )
        # deploy.verify: signatures and attestations from the registry, before any
        # Kubernetes request; the canary of a progressive rollout is this same build.
        verification.verify_release(config, model, inputs, overrides)
        objects = manifests.render(config, model, inputs)
        k8s_validate.validate_objects(objects, model.deploy.kubernetes_version)
        plans.append((model, inputs, objects, tuple(problems)))

    if args.resume and not any(rollout_objects.progressive(m) for m, *_ in plans):
        raise StepError("--resume continues a progressive rollout, but no selected model has "
                        "rollout.steps")  # fmt: skip
    results = []
    failed = []
    for model, inputs, objects, forced in plans:
        if rollout_objects.progressive(model) and not args.dry_run:
            release = progressive_deploy(config, model, inputs, objects, forced, args, analyse)
            if release is not None:
                results.append({"model": model.name, **release.as_dict()})
                if release.status != "promoted":
                    failed.append(
                        f"{model.name}: {release.first_line}"
                        + (f"\n  rollout report: {release.report}" if release.report else "")
                    )
                continue
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
    from mlops_sessions.drivers.deploy import ApplyRequest, apply_revision

    if forced:
        print(f"mlops deploy: --force overrides: {'; '.join(forced)}", file=sys.stderr)
    cluster = connect_for(model, args)
    timeout, poll = rollout_seconds(model)
    lineage = _lineage(inputs)
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


def progressive_deploy(
    config: Config,
    model: ModelConfig,
    inputs: RenderInputs,
    objects: list[dict[str, Any]],
    forced: tuple[str, ...],
    args: argparse.Namespace,
    analyse: ModelAnalyser | None,
) -> Any:
    """A release through rollout.steps; None when the usual apply is the right one (a first
    deploy, or the build that already runs)."""
    from mlops_sessions.drivers import rollout as driver
    from mlops_sessions.drivers import rollout_records

    cluster = connect_for(model, args)
    store = store_for(config)
    timing = rollout_timing(model, args.lease_margin)
    progress = None if args.json else _progress
    if args.resume:
        with interrupts(args.on_interrupt) as interrupt:
            return driver.resume(
                cluster,
                store,
                model.name,
                canary_image=inputs.stable_image,
                spec_hash=rollout_plan.spec_hash(model),
                analyse=analyser_for(config, model, analyse),
                timing=timing,
                interrupt=interrupt,
                progress=progress,
            )
    pending = rollout_records.unfinished(cluster, store, model.name)
    if pending is not None:
        raise rollout_records.refuse_unfinished(cluster, pending)
    running = rollout_records.running_record(cluster, store, model.name)
    running_image = rollout_objects.running_image(running, model.name)
    if running is None or running_image is None:
        return None  # nothing runs: straight to stable
    if rollout_plan.digest(running_image) == rollout_plan.digest(inputs.stable_image):
        return None  # the same build: config edits apply as usual, nothing to judge
    assert model.rollout is not None and model.rollout.canary is not None
    if forced:
        print(f"mlops deploy: --force overrides: {'; '.join(forced)}", file=sys.stderr)
    plan = driver.ReleasePlan(
        app=model.name,
        final=objects,
        canary=rollout_objects.canary_set(objects, running["manifests"]),
        ab=istio_routing.ab_matches(model.rollout),
        canary_replicas=model.rollout.canary.replicas,
        steps=tuple(model.rollout.steps),
        limits=rollout_plan.Limits.of(model),
        spec_hash=rollout_plan.spec_hash(model),
        stable_image=running_image,
        canary_image=inputs.stable_image,
        lineage=_lineage(inputs),
        profile=config.profile,
        forced=forced,
    )
    with interrupts(args.on_interrupt) as interrupt:
        return driver.release(
            cluster,
            store,
            plan,
            analyser_for(config, model, analyse),
            timing,
            interrupt=interrupt,
            progress=progress,
        )


def _lineage(inputs: RenderInputs) -> dict[str, Any]:
    return {
        "stable_image": inputs.stable_image,
        "run_id": inputs.run_id,
        "model_hash": inputs.model_hash,
        "git_commit": inputs.git_commit,
        "config_hash": inputs.config_hash,
        "canary_image": inputs.canary_image,
        "canary_model_hash": inputs.canary_model_hash,
        "canary_git_commit": inputs.canary_git_commit,
    }


def _progress(line: str) -> None:
    print(f"  {line}", file=sys.stderr, flush=True)


def _describe(result: dict[str, Any]) -> str:
    model, status, revision = result["model"], result["status"], result["revision"]
    if "rollout" in result:
        report = f"\n  report: {result['report']}" if result.get("report") else ""
        line = str(result["first_line"]).removeprefix(f"{model}: ")
        return f"{model}: rollout of revision {revision} {status.upper()}: {line}{report}"
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
