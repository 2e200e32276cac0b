"""``mlops build``: build each image once per set of inputs, with a real Docker engine.

Plan (pure: Dockerfile, context, tags, labels, input digest) -> with ``--dry-run`` print it
and stop -> otherwise reuse an image that already carries the input digest, or build it,
and record the result in ``.mlops/builds/<image>/build.json``. A serving image carries the
model's blessed SavedModel; an unblessed model is refused unless ``--force``.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from datetime import datetime, timezone
from typing import Any, TextIO

from mlops_sessions import gitinfo
from mlops_sessions.config import Config
from mlops_sessions.errors import StepError
from mlops_sessions.planning.images import ImagePlan, ModelArtifact, plan_image, served_model
from mlops_sessions.planning.tags import tag_facts
from mlops_sessions.records.store import Store
from mlops_sessions.steps.common import emit, load_config, store_for


def add_images(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="images (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and touch nothing")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_images(parser)
    parser.add_argument(
        "--force", action="store_true", help="build a serving image with an unblessed model"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="rebuild every layer, ignore existing images"
    )


def select_images(config: Config, names: list[str]) -> list[str]:
    if not config.images:
        raise StepError("this config declares no images; add one under 'images'")
    unknown = [n for n in names if n not in config.images]
    if unknown:
        raise StepError(
            f"unknown image(s): {', '.join(unknown)}; this config declares: "
            f"{', '.join(config.images)}"
        )
    return names or list(config.images)


def model_artifact(config: Config, store: Store, image: str, force: bool) -> ModelArtifact | None:
    """The SavedModel a serving image carries: the blessed run's (or, with force, the newest)."""
    if config.images[image].kind == "train":
        return None
    model = served_model(config, image).name
    blessed = store.blessed(model)
    if blessed is not None and blessed.get("run_id"):
        run = store.load_run(str(blessed["run_id"]))
        if run is None:
            raise StepError(
                f"model '{model}' is blessed as run {blessed['run_id']}, which is not in "
                f"{store.runs}; retrain and re-evaluate: mlops train {model} && "
                f"mlops evaluate {model}"
            )
        return _artifact(store, run, blessed=True)
    if not force:
        raise StepError(
            f"model '{model}' has no blessed run, so image '{image}' would ship an ungated "
            f"model; run `mlops evaluate {model}` to bless one, or pass --force"
        )
    runs = [r for r in store.list_runs() if r.get("model") == model]
    if not runs:
        raise StepError(f"model '{model}' has no trained run; run `mlops train {model}` first")
    return _artifact(store, runs[-1], blessed=False)


def _artifact(store: Store, run: dict[str, Any], *, blessed: bool) -> ModelArtifact:
    run_id = str(run["run_id"])
    return ModelArtifact(
        model=str(run["model"]),
        run_id=run_id,
        model_hash=str(run.get("model_hash", "")),
        path=store.run_dir(run_id) / str(run.get("model_dir", "model")),
        blessed=blessed,
        record=run,
    )


def plan(
    config: Config,
    store: Store,
    image: str,
    *,
    force: bool,
    dry_run: bool = False,
    local: bool = False,
) -> ImagePlan:
    from mlops_sessions.planning.training import hash_cache_for

    cache = hash_cache_for(config)
    facts = tag_facts(
        gitinfo.state(config.root),
        gitinfo.head_tags(config.root),
        gitinfo.origin_url(config.root),
        datetime.now(timezone.utc),
    )
    result = plan_image(
        config,
        image,
        facts=facts,
        artifact=model_artifact(config, store, image, force),
        hash_cache=cache,
        local=local,
    )
    if not dry_run:  # a dry run writes nothing, not even the hash memo
        cache.save()
    return result


def describe_text(image_plan: ImagePlan) -> str:
    labels = "\n".join(f"  {k}={v}" for k, v in sorted(image_plan.labels.items()))
    model = (
        f"{image_plan.artifact.model} run {image_plan.artifact.run_id}"
        f"{'' if image_plan.artifact.blessed else ' (NOT blessed)'}"
        if image_plan.artifact
        else "none"
    )
    return (
        f"image {image_plan.image} ({image_plan.kind}) from {image_plan.template_origin} "
        f"template {image_plan.template}\n"
        f"refs: {', '.join(image_plan.refs)}\nbase: {image_plan.base}\nmodel: {model}\n"
        f"input digest: {image_plan.input_digest}\nlabels:\n{labels}\n"
        f"--- Dockerfile ---\n{image_plan.build_dockerfile()}"
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    store = store_for(config)
    plans = [
        plan(config, store, name, force=args.force, dry_run=args.dry_run)
        for name in select_images(config, list(args.images))
    ]
    if args.dry_run:
        emit(
            args,
            {"dry_run": True, "images": [p.describe() for p in plans]},
            "\n\n".join(describe_text(p) for p in plans),
        )
        return 0
    from mlops_sessions.executors.docker_engine import connect

    results: list[dict[str, Any]] = []
    lines: list[str] = []
    with contextlib.closing(connect()) as client:
        _build_all(client, plans, store, args.no_cache, results, lines)
    emit(args, {"images": results}, "\n".join(lines))
    return 0


def _build_all(
    client: Any,
    plans: list[ImagePlan],
    store: Store,
    no_cache: bool,
    results: list[dict[str, Any]],
    lines: list[str],
) -> None:
    for image_plan in plans:
        # Progress goes to stderr so --json output on stdout stays parseable.
        entry = build_one(client, image_plan, store, out=sys.stderr, no_cache=no_cache)
        results.append(entry)
        verb = "up to date" if entry["skipped"] else f"built in {entry['seconds']:.1f}s"
        lines.append(
            f"{image_plan.image}: {', '.join(entry['refs'])} {verb} ({entry['image_id'][:19]})"
        )


def build_one(
    client: Any, image_plan: ImagePlan, store: Store, *, out: TextIO, no_cache: bool = False
) -> dict[str, Any]:
    """Build (or reuse) one planned image and record it in the store; returns the record."""
    from mlops_sessions.executors import docker_build
    from mlops_sessions.executors.docker_engine import now_iso, record

    built = docker_build.build(client, image_plan, store, out=out, no_cache=no_cache)
    entry = {
        "image": image_plan.image,
        "kind": image_plan.kind,
        "image_id": built.image_id,
        "refs": list(built.refs),
        "input_digest": image_plan.input_digest,
        "environment_digest": image_plan.environment_digest,
        "base": image_plan.base,
        "model": image_plan.model,
        "model_hash": image_plan.artifact.model_hash if image_plan.artifact else None,
        "run_id": image_plan.artifact.run_id if image_plan.artifact else None,
        "blessed": image_plan.artifact.blessed if image_plan.artifact else None,
        "git_commit": image_plan.git_commit,
        "skipped": built.skipped,
        "reason": built.reason,
        "seconds": round(built.seconds, 3),
        "size_bytes": built.size_bytes,
        "built_at": now_iso(),
    }
    record(store, image_plan.image, "build", entry)
    return entry
