"""``mlops init [DIR]``: scaffold a project that runs ``nox -s test train evaluate`` as is.

The files come from the package's ``scaffold/`` templates: mlops.yaml (with the schema
reference editors use for completion), a noxfile that registers the sessions, example model
code and data functions following the TrainContext/DataContext contract, pinned
requirements, a test, pytest.ini and .gitignore. Existing files are never overwritten
without ``--force``; an existing .gitignore is extended instead.

Everything is checked before anything is written (a file where the project or one of its
folders should go, a directory where a file should go, a parent that cannot be written),
and the files are written all or not at all: a new project directory is built beside its
final place and renamed into it; in an existing directory every file is staged beside its
target and renamed once all are staged.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import sys
import tempfile
from importlib import metadata, resources
from pathlib import Path
from typing import TYPE_CHECKING

from mlops_sessions.console import output
from mlops_sessions.console.common import emit
from mlops_sessions.errors import StepError

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


def _in_the_way(directory: Path, relative: str) -> str | None:
    """Why the file at directory/relative cannot be created, or None when it can."""
    target = directory / relative
    for parent in reversed(target.relative_to(directory).parents):
        if parent == Path("."):
            continue
        folder = directory / parent
        if folder.exists() and not folder.is_dir():
            return f"{folder} is a file, but the scaffold needs a directory there"
    if target.is_dir():
        return f"{target} is a directory, but the scaffold writes a file there"
    return None


def _contents(directory: Path, values: dict[str, str]) -> dict[str, str]:
    """Relative path -> the text to write (an existing .gitignore extended, or left out)."""
    out: dict[str, str] = {}
    for relative, template in templates().items():
        target = directory / relative
        text = render(template.read_text(encoding="utf-8"), values)
        if relative == ".gitignore" and target.is_file():
            # Extend the team's .gitignore with the lines it lacks rather than replace it.
            try:
                current = target.read_text(encoding="utf-8")
            except (OSError, UnicodeDecodeError) as exc:
                raise StepError(
                    f"cannot read {target} to extend it ({exc}); fix or remove it and run "
                    "`mlops init` again"
                ) from None
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
        out[relative] = text
    return out


def _create_new(directory: Path, contents: dict[str, str]) -> None:
    """A directory that does not exist yet: build it whole beside its final place, then
    rename it there, so a failure leaves nothing behind."""
    output.check_directory(directory, "project directory")
    created = [p for p in (directory.parent, *directory.parent.parents) if not p.exists()]
    staging: Path | None = None
    try:
        directory.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.init-", dir=directory.parent))
        output.write_files({staging / relative: text for relative, text in contents.items()})
        os.chmod(staging, 0o777 & ~output.current_umask())
        os.rename(staging, directory)
    except (OSError, StepError) as exc:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        for folder in created:  # deepest first: the parents this attempt made
            with contextlib.suppress(OSError):
                folder.rmdir()
        if isinstance(exc, StepError):
            raise StepError(str(exc).replace(str(staging), str(directory))) from None
        raise output.OutputError(output.describe(exc, directory)) from None


def _write_into(directory: Path, contents: dict[str, str]) -> None:
    """An existing directory: every file staged beside its target, then all renamed."""
    targets = [directory / relative for relative in contents]
    new_folders = sorted(
        {p for t in targets for p in t.parents if p.is_relative_to(directory) and not p.exists()},
        key=lambda p: len(p.parts),
        reverse=True,
    )
    try:
        output.write_files(dict(zip(targets, contents.values(), strict=True)))
    except StepError:
        for folder in new_folders:
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def run(args: argparse.Namespace) -> int:
    directory = Path(args.directory)
    if directory.exists() and not directory.is_dir():
        raise StepError(
            f"{directory} exists and is a file, not a directory; pass a new directory name "
            "(or an existing directory) to create the project in"
        )
    values = {
        "project": project_name(directory, args.name),
        "schema": schema_reference(args.schema_url),
        "requirements": requirements(),
    }
    files = templates()
    # Everything is checked before anything is written.
    blocked = [why for why in (_in_the_way(directory, p) for p in files) if why is not None]
    if blocked:
        listed = "\n".join(f"  {why}" for why in dict.fromkeys(blocked))
        raise StepError(
            f"cannot create the project in {directory}:\n{listed}\n"
            "    hint: move those out of the way, or run `mlops init` in another directory"
        )
    existing = sorted(p for p in files if p != ".gitignore" and (directory / p).exists())
    if existing and not args.force:
        listed = "\n".join(f"  {directory / p}" for p in existing)
        raise StepError(
            f"refusing to overwrite {len(existing)} existing file(s) in {directory}:\n{listed}\n"
            "    hint: run `mlops init` in an empty directory, or pass --force to overwrite them"
        )
    contents = _contents(directory, values)
    if directory.exists():
        _write_into(directory, contents)
    else:
        _create_new(directory, contents)
    written = list(contents)
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
