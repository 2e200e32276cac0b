"""Parse YAML into plain data plus a map from JSON path to source location.

PyYAML's node tree carries line/column marks; we walk it once, building the Python value
and recording where every key and value came from, so schema and cross-field errors can
point at ``mlops.yaml:14:7``. Duplicate keys — silently last-one-wins in PyYAML — are
reported as problems because they almost always hide a mistake.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

Path_ = tuple[str | int, ...]


@dataclass(frozen=True)
class Loc:
    """Where a value came from: the path as written in the file, line and column (1-based)."""

    source: Path_
    line: int
    column: int
    plain: bool = False  # a plain (unquoted) scalar: interpolated values are re-typed


@dataclass
class Parsed:
    data: Any
    values: dict[Path_, Loc]
    keys: dict[Path_, Loc]
    duplicates: list[tuple[Path_, Loc]]


def parse(text: str) -> Parsed:
    """Parse one YAML document. Raises yaml.YAMLError (with a mark) on bad syntax."""
    node = yaml.compose(text, Loader=yaml.SafeLoader)
    parsed = Parsed(data=None, values={}, keys={}, duplicates=[])
    if node is None:
        return parsed
    constructor = yaml.SafeLoader("")
    parsed.data = _walk(node, (), parsed, constructor)
    return parsed


def _loc(path: Path_, node: yaml.Node, plain: bool = False) -> Loc:
    return Loc(path, node.start_mark.line + 1, node.start_mark.column + 1, plain)


def _walk(node: yaml.Node, path: Path_, out: Parsed, ctor: yaml.SafeLoader) -> Any:
    if isinstance(node, yaml.MappingNode):
        ctor.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = ctor.construct_object(key_node, deep=True)
            key = str(key) if not isinstance(key, str) else key
            child = (*path, key)
            if key in result:
                out.duplicates.append((child, _loc(child, key_node)))
            out.keys[child] = _loc(child, key_node)
            result[key] = _walk(value_node, child, out, ctor)
        out.values[path] = _loc(path, node)
        return result
    if isinstance(node, yaml.SequenceNode):
        items = []
        for index, item in enumerate(node.value):
            items.append(_walk(item, (*path, index), out, ctor))
        out.values[path] = _loc(path, node)
        return items
    out.values[path] = _loc(path, node, plain=isinstance(node, yaml.ScalarNode) and node.style is None)
    return ctor.construct_object(node, deep=True)
