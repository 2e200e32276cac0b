"""``mlops init [DIR]``: scaffold a project that runs ``nox -s test train evaluate`` as is.

The files come from the package's ``scaffold/`` templates: mlops.yaml (with the schema
reference editors use for completion), a noxfile that registers the sessions, example model
code and data functions following the TrainContext/DataContext contract, pinned
requirements, a test, pytest.ini and .gitignore. Existing files are never overwritten
without ``--force``; an existing .gitignore is extended instead.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_sessions.errors import StepError
from mlops_sessions.steps.common import emit

if TYPE_CHECKING:
    if sys.version_info >= (3, 11):
        from importlib.resources.abc import Traversable
    else:
        from importlib.abc import Traversable

SUFFIX = ".tmpl"
RENAMES = {"gitignore": ".gitignore"}
# (distribution, fallback specifier when it is not installed here); pins match this machine
# so the scaffold trains with the versions mlops-sessions was run with.
PINNED = (("scikit-learn", ">=1.3"), ("numpy", ">=1.26"), ("pytest", ">=8"))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "directory",
        nargs="?",
        default=".",
        metavar="DIR",
        help="where to create the project (default: the current directory)",
    )
    parser.add_argument("--force", action="store_true", help="overwrite existing files")
    parser.add_argument(
        "--name", default=None, help="project name (default: the directory's name, made DNS-safe)"
    )
    parser.add_argument(
        "--schema-url",
        action="store_true",
        help="point the editor's schema reference at the schema URL instead of "
        "the installed schema file",
    )


def templates() -> dict[str, Traversable]:
    """Destination path (relative, '/'-separated) -> template."""
    found: dict[str, Traversable] = {}

    def walk(node: Traversable, prefix: str) -> None:
        for child in sorted(node.iterdir(), key=lambda c: c.name):
            if child.is_dir():
                walk(child, f"{prefix}{child.name}/")
            elif child.name.endswith(SUFFIX):
                name = child.name[: -len(SUFFIX)]
                found[prefix + RENAMES.get(name, name)] = child

    walk(resources.files("mlops_sessions").joinpath("scaffold"), "")
    return found


def project_name(directory: Path, chosen: str | None) -> str:
    if chosen is not None:
        if not re.fullmatch(r"[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?", chosen):
            raise StepError(
                f"--name {chosen!r}: use lowercase letters, digits and '-' "
                "(a DNS-1123 label, it becomes part of image names)"
            )
        return chosen
    name = re.sub(r"[^a-z0-9-]+", "-", directory.resolve().name.lower()).strip("-")[:63].strip("-")
    return name or "my-model"


def schema_reference(use_url: bool) -> str:
    from mlops_sessions.config.loader import schema

    if use_url:
        return str(schema()["$id"])
    path = resources.files("mlops_sessions").joinpath("_schemas/mlops.schema.json")
    return str(Path(str(path)).resolve())


def _version(distribution: str) -> str | None:
    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return None


def requirements() -> str:
    tf = _version("tensorflow-cpu") or _version("tensorflow")
    spec = f"=={tf}" if tf else ">=2.16"
    lines = [
        f'tensorflow-cpu{spec}; platform_machine == "x86_64"',
        f'tensorflow{spec}; platform_machine != "x86_64"',
    ]
    for distribution, fallback in PINNED:
        version = _version(distribution)
        lines.append(f"{distribution}=={version}" if version else f"{distribution}{fallback}")
    return "\n".join(lines)


def render(text: str, values: dict[str, str]) -> str:
    for key, value in values.items():
        text = text.replace("{{" + key + "}}", value)
    return text


def run(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    if directory.exists() and not directory.is_dir():
        raise StepError(f"{directory} exists and is not a directory; pass a directory to create")
    values = {
        "project": project_name(directory, args.name),
        "schema": schema_reference(args.schema_url),
        "requirements": requirements(),
    }
    files = templates()
    existing = sorted(p for p in files if p != ".gitignore" and (directory / p).exists())
    if existing and not args.force:
        listed = "\n".join(f"  {directory / p}" for p in existing)
        raise StepError(
            f"refusing to overwrite {len(existing)} existing file(s) in {directory}:\n{listed}\n"
            "    hint: run `mlops init` in an empty directory, or pass --force to overwrite them"
        )
    written = []
    for relative, template in files.items():
        target = directory / relative
        text = render(template.read_text(encoding="utf-8"), values)
        target.parent.mkdir(parents=True, exist_ok=True)
        if relative == ".gitignore" and target.exists():
            # Extend the team's .gitignore with the lines it lacks rather than replace it.
            current = target.read_text(encoding="utf-8")
            have = set(current.splitlines())
            missing = [line for line in text.splitlines() if line and line not in have]
            if not missing:
                continue
            text = (
                current
                + ("" if current.endswith("\n") or not current else "\n")
                + "\n".join(missing)
                + "\n"
            )
        target.write_text(text, encoding="utf-8")
        written.append(relative)
    shown = "." if directory == Path(".") else str(directory)
    next_command = "nox -s test train evaluate"
    emit(
        args,
        {
            "directory": str(directory.resolve()),
            "project": values["project"],
            "written": written,
            "overwritten": existing,
            "next": f"cd {shown} && {next_command}",
        },
        f"created project '{values['project']}' in {shown}: {', '.join(written)}\n"
        f"next: cd {shown} && {next_command}",
    )
    return 0
