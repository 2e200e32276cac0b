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
from typing import Any

from mlops_sessions.console.common import emit, load_config, store_for
from mlops_sessions.console.image_options import add_images, select_images
from mlops_sessions.drivers.imaging import build_one, plan
from mlops_sessions.planning.images import ImagePlan
from mlops_sessions.records.store import Store


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_images(parser)
    parser.add_argument(
        "--force", action="store_true", help="build a serving image with an unblessed model"
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="rebuild every layer, ignore existing images"
    )


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
    from mlops_sessions.executors.docker.engine import connect

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
