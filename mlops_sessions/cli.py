"""The ``mlops`` command: one sub-command per pipeline step.

A front end like the nox plugin and the Make targets: it parses arguments, loads the
config, and calls the step module. Step modules live in ``mlops_sessions.steps`` and are
imported only when their command runs, so ``mlops validate`` never pays for TensorFlow.

Every step module exposes ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Errors derived from :class:`MlopsError` print as clean messages.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence

from mlops_sessions.errors import MlopsError

# command -> (module under mlops_sessions.steps, one-line help). Order is the help order.
STEPS: dict[str, tuple[str, str]] = {
    "validate": ("validate", "Check mlops.yaml against the schema and cross-field rules."),
    "config": ("config_cmd", "Print the effective config (profile, defaults and ${VAR} applied)."),
    "schema": ("schema_cmd", "Print the JSON Schema of mlops.yaml."),
}

CONFIG_ENV = "MLOPS_CONFIG"


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options every step accepts."""
    parser.add_argument(
        "-c", "--config", default=os.environ.get(CONFIG_ENV, "mlops.yaml"),
        help="path to mlops.yaml (default: $MLOPS_CONFIG or ./mlops.yaml)",
    )
    parser.add_argument(
        "-p", "--profile", default=None,
        help="profile overlay to apply (default: $MLOPS_PROFILE)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlops",
        description="Declarative ML delivery: one mlops.yaml, the same steps on a laptop and in CI.",
    )
    from mlops_sessions import __version__

    parser.add_argument("--version", action="version", version=f"mlops-sessions {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<step>")
    sub.required = True
    for command, (module_name, help_text) in STEPS.items():
        step = sub.add_parser(command, help=help_text, description=help_text)
        add_common(step)
        step.set_defaults(_module=module_name)
        _step_module(module_name).add_arguments(step)
    return parser


def _step_module(name: str):  # type: ignore[no-untyped-def]
    return importlib.import_module(f"mlops_sessions.steps.{name}")


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        code: int = _step_module(args._module).run(args)
        return code
    except MlopsError as exc:
        print(f"mlops {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"mlops {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
