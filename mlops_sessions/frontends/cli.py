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
from typing import Any

from mlops_sessions.errors import MlopsError

# command -> (module under mlops_sessions.steps, one-line help). Order is the help order.
STEPS: dict[str, tuple[str, str]] = {
    "validate": ("validate", "Check mlops.yaml against the schema and cross-field rules."),
    "config": ("config_cmd", "Print the effective config (profile, defaults and ${VAR} applied)."),
    "schema": ("schema_cmd", "Print the JSON Schema of mlops.yaml."),
    "test": ("test_cmd", "Run the team's tests (pytest) in the training environment."),
    "train": ("train", "Train models; unchanged inputs reuse the stored run (--force retrains)."),
    "evaluate": ("evaluate", "Gate the trained model on its metrics; bless it when it passes."),
    "lineage": ("lineage", "Trace a run, model hash or commit from commit to blessed model."),
    "serve": ("serve", "Serve the blessed (or a named) SavedModel: TF Serving REST API."),
    "build": (
        "build",
        "Build images with Docker (one per commit); unchanged inputs build nothing.",
    ),
    "scan": ("scan", "Check built images: non-root, no secrets in layers, size budget, Trivy."),
    "push": ("push", "Push scanned images; record repo@sha256 digests for render and deploy."),
    "eject": ("eject", "Copy the built-in Dockerfile templates into ./dockerfiles to edit them."),
    "ci": ("ci", "Write a GitHub Actions or GitLab CI workflow that runs the same nox sessions."),
    "make": ("make", "Write mlops.mk: one Make target per pipeline session."),
    "render": ("render", "Render Kubernetes and Istio manifests (offline, deterministic)."),
    "fetch-model": ("fetch_model", "Download a model from S3, check its sha256, unpack it."),
    "deploy": ("deploy", "Apply manifests to Kubernetes, wait for rollout, restore on failure."),
    "rollback": ("rollback", "Return a model to its previous (or a named) revision, no rebuild."),
    "status": ("status", "Show what runs: image, digest, commit, model hash, weights, replicas."),
    "init": ("init", "Scaffold a new project that runs `nox -s test train evaluate` as is."),
}

CONFIG_ENV = "MLOPS_CONFIG"


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
    for name, (module_name, help_text) in STEPS.items():
        step = sub.add_parser(name, help=help_text, description=help_text)
        add_common(step)
        step.set_defaults(_module=module_name)
        if command is None or command == name:
            _step_module(module_name).add_arguments(step)
    return parser


def _step_module(name: str) -> Any:
    return importlib.import_module(f"mlops_sessions.steps.{name}")


def _invoked_step(argv: Sequence[str]) -> str | None:
    """The step named on the command line (first word that is a step), if any."""
    for arg in argv:
        if arg in STEPS:
            return arg
        if not arg.startswith("-"):
            return None
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser(_invoked_step(argv)).parse_args(argv)
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
