"""``mlops push``: push the last build of each image and record its digest.

An image is pushed only when its scan passed (``mlops scan`` runs here when the last build
has not been scanned). The registry's manifest digest is written to
``.mlops/builds/<image>/latest.json`` (``{"image": "repo@sha256:...", "model_hash",
"run_id", "git_commit", ...}``, history in ``history.jsonl``): render and deploy pin
images by that digest, never by tag. With ``images.<name>.sign`` the digest is signed and
attested before it is recorded (:mod:`drivers.signing`); the output says what signing will
do (``--dry-run``) or did (the digests of the signature and attestation layers).
"""

from __future__ import annotations

import argparse
import contextlib

from mlops_sessions.console.common import emit, load_config, store_for
from mlops_sessions.console.image_options import add_images, select_images
from mlops_sessions.drivers.imaging import built_record, push_image
from mlops_sessions.drivers.signing import describe_intent, describe_signed, intent


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_images(parser)


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    store = store_for(config)
    names = select_images(config, list(args.images))
    builds = {name: built_record(store, name) for name in names}
    if args.dry_run:
        plans = {
            name: {"refs": built["refs"], "signing": intent(config.images[name].sign)}
            for name, built in builds.items()
        }
        text = "\n".join(
            f"{name}: would push {', '.join(plan['refs'])}\n"
            f"  {describe_intent(config.images[name].sign)}"
            for name, plan in plans.items()
        )
        emit(args, {"dry_run": True, "images": plans}, text)
        return 0
    from mlops_sessions.executors.docker.engine import connect

    with contextlib.closing(connect()) as client:
        results = [push_image(client, config, store, name, built) for name, built in builds.items()]
    lines = []
    for result in results:
        lines.append(f"{result['name']}: {result['image']}")
        signing = result.get("signing")
        lines.append(
            f"  signed: {describe_signed(result['image'], signing)}" if signing else "  not signed"
        )
    emit(args, {"images": results}, "\n".join(lines))
    return 0
