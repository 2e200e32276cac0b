"""The one error type of the config layer, and the problem records it carries.

Every loader failure — unreadable file, YAML syntax, schema violation, cross-field
inconsistency, unset ``${VAR}`` — becomes a :class:`Problem` with file, line, column,
the JSON path into the document and a hint that names the fix. The loader collects all
problems before raising, so a user fixes a file in one pass (skaffold's habit).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a config file, located as precisely as we can."""

    file: str
    line: int | None
    column: int | None
    path: str
    message: str
    hint: str = ""

    def render(self) -> str:
        where = self.file
        if self.line is not None:
            where += f":{self.line}"
            if self.column is not None:
                where += f":{self.column}"
        located = f"{where} {self.path}: " if self.path else f"{where}: "
        text = located + self.message
        if self.hint:
            text += f"\n    hint: {self.hint}"
        return text


class MlopsError(Exception):
    """Base class for errors that the CLI reports as a clean message, never a traceback."""

    exit_code = 2


class ConfigError(MlopsError):
    """The config file could not be turned into a valid Config. Carries every problem found."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = sorted(
            problems, key=lambda p: (p.file, p.line or 0, p.column or 0, p.path, p.message)
        )
        count = len(self.problems)
        header = f"{count} problem{'s' if count != 1 else ''} in config"
        super().__init__(header + ":\n" + "\n".join(p.render() for p in self.problems))


class StepError(MlopsError):
    """A pipeline step failed for a reason the user can act on (message says how)."""

    exit_code = 1
