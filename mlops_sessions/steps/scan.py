"""``mlops scan``: check built images before they may be pushed.

Non-root user, no secret-looking file or string in a layer the build added, size within
``size_budget_mb``, and Trivy when ``scan.trivy`` asks for it. The report is recorded in
``.mlops/builds/<image>/scan.json``; ``mlops push`` refuses an image whose scan failed.
"""

from __future__ import annotations

import argparse
import contextlib
from typing import Any

from mlops_sessions.config import Config
from mlops_sessions.errors import StepError
from mlops_sessions.records.store import Store
from mlops_sessions.steps.build import add_images, select_images
from mlops_sessions.steps.common import emit, load_config, store_for

CHECKS = ("non-root", "secrets", "size")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_images(parser)


def built_record(store: Store, image: str) -> dict[str, Any]:
    from mlops_sessions.executors.docker_engine import load_record

    record = load_record(store, image, "build")
    if record is None:
        raise StepError(f"image '{image}' has not been built; run `mlops build {image}` first")
    return record


def scan_image(client: Any, config: Config, store: Store, image: str) -> dict[str, Any]:
    """Scan the last build of image, record scan.json, return the report as a dict."""
    from docker.errors import ImageNotFound

    from mlops_sessions.executors import docker_scan
    from mlops_sessions.executors.docker_engine import now_iso, record

    built = built_record(store, image)
    try:
        report = docker_scan.scan(
            client, built["image_id"], built["refs"][0], config.images[image], built["base"]
        )
    except ImageNotFound:
        raise StepError(
            f"the last build of '{image}' ({built['image_id'][:19]}) is no longer on this Docker "
            f"engine; run `mlops build {image}` again"
        ) from None
    result = {**report.as_dict(), "image": image, "scanned_at": now_iso(), "text": report.render()}
    record(store, image, "scan", result)
    return result


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    store = store_for(config)
    names = select_images(config, list(args.images))
    if args.dry_run:
        planned = []
        for name in names:
            checks = [*CHECKS, *(("trivy",) if config.images[name].scan.trivy else ())]
            planned.append({"image": name, "checks": checks})
        text = "\n".join(f"{p['image']}: would check {', '.join(p['checks'])}" for p in planned)
        emit(args, {"dry_run": True, "images": planned}, text)
        return 0
    from mlops_sessions.executors.docker_engine import connect

    with contextlib.closing(connect()) as client:
        results = [scan_image(client, config, store, name) for name in names]
    emit(args, {"images": results}, "\n".join(str(r["text"]) for r in results))
    return 0 if all(r["passed"] for r in results) else 1
