"""The ``mlops`` command: one sub-command per pipeline step.

A front end like the nox plugin and the Make targets: it parses arguments, loads the
config, and calls the step module. Step modules live in ``mlops_sessions.steps`` and are
imported only when their command runs, so ``mlops validate`` never pays for TensorFlow.

The commands, their order and their help come from the one pipeline table
(:mod:`mlops_sessions.pipeline`). Every step module exposes ``add_arguments(parser)`` and
``run(args) -> int``. Errors derived from :class:`MlopsError` print as clean messages.
A reader that closes stdout early ends the command quietly with exit status 141
(128 + SIGPIPE, as a shell reports a tool killed by SIGPIPE; see
:mod:`mlops_sessions.console.output`).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Sequence
from typing import Any

from mlops_sessions import pipeline
from mlops_sessions.console import output
from mlops_sessions.errors import MlopsError

CONFIG_ENV = "MLOPS_CONFIG"
VERBOSE_ENV = "MLOPS_VERBOSE"  # the name executors.tf.quiet reads


def add_common(parser: argparse.ArgumentParser) -> None:
    """Options every step accepts."""
    parser.add_argument(
        "-c",
        "--config",
        default=os.environ.get(CONFIG_ENV, "mlops.yaml"),
        help="path to mlops.yaml (default: $MLOPS_CONFIG or ./mlops.yaml)",
    )
    parser.add_argument(
        "-p",
        "--profile",
        default=None,
        help="profile overlay to apply (default: $MLOPS_PROFILE)",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="keep TensorFlow's native log lines (oneDNN, absl notices) in the output",
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The full parser; with command, only that step's module is imported for its options.

    Every step is listed in `mlops --help` either way; importing all step modules just to
    run one would put their imports on the start-up path of every command.
    """
    parser = argparse.ArgumentParser(
        prog="mlops",
        description="Declarative ML delivery: one mlops.yaml, the same steps locally and in CI.",
    )
    from mlops_sessions import __version__

    parser.add_argument("--version", action="version", version=f"mlops-sessions {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="<step>")
    sub.required = True
    for row in pipeline.commands():
        assert row.module is not None  # commands() keeps only rows with a module
        step = sub.add_parser(row.name, help=row.help, description=row.help)
        add_common(step)
        step.set_defaults(_module=row.module)
        if command is None or command == row.name:
            _step_module(row.module).add_arguments(step)
    return parser


def _step_module(name: str) -> Any:
    return importlib.import_module(f"mlops_sessions.steps.{name}")


def _invoked_step(argv: Sequence[str]) -> str | None:
    """The step named on the command line (first word that is a step), if any."""
    for arg in argv:
        if arg in pipeline.BY_NAME and pipeline.BY_NAME[arg].module is not None:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser(_invoked_step(argv)).parse_args(argv)
    except BrokenPipeError:  # `mlops --help | head -1`
        output.quiet_stdout()
        return output.BROKEN_PIPE_EXIT
    if args.verbose:
        # Read by executors.tf.quiet here and in every process a step starts.
        os.environ[VERBOSE_ENV] = "1"
    try:
        code: int = _step_module(args._module).run(args)
        # What is still buffered must reach the reader now, while a closed pipe can be
        # handled here, not in the interpreter's flush at exit.
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        # The reader of our stdout stopped early (`mlops config | head -1`): a quiet exit.
        output.quiet_stdout()
        return output.BROKEN_PIPE_EXIT
    except MlopsError as exc:
        print(f"mlops {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"mlops {args.command}: interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        # An environment fault no step anticipated (a full disk under stdout, a file
        # removed underneath us): one line naming the file, not a traceback.
        if exc.filename is None:
            output.quiet_stdout()  # the failed write may have been stdout itself
        print(f"mlops {args.command}: {output.describe(exc)}", file=sys.stderr)
        return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
