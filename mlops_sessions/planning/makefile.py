"""``mlops.mk``: Make targets that call the pipeline's nox sessions, for teams driven by make.

Pure: session names and descriptions in, GNU make text out. Each target is one line,
``nox -s <session> -- $(ARGS)``, so ``make train ARGS=--force`` and ``nox -s train -- --force``
are the same command. The file is meant to be included (``include mlops.mk``) or used
directly (``make -f mlops.mk train``); it finds the noxfile next to itself either way.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    name: str  # make target
    session: str  # nox session it runs
    description: str


def targets(sessions: Sequence[tuple[str, str]], prefix: str = "") -> list[Target]:
    """One target per (session, description), named prefix + session."""
    return [Target(prefix + name, name, description) for name, description in sessions]


def render(sessions: Sequence[tuple[str, str]], prefix: str = "") -> str:
    chosen = targets(sessions, prefix)
    help_target = f"{prefix}help" if prefix else "mlops-help"
    width = max((len(t.name) for t in chosen), default=0)
    lines = [
        "# Targets for the pipeline sessions of mlops.yaml: `make -f mlops.mk <target>`, or",
        "# `include mlops.mk` from your Makefile. Pass step options with ARGS, e.g.",
        "#   make train ARGS=--force      (runs: nox -s train -- --force)",
        "",
        "# The directory of this file, where the noxfile is (also when included from elsewhere).",
        "MLOPS_DIR := $(patsubst %/,%,$(dir $(lastword $(MAKEFILE_LIST))))",
        "NOX ?= nox",
        "NOXFILE ?= $(MLOPS_DIR)/noxfile.py",
        "NOXFLAGS ?=",
        "ARGS ?=",
        "",
        f".PHONY: {' '.join([*(t.name for t in chosen), help_target])}",
        "",
    ]
    for target in chosen:
        lines += [
            f"# {target.description}",
            f"{target.name}:",
            f"\t$(NOX) -f $(NOXFILE) $(NOXFLAGS) -s {target.session} -- $(ARGS)",
            "",
        ]
    lines += [
        f"{help_target}:",
        "\t@echo 'Pipeline targets (each runs the nox session of the same name):'",
    ]
    for target in chosen:
        text = f"  {target.name.ljust(width)}  {target.description}"
        text = text.replace("$", "$$").replace("'", "'\\''")  # make, then sh, quoting
        lines.append(f"\t@echo '{text}'")
    return "\n".join(lines) + "\n"
