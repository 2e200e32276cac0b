"""``mlops push``: push the last build of each image and record its digest.

An image is pushed only when its scan passed (``mlops scan`` runs here when the last build
has not been scanned). The registry's manifest digest is written to
``.mlops/builds/<image>/latest.json`` (``{"image": "repo@sha256:...", "model_hash",
"run_id", "git_commit", ...}``, history in ``history.jsonl``): render and deploy pin
images by that digest, never by tag.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from typing import Any

from mlops_sessions.config import Config
from mlops_sessions.drivers.imaging import add_images, built_record, scan_image, select_images
from mlops_sessions.errors import StepError
from mlops_sessions.records.store import Store
from mlops_sessions.steps.common import emit, load_config, store_for


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_images(parser)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    store = store_for(config)
    names = select_images(config, list(args.images))
    builds = {name: built_record(store, name) for name in names}
    if args.dry_run:
        text = "\n".join(f"{n}: would push {', '.join(b['refs'])}" for n, b in builds.items())
        emit(args, {"dry_run": True, "images": {n: b["refs"] for n, b in builds.items()}}, text)
        return 0
    from mlops_sessions.executors.docker.engine import connect

    with contextlib.closing(connect()) as client:
        results = [_push_one(client, config, store, name, built) for name, built in builds.items()]
    emit(args, {"images": results}, "\n".join(f"{r['name']}: {r['image']}" for r in results))
    return 0


def _push_one(
    client: Any, config: Config, store: Store, name: str, built: dict[str, Any]
) -> dict[str, Any]:
    from mlops_sessions.executors.docker.engine import load_record, now_iso, record
    from mlops_sessions.executors.docker.push import push

    scanned = load_record(store, name, "scan")
    if scanned is None or scanned.get("image_id") != built["image_id"]:
        scanned = scan_image(client, config, store, name)
    if not scanned.get("passed"):
        raise StepError(
            f"push of '{name}' blocked: its scan failed\n{scanned.get('text', '')}\n"
            f"fix the findings, then `mlops build {name}` and push again"
        )
    digest = ""
    for ref in built["refs"]:
        digest = push(client, ref, image=name, out=sys.stderr)
    repository = built["refs"][0].rsplit(":", 1)[0]
    latest = {
        "image": f"{repository}@{digest}",
        "digest": digest,
        "tags": built["refs"],
        "image_id": built["image_id"],
        "input_digest": built["input_digest"],
        "model": built.get("model"),
        "model_hash": built.get("model_hash"),
        "run_id": built.get("run_id"),
        "git_commit": built.get("git_commit"),
        "pushed_at": now_iso(),
    }
    record(store, name, "latest", latest)
    return {"name": name, **latest}
