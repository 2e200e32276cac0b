"""``mlops validate``: schema + cross-field checks, under every profile the file declares.

Without ``--profile`` the file is checked as written and under each of its profiles (also
when ``MLOPS_PROFILE`` is set: CI sets it for the whole pipeline, and a profile that only
breaks in production must be caught there and on the laptop); ``--profile X`` narrows
the check to that profile. The checks are the loader's: the
schema, then the cross-field rules that render and deploy enforce through the same
functions (:mod:`mlops_sessions.config.checks`).
"""

from __future__ import annotations

import argparse
import os

from mlops_sessions.errors import ConfigError, Problem
from mlops_sessions.steps.common import emit


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--all-profiles",
        action="store_true",
        help="check every declared profile even when --profile names one "
        "(without --profile, every profile is checked anyway)",
    )


def run(args: argparse.Namespace) -> int:
    from mlops_sessions.config.loader import PROFILE_ENV, load

    # Only --profile narrows the check. MLOPS_PROFILE picks the profile of the other steps
    # (CI sets it for the whole pipeline); validate still checks that one and every other.
    narrowed = args.profile or None
    env = {key: value for key, value in os.environ.items() if key != PROFILE_ENV}
    config = load(args.config, profile=narrowed, env=env)
    checked = [narrowed or "(no profile)"]
    if args.all_profiles or narrowed is None:
        problems: list[Problem] = []
        for profile in config.profiles:
            if profile == narrowed:
                continue
            try:
                load(args.config, profile=profile, env=env)
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
