"""``mlops make``: write ``mlops.mk``, Make targets that run the pipeline's nox sessions.

One target per registered session (see :mod:`mlops_sessions.planning.makefile`); the file
carries a digest header like the CI workflows, so a hand-edited copy is kept unless --force.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from mlops_sessions.console import argtypes
from mlops_sessions.console.common import emit, load_config
from mlops_sessions.console.generated import write_generated
from mlops_sessions.planning import makefile, stamped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-o",
        "--output",
        type=argtypes.output_path,
        default=None,
        help="file to write (default: mlops.mk next to mlops.yaml)",
    )
    parser.add_argument(
        "--prefix",
        type=argtypes.make_prefix,
        default="",
        help="prefix for target names, e.g. 'mlops-' when your Makefile already "
        "has a 'test' target",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite the file even if it was edited by hand"
    )


def run(args: argparse.Namespace) -> int:
    from mlops_sessions import pipeline

    config = load_config(args)  # a broken config should fail here, not in every target
    sessions = [(step.name, step.help) for step in pipeline.sessions()]
    text = stamped.stamp(makefile.render(sessions, args.prefix), "mlops make", "mlops.yaml")
    path = Path(args.output) if args.output else config.root / "mlops.mk"
    status = write_generated(path, text, args.force, "mlops make")
    targets = makefile.targets(sessions, args.prefix)
    emit(
        args,
        {
            "path": str(path),
            "status": status,
            "targets": [
                {"name": t.name, "command": f"nox -s {t.session} -- $(ARGS)"} for t in targets
            ],
        },
        f"{path}: {status} (targets: {', '.join(t.name for t in targets)}); "
        f"run `make -f {path.name} <target>` or add `include {path.name}` to your Makefile",
    )
    return 0
