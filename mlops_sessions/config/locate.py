"""Locating problems in mlops.yaml, and 'did you mean' hints.

The :class:`Locator` maps a JSON path in the effective document (after profiles and
``defaults`` are merged) back to the file:line:col where the user wrote the value; every
problem the config layer reports — schema, cross-field, YAML — is located through it.
:func:`suggest` is the one did-you-mean used for keys, names and metrics.

Its own module so that the loader and the checks both depend on it and not on each other.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

from mlops_sessions.config import yamlpos
from mlops_sessions.errors import Problem

Path_ = yamlpos.Path_


class Locator:
    """Maps a JSON path in the effective document back to where the user wrote it."""

    def __init__(self, file: str, values: dict[Path_, yamlpos.Loc], keys: dict[Path_, yamlpos.Loc]):
        self.file = file
        self.values = values
        self.keys = keys

    def find(self, path: Iterable[str | int], key: bool = False) -> yamlpos.Loc | None:
        return self._find(tuple(path), key)[1]

    def _find(self, parts: Path_, key: bool) -> tuple[Path_, yamlpos.Loc | None]:
        if key and parts in self.keys:
            return parts, self.keys[parts]
        while True:
            if parts in self.values:
                return parts, self.values[parts]
            if not parts:
                return parts, None
            parts = parts[:-1]

    def problem(
        self, path: Iterable[str | int], message: str, hint: str = "", key: bool = False
    ) -> Problem:
        parts = tuple(path)
        found, loc = self._find(parts, key)
        shown = dotted(parts)
        if loc is not None and loc.source != found:
            # The value was merged in from a profile or from `defaults`: name both places.
            shown = f"{shown} (from {dotted(loc.source)})"
        return Problem(
            file=self.file,
            line=loc.line if loc else None,
            column=loc.column if loc else None,
            path=shown,
            message=message,
            hint=hint,
        )


def dotted(path: Iterable[str | int]) -> str:
    """('models', 'a', 'hosts', 0) -> 'models.a.hosts[0]'."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def suggest(word: str, candidates: Iterable[str]) -> str:
    """A 'did you mean' fragment, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""
