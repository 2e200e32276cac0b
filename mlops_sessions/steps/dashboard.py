"""``mlops dashboard``: print the project's Grafana dashboard (JSON), or write it to a file.

The same dashboard ``mlops render`` ships in a ConfigMap for Grafana's sidecar
(``monitoring/<project>-dashboard.yaml``), built by :mod:`planning.dashboard`: import the
printed JSON by hand into a Grafana that has no sidecar, or diff it in review.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mlops_sessions.console import argtypes, output
from mlops_sessions.console.common import emit, load_config
from mlops_sessions.planning import dashboard


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--out",
        type=argtypes.path_text,
        metavar="FILE",
        default=None,
        help="write the dashboard JSON to FILE instead of stdout",
    )


def run(args: argparse.Namespace) -> int:
    """Without --out the dashboard itself is the output (JSON, with or without --json)."""
    config = load_config(args)
    text = dashboard.dashboard_json(config)
    if args.out is None:
        sys.stdout.write(text)
        return 0
    path = Path(args.out).resolve()
    output.write_files({path: text})
    result = {"path": str(path), "project": config.project.name, "models": list(config.models)}
    emit(args, result, f"wrote the Grafana dashboard of {config.project.name} to {path}")
    return 0
