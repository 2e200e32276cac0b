"""``mlops validate``: schema + cross-field checks, for one profile or all of them."""

from __future__ import annotations

import argparse

from mlops_sessions.errors import ConfigError, Problem
from mlops_sessions.steps.common import emit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--all-profiles",
        action="store_true",
        help="validate the file under every profile it declares, and without one",
    )


def run(args: argparse.Namespace) -> int:
    from mlops_sessions.config.loader import load

    config = load(args.config, profile=args.profile)
    checked = [args.profile or "(no profile)"]
    if args.all_profiles:
        problems: list[Problem] = []
        for profile in config.profiles:
            try:
                load(args.config, profile=profile)
            except ConfigError as exc:
                problems.extend(p for p in exc.problems if p not in problems)
            checked.append(profile)
        if problems:
            raise ConfigError(problems)
    models = list(config.models)
    plural = "s" if len(models) != 1 else ""
    emit(
        args,
        {"valid": True, "file": args.config, "profiles": checked, "models": models},
        f"{args.config}: valid ({len(models)} model{plural}: {', '.join(models)}; "
        f"checked: {', '.join(checked)})",
    )
    return 0
