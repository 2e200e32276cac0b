"""The image arguments the build, scan and push commands share: which images a command
names (all of the config's by default), checked against the config, and ``--dry-run``."""

from __future__ import annotations

import argparse

from mlops_sessions.config import Config
from mlops_sessions.errors import StepError


def add_images(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("images", nargs="*", metavar="IMAGE", help="images (default: all)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and touch nothing")


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
