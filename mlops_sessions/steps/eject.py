"""``mlops eject``: copy the built-in Dockerfile templates into the project to edit them.

The copies land in ``<project>/dockerfiles/`` next to mlops.yaml, where the image planner
looks before the built-in ones, so an edited template wins from the next build on. An
existing file is never overwritten unless ``--force``.
"""

from __future__ import annotations

import argparse

from mlops_sessions.console import output
from mlops_sessions.console.common import emit, load_config
from mlops_sessions.errors import StepError
from mlops_sessions.planning.dockerfile import BUILTIN_DIR, PROJECT_DIR


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--force", action="store_true", help="overwrite existing copies")
    parser.add_argument(
        "--dry-run", action="store_true", help="list what would be copied and touch nothing"
    )


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    target = (config.root / PROJECT_DIR).resolve()
    sources = sorted(BUILTIN_DIR.glob("*.Dockerfile.j2"))
    if not sources:
        raise StepError(f"no built-in templates in {BUILTIN_DIR}; reinstall mlops-sessions")
    if target == BUILTIN_DIR.resolve():
        raise StepError(f"{target} already holds the built-in templates; edit them there")
    existing = [s.name for s in sources if (target / s.name).exists()]
    if existing and not args.force:
        raise StepError(
            f"{', '.join(existing)} already exist in {target}; pass --force to overwrite"
        )
    copied = [str(target / s.name) for s in sources]
    if not args.dry_run:
        output.write_files({target / s.name: s.read_bytes() for s in sources})
    verb = "would copy" if args.dry_run else "copied"
    emit(args, {"dry_run": args.dry_run, "copied": copied}, f"{verb}:\n  " + "\n  ".join(copied))
    return 0
