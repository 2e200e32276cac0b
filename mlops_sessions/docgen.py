"""Generate ``docs/config.md``, the mlops.yaml reference, from the JSON Schema.

The schema is the single source of truth for keys, types, defaults, allowed values and
descriptions; this module only lays it out (one section per part of the file, ``$ref``s
resolved in place) so the reference cannot drift from what the loader enforces. A test
runs the ``--check`` mode, so a schema change without a regenerated page fails CI.

    python -m mlops_sessions.docgen           # rewrite docs/config.md
    python -m mlops_sessions.docgen --check   # exit 1 when docs/config.md is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

DEFAULT_OUTPUT = Path(__file__).resolve().parent.parent / "docs" / "config.md"
COMMAND = "python -m mlops_sessions.docgen"

# Top-level keys whose entries are named by the user: documented as `<key>.<name>`.
_NAMED = {"data": "data", "images": "image", "models": "model", "profiles": "profile"}
# Parts of a model documented as sections of their own, in this order.
_MODEL_SECTIONS = ("train", "evaluate", "serve", "deploy", "rollout")


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    allowed: str
    description: str


class _Schema:
    """Resolves local ``$ref``s; sibling keywords (a property's own description) win."""

    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def resolve(self, node: Mapping[str, Any]) -> dict[str, Any]:
        out = dict(node)
        seen: set[str] = set()
        while "$ref" in out:
            ref = out.pop("$ref")
            if ref in seen or not ref.startswith("#/$defs/"):
                break
            seen.add(ref)
            target = self.root["$defs"][ref.rsplit("/", 1)[-1]]
            out = {**target, **out}
        return out

    @staticmethod
    def ref_name(node: Mapping[str, Any]) -> str | None:
        ref = node.get("$ref")
        return ref.rsplit("/", 1)[-1] if isinstance(ref, str) else None


def _code(value: Any) -> str:
    plain = isinstance(value, str) and value != ""
    text = value if plain else json.dumps(value, ensure_ascii=False)
    # A pipe ends a table cell even inside a code span.
    return "`" + text.replace("|", "\\|") + "`"


def _cell(text: str) -> str:
    """Prose for a table cell (code spans escape their own pipes in _code)."""
    return text.replace("|", "\\|").replace("\n", " ").strip()


class _Renderer:
    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.s = _Schema(schema)

    # --- describing one node ------------------------------------------------------------

    def type_of(self, raw: Mapping[str, Any]) -> str:
        node = self.s.resolve(raw)
        named = self.s.ref_name(raw)
        if "oneOf" in node and "type" not in node:
            forms = [self.type_of(branch) for branch in node["oneOf"]]
            if all(f == forms[0] for f in forms):
                return forms[0]
            return " or ".join(dict.fromkeys(forms))
        if "const" in node:
            return "string"
        kinds = node.get("type", "any")
        names = {"object": "mapping", "array": "list", "number": "number"}
        kinds_list = kinds if isinstance(kinds, list) else [kinds]
        text = " or ".join(names.get(str(k), str(k)) for k in kinds_list)
        if kinds == "array" and "items" in node:
            text = f"list of {self.type_of(node['items'])}"
        elif kinds == "object" and isinstance(node.get("additionalProperties"), dict):
            text = f"mapping of name → {self.type_of(node['additionalProperties'])}"
        if named and named not in ("name",) and kinds in ("string", ["string", "number"]):
            text += f" ({named})"
        elif named == "name":
            text += " (name)"
        return text

    def allowed(self, raw: Mapping[str, Any]) -> str:
        node = self.s.resolve(raw)
        parts: list[str] = []
        if "const" in node:
            parts.append(_code(node["const"]))
        if "enum" in node:
            parts.append(", ".join(_code(v) for v in node["enum"]))
        if "oneOf" in node:
            forms = []
            for branch in node["oneOf"]:
                sub = self.s.resolve(branch)
                if "enum" in sub:
                    forms.append(", ".join(_code(v) for v in sub["enum"]))
                elif "required" in sub:
                    forms.append(" + ".join(_code(k) for k in sub["required"]))
                elif self.s.ref_name(branch):
                    forms.append(f"a {self.s.ref_name(branch)} mapping")
            parts.append("either " + ", or ".join(forms))
        if "pattern" in node:
            parts.append(f"matches {_code(node['pattern'])}")
        if isinstance(node.get("not"), dict) and "pattern" in node["not"]:
            parts.append(f"must not match {_code(node['not']['pattern'])}")
        low, high = node.get("minimum"), node.get("maximum")
        if low is not None and high is not None:
            parts.append(f"{low} to {high}")
        elif low is not None:
            parts.append(f"≥ {low}")
        elif high is not None:
            parts.append(f"≤ {high}")
        if "exclusiveMinimum" in node:
            parts.append(f"> {node['exclusiveMinimum']}")
        if "minItems" in node:
            parts.append(f"at least {node['minItems']} item(s)")
        if node.get("uniqueItems"):
            parts.append("no repeats")
        if "minProperties" in node:
            parts.append(f"at least {node['minProperties']} key(s)")
        names = node.get("propertyNames")
        if isinstance(names, dict) and "pattern" in names:
            parts.append(f"names match {_code(names['pattern'])}")
        items = node.get("items")
        if isinstance(items, dict):
            inner = self.allowed(items)
            if inner and "properties" not in self.s.resolve(items):
                parts.append(f"each: {inner}")
        return "; ".join(parts)

    def row(self, key: str, raw: Mapping[str, Any], required: bool) -> Row:
        node = self.s.resolve(raw)
        default = _code(node["default"]) if "default" in node else ("required" if required else "")
        return Row(
            key=_code(key),
            type=_cell(self.type_of(raw)),
            default=default,
            allowed=self.allowed(raw),
            description=_cell(str(node.get("description", ""))),
        )

    # --- walking ------------------------------------------------------------------------

    def rows(self, raw: Mapping[str, Any], prefix: str, stop: Sequence[str] = ()) -> list[Row]:
        """Rows for every key below an object node, nested objects flattened as a.b.c."""
        node = self.s.resolve(raw)
        required = set(node.get("required", []))
        out: list[Row] = []
        for key, child_raw in node.get("properties", {}).items():
            path = f"{prefix}{key}"
            out.append(self.row(path, child_raw, key in required))
            if key in stop:
                continue
            child = self.s.resolve(child_raw)
            if child.get("properties"):
                out += self.rows(child_raw, path + ".")
            for inner, suffix in (
                (child.get("items"), "[]."),
                (child.get("additionalProperties"), ".<name>."),
            ):
                if not isinstance(inner, dict):
                    continue
                resolved = self.s.resolve(inner)
                if resolved.get("properties"):
                    out += self.rows(inner, path + suffix)
                for branch in resolved.get("oneOf", []):
                    if self.s.resolve(branch).get("properties"):
                        out += self.rows(branch, path + suffix)
        return out

    def table(self, rows: list[Row]) -> list[str]:
        lines = [
            "| Key | Type | Default | Allowed | Description |",
            "|---|---|---|---|---|",
        ]
        lines += [
            f"| {r.key} | {r.type} | {r.default} | {r.allowed} | {r.description} |" for r in rows
        ]
        return [*lines, ""]

    def section(self, title: str, raw: Mapping[str, Any], prefix: str, **kw: Any) -> list[str]:
        node = self.s.resolve(raw)
        lines = [f"## `{title}`", ""]
        if node.get("description"):
            lines += [str(node["description"]), ""]
        rows = self.rows(raw, prefix, **kw)
        return lines + (self.table(rows) if rows else [])

    def render(self) -> str:
        root = self.s.root
        props: Mapping[str, Any] = root["properties"]
        required = set(root.get("required", []))
        lines = [
            "# mlops.yaml reference",
            "",
            f"<!-- Generated from schemas/mlops.schema.json by `{COMMAND}`. Do not edit. -->",
            "",
            str(root.get("description", "")),
            "",
            f"Schema version: {_code(props['apiVersion'].get('const', ''))}. "
            "Keys are listed with their dotted path inside the section; `<name>` stands for a "
            "name you choose, `[]` for each item of a list. Values may use `${VAR}` and "
            "`${VAR:-default}`; `$${` writes a literal `${`.",
            "",
            "## Contents",
            "",
        ]
        toc: list[str] = []
        body: list[str] = []
        scalars = [
            k
            for k, v in props.items()
            if not self.s.resolve(v).get("properties") and k not in _NAMED
        ]
        body += ["## Top level", ""]
        body += self.table([self.row(k, props[k], k in required) for k in scalars])
        toc.append("- [Top level](#top-level)")
        for key, raw in props.items():
            if key in scalars:
                continue
            if key in _NAMED:
                body += self._named(key, raw, key in required, toc)
            else:
                toc.append(f"- [`{key}`](#{_anchor(key)})")
                body += self.section(key, raw, f"{key}.")
        lines += [*toc, "", *body]
        return "\n".join(lines).rstrip() + "\n"

    def _named(self, key: str, raw: Mapping[str, Any], required: bool, toc: list[str]) -> list[str]:
        node = self.s.resolve(raw)
        title = f"{key}.<{_NAMED[key]}>"
        toc.append(f"- [`{title}`](#{_anchor(title)})")
        lines = [f"## `{title}`", ""]
        lines += [str(node.get("description", "")), ""]
        lines += self.table([self.row(key, raw, required)])
        entry = node.get("additionalProperties")
        if not isinstance(entry, dict):
            return lines
        entry_node = self.s.resolve(entry)
        if entry_node.get("description"):
            lines += [str(entry_node["description"]), ""]
        if self.allowed(entry):
            lines += [f"Each entry: {self.allowed(entry)}.", ""]
        prefix = f"{key}.<{_NAMED[key]}>."
        if key != "models":
            rows = self.rows(entry, prefix)
            return lines + (self.table(rows) if rows else [])
        lines += self.table(self.rows(entry, prefix, stop=_MODEL_SECTIONS))
        for part in _MODEL_SECTIONS:
            sub_raw = entry_node["properties"][part]
            title = f"{prefix}{part}"
            toc.append(f"  - [`{part}`](#{_anchor(title)})")
            lines += self.section(title, sub_raw, f"{part}.")
        return lines


def _anchor(title: str) -> str:
    """GitHub's heading anchor: lowercase, spaces to '-', punctuation dropped."""
    kept = [c for c in title.lower() if c.isalnum() or c in " -_"]
    return "".join(kept).replace(" ", "-")


def render_markdown(schema: Mapping[str, Any]) -> str:
    """The reference page for the given mlops.yaml JSON Schema."""
    return _Renderer(schema).render()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog=COMMAND, description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when the file is stale")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT, help="markdown file")
    args = parser.parse_args(argv)
    from mlops_sessions.config.loader import schema

    text = render_markdown(schema())
    output: Path = args.output
    if args.check:
        current = output.read_text(encoding="utf-8") if output.exists() else ""
        if current != text:
            print(f"{output} is out of date with the schema; run `{COMMAND}`", file=sys.stderr)
            return 1
        print(f"{output} is up to date")
        return 0
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(text, encoding="utf-8")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
