"""Dockerfile text from a Jinja2 template: which template wins, rendering, secret guard.

Pure and offline. Templates live in the project's ``dockerfiles/`` directory (built-in
ones ship in this repository's ``dockerfiles/``; ``mlops eject`` copies them into a
team's repo). Lookup order, first hit wins:

1. ``images.<name>.dockerfile`` — a team-owned file, rendered with the same variables;
2. ``<project root>/dockerfiles/<kind>.Dockerfile.j2`` — an ejected copy;
3. the built-in ``<kind>.Dockerfile.j2``.

Jinja2 (StrictUndefined) rather than string concatenation: a typo in a template variable
is an error, not an empty string in a Dockerfile.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_sessions.errors import StepError

# The built-in templates ship inside the package (a link to the repository's dockerfiles/,
# which setuptools copies into wheels), so an installed mlops-sessions finds them too.
BUILTIN_DIR = Path(__file__).resolve().parent.parent / "_templates" / "dockerfiles"
PROJECT_DIR = "dockerfiles"

# ENV/ARG names that say "this is a credential": such values must be injected at run time.
_SECRET_NAME = re.compile(
    r"(PASSWORD|PASSWD|SECRET|TOKEN|API_?KEY|ACCESS_?KEY|PRIVATE_?KEY|CREDENTIAL)", re.I
)
_INSTRUCTION = re.compile(r"^\s*(ARG|ENV)\s+(.*)$", re.I)


@dataclass(frozen=True)
class Template:
    """A chosen template: where it lives and which search path resolves its includes."""

    name: str
    path: Path
    search: tuple[Path, ...]
    origin: str  # "config" | "project" | "builtin"


def template_name(kind: str) -> str:
    return f"{kind}.Dockerfile.j2"


def choose_template(root: Path, kind: str, override: str | None) -> Template:
    """The template for kind, honouring a config override and an ejected project copy."""
    name = template_name(kind)
    project = (root / PROJECT_DIR).resolve()
    search = tuple(dict.fromkeys(p for p in (project, BUILTIN_DIR) if p.is_dir()))
    if override is not None:
        path = (root / override).resolve()
        if not path.is_file():
            raise StepError(
                f"the Dockerfile template '{override}' (images.<name>.dockerfile) does not exist "
                f"at {path}; fix the path, or run `mlops eject` to copy the built-in templates"
            )
        return Template(path.name, path, (path.parent, *search), "config")
    if (project / name).is_file():
        return Template(name, project / name, search, "project")
    if (BUILTIN_DIR / name).is_file():
        return Template(name, BUILTIN_DIR / name, search, "builtin")
    raise StepError(
        f"no Dockerfile template for kind '{kind}' in {project} or {BUILTIN_DIR}; "
        "reinstall mlops-sessions or set images.<name>.dockerfile"
    )


def render(template: Template, variables: Mapping[str, Any]) -> str:
    """Render the template; undefined variables and syntax errors raise StepError."""
    import jinja2

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader([str(p) for p in template.search]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,  # Dockerfiles are not HTML
    )
    try:
        source = template.path.read_text(encoding="utf-8")
        text = env.from_string(source).render(**variables)
    except jinja2.TemplateSyntaxError as exc:
        raise StepError(
            f"{template.path}:{exc.lineno}: template syntax error: {exc.message}; fix the template"
        ) from exc
    except jinja2.UndefinedError as exc:
        raise StepError(
            f"{template.path}: {exc.message}; the variables a template may use are: "
            f"{', '.join(sorted(variables))}"
        ) from exc
    except jinja2.TemplateNotFound as exc:
        raise StepError(
            f"{template.path}: included template '{exc.name}' not found in "
            f"{', '.join(map(str, template.search))}; copy it next to the template"
        ) from exc
    check_no_secrets(text, str(template.path))
    return text


def check_no_secrets(dockerfile: str, where: str) -> None:
    """Refuse ARG/ENV instructions whose names look like credentials.

    A build argument or environment variable is stored in the image config and its history,
    readable by anyone who can pull the image.
    """
    for number, line in enumerate(_joined_lines(dockerfile), start=1):
        match = _INSTRUCTION.match(line)
        if match is None:
            continue
        for name in re.findall(r"(?:^|\s)([A-Za-z_][A-Za-z0-9_]*)(?==|\s|$)", match.group(2)):
            if _SECRET_NAME.search(name):
                raise StepError(
                    f"{where}: instruction {number} sets {match.group(1).upper()} {name}, which "
                    "looks like a secret; ARG and ENV values stay in the image for anyone who "
                    "pulls it; inject it at run time instead (deploy.secrets)"
                )


def _joined_lines(dockerfile: str) -> list[str]:
    """Instructions with backslash continuations joined, comments dropped."""
    out: list[str] = []
    current = ""
    for raw in dockerfile.splitlines():
        line = raw.rstrip()
        if not current and line.lstrip().startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        current += line
        if current.strip():
            out.append(current)
        current = ""
    if current.strip():
        out.append(current)
    return out
