"""Parse YAML into plain data plus a map from JSON path to source location.

PyYAML's node tree carries line/column marks; we walk it once, building the Python value
and recording where every key and value came from, so schema and cross-field errors can
point at ``mlops.yaml:14:7``. Duplicate keys — silently last-one-wins in PyYAML — are
reported as problems because they almost always hide a mistake.

The result is JSON data (what the JSON Schema and the hashes downstream expect): dates stay
the strings they were written as, keys are the text written in the file, and values JSON
cannot hold (``.nan``, ``.inf``, ``!!binary``, ``!!set``) are reported as issues. Recursive
aliases and alias "bombs" are refused instead of hanging or overflowing the stack.

YAML is read as YAML: a merge key (``<<: *defaults``) brings in the anchor's keys and a key
written next to it wins (the YAML merge semantics); a key written twice by hand is still a
duplicate. Tags other than YAML's own (``!!python/object``, ``!custom``) and keys that are
lists or mappings (``? [a, b]``) are located errors. Limits keep a hostile or broken file
from taking seconds (or the interpreter) down: at most :data:`MAX_BYTES` of text and
:data:`MAX_DEPTH` levels of nesting, checked before the parser runs.
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
# A real mlops.yaml is a few kilobytes and a few levels deep (train.params may nest a
# little more). Past these limits the file is refused before parsing: libyaml's composer
# recurses per level (thousands of levels crash the interpreter) and slows down sharply.
MAX_BYTES = 1024 * 1024
MAX_DEPTH = 64

# libyaml's parser when present (several times faster on large files); same nodes and marks.
_Loader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class AliasError(ConstructorError):
    """An alias that would recurse forever or expand the document beyond MAX_VALUES."""


class LimitError(yaml.MarkedYAMLError):
    """The file is larger or nested deeper than mlops.yaml ever needs (MAX_BYTES/MAX_DEPTH)."""


class TagError(ConstructorError):
    """A tag that is not one of YAML's plain types (``!!python/...``, ``!local``)."""


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
    check_limits(text)
    node = yaml.compose(text, Loader=_Loader)
    parsed = Parsed(data=None, values={}, keys={}, duplicates=[])
    if node is None:
        return parsed
    walker = _Walker(parsed)
    parsed.data = walker.walk(node, ())
    return parsed


def check_limits(text: str) -> None:
    """Refuse, before parsing, a text over MAX_BYTES or with flow nesting over MAX_DEPTH.

    The depth scan is a linear pass over brackets outside quotes and comments: block
    nesting is bounded by the indentation the size limit allows, and the walker checks
    the real depth of everything once composed.
    """
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_BYTES:
        raise LimitError(
            problem=f"the file is {size / 1024 / 1024:.1f} MiB; mlops.yaml is limited to "
            f"{MAX_BYTES // 1024 // 1024} MiB"
        )
    depth = 0
    quote = ""  # inside a '...' or "..." scalar
    escaped = comment = False
    line = column = 0
    previous = "\n"
    for char in text:
        column += 1
        if char == "\n":
            line, column, comment = line + 1, 0, False
        elif comment:
            pass
        elif quote == '"':
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quote = ""
        elif quote == "'":
            if char == "'":
                quote = ""  # '' inside is two quotes in a row: close, then reopen
        elif char in "\"'" and previous in " \t\n[{,:-?":
            quote = char
        elif char == "#" and previous in " \t\n":
            comment = True
        elif char in "[{":
            depth += 1
            if depth > MAX_DEPTH:
                raise LimitError(
                    problem=f"the document is nested too deeply (more than {MAX_DEPTH} levels)",
                    problem_mark=yaml.Mark("<text>", 0, line, column - 1, "", 0),
                )
        elif char in "]}":
            depth = max(0, depth - 1)
        previous = char


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
        if len(path) > MAX_DEPTH:
            raise LimitError(
                problem=f"the document is nested too deeply (more than {MAX_DEPTH} levels)",
                problem_mark=node.start_mark,
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
        else:
            _plain_tag(node, "map")
        # YAML merge keys (<<: *anchor): PyYAML puts the merged pairs first, the later of
        # two merged mappings first (so the earlier wins when read last-wins). A key
        # written in this mapping overrides a merged one; only those can be duplicates.
        own_count = sum(1 for key, _ in node.value if key.tag != "tag:yaml.org,2002:merge")
        self.ctor.flatten_mapping(node)
        merged_pairs = node.value[: len(node.value) - own_count]
        own_pairs = node.value[len(node.value) - own_count :]
        own_keys = {self._key(key_node, path) for key_node, _ in own_pairs}
        merged: dict[str, tuple[yaml.Node, yaml.Node]] = {}
        for key_node, value_node in merged_pairs:
            merged[self._key(key_node, path)] = (key_node, value_node)
        result: dict[str, Any] = {}
        for key, (key_node, value_node) in merged.items():
            if key not in own_keys:
                child = (*path, key)
                self.out.keys[child] = _loc(child, key_node)
                result[key] = self.walk(value_node, child)
        written: set[str] = set()
        for key_node, value_node in own_pairs:
            key = self._key(key_node, path)
            child = (*path, key)
            if key in written:
                self.out.duplicates.append((child, _loc(child, key_node)))
            written.add(key)
            self.out.keys[child] = _loc(child, key_node)
            result[key] = self.walk(value_node, child)
        self.out.values[path] = _loc(path, node)
        return result

    def _sequence(self, node: yaml.SequenceNode, path: Path_) -> list[Any]:
        if node.tag in (f"tag:yaml.org,2002:{t}" for t in _UNSUPPORTED_TAGS):
            self._unsupported(node, path)
        else:
            _plain_tag(node, "seq")
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

    def _key(self, node: yaml.Node, path: Path_) -> str:
        # The key as written (`null:` is 'null', `1:` is '1'): JSON keys are strings.
        if isinstance(node, yaml.ScalarNode):
            _plain_tag(node, "str")
            return str(node.value)
        # A list or mapping used as a key (`? [a, b]`) is never valid here; it is reported
        # once, where it is written, and not expanded (aliases).
        shown = "<list>" if isinstance(node, yaml.SequenceNode) else "<mapping>"
        loc = _loc((*path, shown), node)
        issue = (
            (*path, shown),
            loc,
            f"a {'list' if shown == '<list>' else 'mapping'} cannot be a key",
            "keys are plain names: write the key as a string (quote it if needed)",
        )
        if issue not in self.out.issues:
            self.out.issues.append(issue)
        return shown


_YAML_TAG = "tag:yaml.org,2002:"


def _plain_tag(node: yaml.Node, kind: str) -> None:
    """Refuse a collection or a key tagged with anything but YAML's plain type for it.

    PyYAML's safe constructor refuses ``!!python/...`` on a scalar value (the loader
    reports that with its position), but the walker builds collections and keys itself:
    their tags are checked here, so ``!!python/object:x {}`` is an error, never ignored.
    """
    tag = node.tag
    if kind == "str":
        bad = not tag.startswith(_YAML_TAG) or tag.startswith(_YAML_TAG + "python/")
    else:
        bad = tag != _YAML_TAG + kind
    if bad:
        shown = tag.replace(_YAML_TAG, "!!")
        raise TagError(
            None,
            None,
            f"could not determine a constructor for the tag '{shown}' (mlops.yaml takes no tags)",
            node.start_mark,
        )
