"""Parse YAML into plain data plus a map from JSON path to source location.

PyYAML's node tree carries line/column marks; we walk it once, building the Python value
and recording where every key and value came from, so schema and cross-field errors can
point at ``mlops.yaml:14:7``. Duplicate keys — silently last-one-wins in PyYAML — are
reported as problems because they almost always hide a mistake.

The result is JSON data (what the JSON Schema and the hashes downstream expect): dates stay
the strings they were written as, keys are the text written in the file, and values JSON
cannot hold (``.nan``, ``.inf``, ``!!binary``, ``!!set``) are reported as issues. Recursive
aliases and alias "bombs" are refused instead of hanging or overflowing the stack.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, ClassVar

import yaml
from yaml.constructor import ConstructorError

Path_ = tuple[str | int, ...]

# A generous cap on values produced by one file: real configs have a few thousand; an
# alias bomb ("billion laughs") would otherwise expand without end.
MAX_VALUES = 100_000

# libyaml's parser when present (several times faster on large files); same nodes and marks.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class AliasError(ConstructorError):
    """An alias that would recurse forever or expand the document beyond MAX_VALUES."""


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
    # (path, location, message, hint) for values JSON cannot represent.
    issues: list[tuple[Path_, Loc, str, str]] = field(default_factory=list)


class _JsonConstructor(yaml.constructor.SafeConstructor):
    """SafeConstructor limited to JSON's value types."""

    def construct_yaml_timestamp(self, node: yaml.ScalarNode) -> Any:
        # `host: 2020-01-01` is the string the user wrote, not a datetime.date.
        return self.construct_scalar(node)

    # The class-level table SafeConstructor consults; copied so SafeLoader stays untouched.
    yaml_constructors: ClassVar[dict[Any, Any]] = {
        **yaml.constructor.SafeConstructor.yaml_constructors,
        "tag:yaml.org,2002:timestamp": construct_yaml_timestamp,
    }


_UNSUPPORTED_TAGS = ("binary", "set", "omap", "pairs")


def parse(text: str) -> Parsed:
    """Parse one YAML document. Raises yaml.YAMLError (with a mark) on bad syntax."""
    node = yaml.compose(text, Loader=_Loader)
    parsed = Parsed(data=None, values={}, keys={}, duplicates=[])
    if node is None:
        return parsed
    walker = _Walker(parsed)
    parsed.data = walker.walk(node, ())
    return parsed


def _loc(path: Path_, node: yaml.Node, plain: bool = False) -> Loc:
    return Loc(path, node.start_mark.line + 1, node.start_mark.column + 1, plain)


class _Walker:
    def __init__(self, out: Parsed) -> None:
        self.out = out
        self.ctor = _JsonConstructor()
        self.active: set[int] = set()  # collection nodes on the current walk: alias cycles
        self.count = 0

    def walk(self, node: yaml.Node, path: Path_) -> Any:
        self.count += 1
        if self.count > MAX_VALUES:
            raise ConstructorError(
                None,
                None,
                f"the document expands to more than {MAX_VALUES} values "
                "(aliases repeated too often?)",
                node.start_mark,
            )
        if isinstance(node, yaml.ScalarNode):
            return self._scalar(node, path)
        if id(node) in self.active:
            raise AliasError(
                None, None, "an alias refers to a collection that contains it", node.start_mark
            )
        self.active.add(id(node))
        try:
            if isinstance(node, yaml.MappingNode):
                return self._mapping(node, path)
            assert isinstance(node, yaml.SequenceNode)
            return self._sequence(node, path)
        finally:
            self.active.discard(id(node))

    def _mapping(self, node: yaml.MappingNode, path: Path_) -> dict[str, Any]:
        if node.tag in (f"tag:yaml.org,2002:{t}" for t in _UNSUPPORTED_TAGS):
            self._unsupported(node, path)
        self.ctor.flatten_mapping(node)  # resolves YAML merge keys (<<: *anchor)
        result: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._key(key_node)
            child = (*path, key)
            if key in result:
                self.out.duplicates.append((child, _loc(child, key_node)))
            self.out.keys[child] = _loc(child, key_node)
            result[key] = self.walk(value_node, child)
        self.out.values[path] = _loc(path, node)
        return result

    def _sequence(self, node: yaml.SequenceNode, path: Path_) -> list[Any]:
        if node.tag in (f"tag:yaml.org,2002:{t}" for t in _UNSUPPORTED_TAGS):
            self._unsupported(node, path)
        items = [self.walk(item, (*path, index)) for index, item in enumerate(node.value)]
        self.out.values[path] = _loc(path, node)
        return items

    def _scalar(self, node: yaml.ScalarNode, path: Path_) -> Any:
        # libyaml marks a plain scalar with style '', the pure-Python parser with None.
        loc = _loc(path, node, plain=not node.style)
        self.out.values[path] = loc
        if node.tag in (f"tag:yaml.org,2002:{t}" for t in _UNSUPPORTED_TAGS):
            return self._unsupported(node, path)
        try:
            value = self.ctor.construct_object(node, deep=True)
        except yaml.YAMLError:
            raise  # unknown tags: reported with their position by the loader
        except Exception:
            # An explicit tag the text does not fit (`!!int abc`, `!!bool maybe`, `!!int ''`):
            # PyYAML's constructors fail with whatever int()/dict lookups raise.
            tag = node.tag.rsplit(":", 1)[-1]
            self.out.issues.append(
                (
                    path,
                    loc,
                    f"{node.value!r} cannot be read as '!!{tag}'",
                    "remove the tag or fix the value",
                )
            )
            return node.value
        if isinstance(value, float) and not math.isfinite(value):
            self.out.issues.append(
                (
                    path,
                    loc,
                    f"{node.value!r} is not a finite number",
                    "write a finite number; JSON (and this schema) has no NaN or infinity",
                )
            )
            return node.value
        return value

    def _unsupported(self, node: yaml.Node, path: Path_) -> str:
        tag = node.tag.rsplit(":", 1)[-1]
        self.out.issues.append(
            (
                path,
                _loc(path, node),
                f"the YAML type '!!{tag}' is not supported here",
                "use plain strings, numbers, booleans, lists and mappings",
            )
        )
        return ""

    def _key(self, node: yaml.Node) -> str:
        # The key as written (`null:` is 'null', `1:` is '1'): JSON keys are strings.
        if isinstance(node, yaml.ScalarNode):
            return str(node.value)
        # A list or mapping used as a key is never valid here; do not expand it (aliases).
        return "<list>" if isinstance(node, yaml.SequenceNode) else "<mapping>"
