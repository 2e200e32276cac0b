"""``mlops scan``: check built images before they may be pushed.

Non-root user, no secret-looking file or string in a layer the build added, size within
``size_budget_mb``, and Trivy when ``scan.trivy`` asks for it. The report is recorded in
``.mlops/builds/<image>/scan.json``; ``mlops push`` refuses an image whose scan failed.
"""

from __future__ import annotations

import argparse
import contextlib

from mlops_sessions.console.common import emit, load_config, store_for
from mlops_sessions.console.image_options import add_images, select_images
from mlops_sessions.drivers.imaging import scan_image

CHECKS = ("non-root", "secrets", "size")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_images(parser)


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
    from mlops_sessions.executors.docker.engine import connect

    with contextlib.closing(connect()) as client:
        results = [scan_image(client, config, store, name) for name in names]
    emit(args, {"images": results}, "\n".join(str(r["text"]) for r in results))
    return 0 if all(r["passed"] for r in results) else 1
