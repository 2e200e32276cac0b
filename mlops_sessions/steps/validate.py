"""``mlops validate``: schema + cross-field checks, under every profile the file declares.

Without ``--profile`` the file is checked as written and under each of its profiles (also
when ``MLOPS_PROFILE`` is set: CI sets it for the whole pipeline, and a profile that only
breaks in production must be caught there and on the laptop); ``--profile X`` narrows
the check to that profile. An unset ``${VAR}`` (without default) in a profile other than
the one in use (``--profile``, else ``MLOPS_PROFILE``) is a notice naming the profile and
the variable, not an error: prod's namespace may come from the prod CI job alone. The
values that use it are not judged then; ``--strict-env`` makes every profile's unset
variables errors. The checks are the loader's: the
schema, then the cross-field rules that render and deploy enforce through the same
functions (:mod:`mlops_sessions.config.rules`).
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import TYPE_CHECKING

from mlops_sessions.console.common import emit
from mlops_sessions.errors import ConfigError, Problem

if TYPE_CHECKING:
    from mlops_sessions.config.loader import UnsetVariable


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--all-profiles",
        action="store_true",
        help="check every declared profile even when --profile names one "
        "(without --profile, every profile is checked anyway)",
    )
    parser.add_argument(
        "--strict-env",
        action="store_true",
        help="an unset ${VAR} in any profile is an error (default: only in the profile in "
        "use, --profile or $MLOPS_PROFILE; in the others it is a notice)",
    )


def run(args: argparse.Namespace) -> int:
    from mlops_sessions.config.loader import PROFILE_ENV, check_profile, load

    # Only --profile narrows the check. MLOPS_PROFILE picks the profile of the other steps
    # (CI sets it for the whole pipeline); validate still checks that one and every other.
    narrowed = args.profile or None
    # The profile whose environment this machine must provide: the one the steps would use.
    in_use = narrowed or os.environ.get(PROFILE_ENV) or None
    env = {key: value for key, value in os.environ.items() if key != PROFILE_ENV}
    config = load(args.config, profile=narrowed, env=env)
    checked = [narrowed or "(no profile)"]
    notices: list[tuple[str, UnsetVariable]] = []
    if args.all_profiles or narrowed is None:
        problems: list[Problem] = []
        for profile in config.profiles:
            if profile == narrowed:
                continue
            strict = args.strict_env or profile == in_use
            try:
                unset = check_profile(args.config, profile, env, strict_env=strict)
            except ConfigError as exc:
                problems.extend(p for p in exc.problems if p not in problems)
            else:
                notices += [(profile, found) for found in unset]
            checked.append(profile)
        if problems:
            raise ConfigError(problems)
    for profile, found in notices:
        print(f"mlops validate: {notice_text(profile, found)}", file=sys.stderr)
    models = list(config.models)
    plural = "s" if len(models) != 1 else ""
    noted = f"; {len(notices)} notice{'s' if len(notices) != 1 else ''}" if notices else ""
    emit(
        args,
        {
            "valid": True,
            "file": args.config,
            "profiles": checked,
            "models": models,
            "notices": [
                {
                    "profile": profile,
                    "variable": found.variable,
                    "path": found.problem.path,
                    "line": found.problem.line,
                    "column": found.problem.column,
                    "message": notice_text(profile, found),
                }
                for profile, found in notices
            ],
        },
        f"{args.config}: valid ({len(models)} model{plural}: {', '.join(models)}; "
        f"checked: {', '.join(checked)}{noted})",
    )
    return 0


def notice_text(profile: str, found: UnsetVariable) -> str:
    """One notice: the profile, the variable, where it is used, and how to make it count."""
    problem = found.problem
    where = problem.file + "".join(f":{n}" for n in (problem.line, problem.column) if n is not None)
    return (
        f"notice: profile '{profile}' uses ${{{found.variable}}}, which is not set here "
        f"({where} {problem.path}); the values that use it were not checked. Set it where "
        f"that profile runs (e.g. its CI job), or check with `mlops validate --profile "
        f"{profile}` (or --strict-env) to make it an error"
    )
