"""Resolve the ``data:`` entries of mlops.yaml to files on this machine.

An entry is either a ``path`` relative to mlops.yaml, or a ``resource`` shipped inside an
installed ``package`` (scikit-learn's bundled datasets, a team's data wheel). Packages are
located with :func:`importlib.util.find_spec`, which finds a top-level package without
running its ``__init__`` — planning stays cheap and imports nothing heavy.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterable
from pathlib import Path

from mlops_sessions.config import Config, DataInput
from mlops_sessions.errors import StepError


def resolve_inputs(config: Config, names: Iterable[str]) -> dict[str, Path]:
    """Absolute path of every named data entry; a missing one raises StepError."""
    resolved: dict[str, Path] = {}
    for name in names:
        entry = config.data.get(name)
        if entry is None:
            declared = ", ".join(config.data) or "none"
            raise StepError(
                f"data input '{name}' is not declared under 'data' in {config.source_file} "
                f"(declared: {declared}); add it there or remove it from train.inputs"
            )
        resolved[name] = resolve_input(config, name, entry)
    return resolved


def resolve_input(config: Config, name: str, entry: DataInput) -> Path:
    if entry.path is not None:
        path = config.resolve(entry.path)
        if not path.exists():
            raise StepError(
                f"data input '{name}': {path} does not exist; create it, fetch it, or fix "
                f"data.{name}.path in {config.source_file} (paths are relative to that file)"
            )
        return path
    if entry.package is None or entry.resource is None:
        raise StepError(f"data input '{name}' needs either 'path' or 'package' + 'resource'")
    return _package_resource(name, entry.package, entry.resource)


def package_resource(name: str, package: str, resource: str) -> Path:
    """The file of a ``package`` + ``resource`` data entry in this environment (a training
    pod resolves its inputs with it, inside the train image)."""
    return _package_resource(name, package, resource)


def _package_resource(name: str, package: str, resource: str) -> Path:
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError) as exc:
        spec = None
        reason = f" ({exc})"
    else:
        reason = ""
    if spec is None:
        raise StepError(
            f"data input '{name}': package '{package}' is not installed in this environment"
            f"{reason}; add it to the project's requirements (python.requirements) and "
            "re-create the session"
        )
    roots = [Path(p) for p in (spec.submodule_search_locations or [])]
    if not roots and spec.origin:
        roots = [Path(spec.origin).parent]
    for root in roots:
        candidate = (root / resource).resolve()
        if candidate.exists():
            return candidate
    where = ", ".join(str(r) for r in roots) or "an unknown location"
    raise StepError(
        f"data input '{name}': package '{package}' (at {where}) has no resource '{resource}'; "
        f"check data.{name}.resource or the installed version of '{package}'"
    )
