"""``${VAR}`` and ``${VAR:-default}`` substitution in config values.

Substitution happens on the effective document (after the profile is chosen), so an
unused ``prod`` profile may reference variables a laptop does not set. ``$${`` escapes a
literal ``${``. A plain (unquoted) YAML scalar is re-typed after substitution, so
``replicas: ${REPLICAS:-2}`` yields the integer 2.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import yaml

_PATTERN = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}|\$\{[^}]*\}?")


class UnsetVariable(Exception):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class BadReference(Exception):
    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.text = text


def substitute(text: str, env: Mapping[str, str]) -> str:
    """Replace every ${...} in text; raises UnsetVariable or BadReference."""

    def replace(match: re.Match[str]) -> str:
        whole = match.group(0)
        if whole == "$${":
            return "${"
        name, default = match.group(1), match.group(2)
        if name is None:
            raise BadReference(whole)
        if name in env:
            return env[name]
        if default is not None:
            return default
        raise UnsetVariable(name)

    return _PATTERN.sub(replace, text)


def retype(text: str) -> Any:
    """Type a substituted plain scalar as YAML would have typed it, keeping strings that
    would parse as collections (a value must not grow structure from an env var) or as
    values JSON cannot hold (dates, NaN, infinity)."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, float) and not math.isfinite(value):
        return text
    if value is not None and not isinstance(value, (str, int, float, bool)):
        return text
    return value


def walk_strings(data: Any, visit: Callable[[tuple[str | int, ...], str], Any]) -> Any:
    """Rebuild data with visit(path, s) applied to every string value (keys untouched)."""

    def go(value: Any, path: tuple[str | int, ...]) -> Any:
        if isinstance(value, dict):
            return {k: go(v, (*path, k)) for k, v in value.items()}
        if isinstance(value, list):
            return [go(v, (*path, i)) for i, v in enumerate(value)]
        if isinstance(value, str) and "$" in value:
            return visit(path, value)
        return value

    return go(data, ())
