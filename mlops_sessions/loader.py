"""The one way to read ``mlops.yaml``: ``load(path, profile=None) -> Config``.

Steps, each collecting problems rather than stopping at the first:

1. parse YAML, keeping the source location of every key and value;
2. overlay the chosen profile (``--profile`` / ``MLOPS_PROFILE``) and merge ``defaults``
   under every model, remembering where each merged value was written;
3. substitute ``${VAR}`` / ``${VAR:-default}``;
4. validate against ``schemas/mlops.schema.json`` (JSON Schema 2020-12);
5. run cross-field checks (:mod:`mlops_sessions.checks`);
6. build the frozen :class:`~mlops_sessions.config.Config`.

Anything wrong raises a single :class:`~mlops_sessions.errors.ConfigError`.
"""

from __future__ import annotations

import copy
import difflib
import functools
import json
import os
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from mlops_sessions import build, checks, interpolate, yamlpos
from mlops_sessions.config import API_VERSION, Config
from mlops_sessions.errors import ConfigError, Problem

PROFILE_ENV = "MLOPS_PROFILE"
Path_ = yamlpos.Path_


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The packaged JSON Schema for mlops.yaml."""
    text = resources.files("mlops_sessions").joinpath("_schemas/mlops.schema.json").read_text()
    loaded: dict[str, Any] = json.loads(text)
    return loaded


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    return jsonschema.Draft202012Validator(schema())


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

    def problem(self, path: Iterable[str | int], message: str, hint: str = "", key: bool = False) -> Problem:
        parts = tuple(path)
        found, loc = self._find(parts, key)
        shown = _dotted(parts)
        if loc is not None and loc.source != found:
            # The value was merged in from a profile or from `defaults`: name both places.
            shown = f"{shown} (from {_dotted(loc.source)})"
        return Problem(
            file=self.file,
            line=loc.line if loc else None,
            column=loc.column if loc else None,
            path=shown,
            message=message,
            hint=hint,
        )


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def suggest(word: str, candidates: Iterable[str]) -> str:
    """A 'did you mean' fragment, or '' when nothing is close."""
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f"did you mean '{close[0]}'?" if close else ""


def load(
    path: str | os.PathLike[str],
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Load, validate and type the config at path, under the given (or env-chosen) profile."""
    env = os.environ if env is None else env
    if profile is None:
        profile = env.get(PROFILE_ENV) or None
    file = Path(path)
    shown = str(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(
            [Problem(shown, None, None, "", "file not found", "run `mlops init` to create one, or pass --config PATH")]
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError([Problem(shown, None, None, "", f"cannot read the file: {exc}")]) from None
    return loads(text, file=shown, root=file.resolve().parent, profile=profile, env=env)


def loads(
    text: str,
    file: str = "mlops.yaml",
    root: Path | None = None,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Like load(), from text already read (tests and `mlops validate -` use this)."""
    env = os.environ if env is None else env
    document, locator = effective_document(text, file, profile, env)
    problems = _schema_problems(document, locator)
    if not problems:
        problems = checks.cross_field(document, locator, root or Path.cwd())
    if problems:
        raise ConfigError(problems)
    return build.config(document, root=(root or Path.cwd()), file=file, profile=profile)


def effective_document(
    text: str, file: str, profile: str | None, env: Mapping[str, str]
) -> tuple[dict[str, Any], Locator]:
    """Parse and merge, without schema validation: the document `mlops config` prints."""
    try:
        parsed = yamlpos.parse(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        raise ConfigError(
            [
                Problem(
                    file,
                    mark.line + 1 if mark else None,
                    mark.column + 1 if mark else None,
                    "",
                    f"invalid YAML: {exc.problem}",
                    "check indentation and quoting near this position",
                )
            ]
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, None, None, "", f"invalid YAML: {exc}")]) from None
    locator = Locator(file, dict(parsed.values), dict(parsed.keys))
    problems = [
        locator.problem(p, f"duplicate key '{p[-1]}'", "remove one of them; YAML keeps only the last", key=True)
        for p, _ in parsed.duplicates
    ]
    doc = parsed.data
    if not isinstance(doc, dict):
        kind = "empty" if doc is None else f"a {type(doc).__name__}"
        problems.append(
            Problem(file, 1, 1, "", f"the file is {kind}, expected a mapping",
                    f"start with 'apiVersion: {API_VERSION}'; `mlops init` writes a complete example")
        )
        raise ConfigError(problems)
    if problems:
        raise ConfigError(problems)
    doc = _apply_profile(doc, profile, locator)
    doc = _apply_defaults(doc, locator)
    doc = _interpolate(doc, locator, env)
    return doc, locator


def _overlay(base: Any, over: Any) -> Any:
    """Deep merge: mappings merge key by key, everything else is replaced by the overlay."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _overlay(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(over)


def _relocate(locator: Locator, source_prefix: Path_, target_prefix: Path_, only_missing: bool) -> None:
    """Make locations under source_prefix answer for paths under target_prefix too."""
    n = len(source_prefix)
    for table in (locator.values, locator.keys):
        for path, loc in list(table.items()):
            if path[:n] == source_prefix:
                target = target_prefix + path[n:]
                if only_missing and target in table:
                    continue
                table[target] = loc


def _apply_profile(doc: dict[str, Any], profile: str | None, locator: Locator) -> dict[str, Any]:
    profiles = doc.get("profiles") or {}
    if profile is None:
        return doc
    if not isinstance(profiles, dict) or profile not in profiles:
        names = sorted(profiles) if isinstance(profiles, dict) else []
        hint = suggest(profile, names) or (
            f"available profiles: {', '.join(names)}" if names else "this file declares no profiles"
        )
        raise ConfigError([locator.problem(("profiles",), f"unknown profile '{profile}'", hint)])
    overlay = profiles[profile]
    if not isinstance(overlay, dict):
        raise ConfigError([locator.problem(("profiles", profile), "a profile must be a mapping of overrides")])
    for forbidden in ("apiVersion", "profiles"):
        if forbidden in overlay:
            raise ConfigError(
                [locator.problem(("profiles", profile, forbidden), f"a profile cannot override '{forbidden}'", key=True)]
            )
    _relocate(locator, ("profiles", profile), (), only_missing=False)
    return dict(_overlay(doc, overlay))


def _apply_defaults(doc: dict[str, Any], locator: Locator) -> dict[str, Any]:
    defaults = doc.get("defaults")
    models = doc.get("models")
    if not isinstance(defaults, dict) or not isinstance(models, dict):
        return doc
    merged_models: dict[str, Any] = {}
    for name, model in models.items():
        if not isinstance(model, dict):
            merged_models[name] = model
            continue
        for section in defaults:
            _relocate(locator, ("defaults", section), ("models", name, section), only_missing=True)
        merged_models[name] = _overlay(copy.deepcopy(defaults), model)
    return {**doc, "models": merged_models}


def _interpolate(doc: dict[str, Any], locator: Locator, env: Mapping[str, str]) -> dict[str, Any]:
    problems: list[Problem] = []

    def visit(path: tuple[str | int, ...], value: str) -> Any:
        if path and path[0] == "profiles":
            return value  # overlays are interpolated once chosen, as part of the document
        try:
            substituted = interpolate.substitute(value, env)
        except interpolate.UnsetVariable as unset:
            problems.append(
                locator.problem(
                    path,
                    f"environment variable '{unset.name}' is not set",
                    f"export {unset.name}=..., or give a default: ${{{unset.name}:-value}}",
                )
            )
            return value
        except interpolate.BadReference as bad:
            problems.append(
                locator.problem(path, f"malformed reference '{bad.text}'", "write ${NAME} or ${NAME:-default}; $${ is a literal ${")
            )
            return value
        if substituted == value:
            return value
        loc = locator.find(path)
        return interpolate.retype(substituted) if loc is not None and loc.plain else substituted

    result = interpolate.walk_strings(doc, visit)
    if problems:
        raise ConfigError(problems)
    assert isinstance(result, dict)
    return result


# --- schema errors -> problems ----------------------------------------------------------


def _schema_problems(document: dict[str, Any], locator: Locator) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, int | None, int | None, str]] = set()
    for error in _validator().iter_errors(document):
        for problem in _explain(error, locator):
            key = (problem.path, problem.line, problem.column, problem.message)
            if key not in seen:
                seen.add(key)
                problems.append(problem)
    return problems


def _subschema_description(error: Any) -> str:
    desc = error.schema.get("description", "") if isinstance(error.schema, dict) else ""
    return str(desc)


def _explain(error: Any, locator: Locator) -> list[Problem]:
    path = tuple(error.absolute_path)
    validator = error.validator
    instance = error.instance
    if validator == "additionalProperties" and isinstance(instance, dict):
        allowed = list(error.schema.get("properties", {}))
        extras = [k for k in instance if k not in allowed]
        out = []
        for extra in extras:
            hint = suggest(extra, allowed) or (f"allowed keys here: {', '.join(allowed)}" if allowed else "")
            out.append(locator.problem((*path, extra), f"unknown key '{extra}'", hint, key=True))
        if out:
            return out
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        prop = error.schema.get("properties", {}).get(missing, {})
        desc = prop.get("description", "") if isinstance(prop, dict) else ""
        return [locator.problem(path, f"missing required key '{missing}'", desc and f"add '{missing}': {desc}")]
    if validator == "const":
        return [locator.problem(path, f"must be '{error.validator_value}', got {instance!r}",
                                f"set it to {error.validator_value}")]
    if validator == "enum":
        options = [str(v) for v in error.validator_value]
        hint = suggest(str(instance), options) if isinstance(instance, str) else ""
        return [locator.problem(path, f"{instance!r} is not one of: {', '.join(options)}", hint)]
    if validator == "not" and isinstance(instance, str) and instance.endswith(":latest"):
        return [locator.problem(path, f"'{instance}' uses the tag 'latest', which is not reproducible",
                                "pin a version tag (e.g. :2.16.1) or a digest (@sha256:...)")]
    if validator == "pattern":
        return [locator.problem(path, f"{instance!r} is not in the expected form", _subschema_description(error) or f"must match {error.validator_value}")]
    if validator == "propertyNames":
        bad = instance if isinstance(instance, str) else ""
        return [locator.problem(path, f"name {bad!r} is not allowed", "use lowercase letters, digits and '-' (a DNS-1123 label)")]
    if validator == "oneOf":
        return [_explain_one_of(error, path, instance, locator)]
    if validator == "type":
        expected = error.validator_value
        expected_text = " or ".join(expected) if isinstance(expected, list) else expected
        return [locator.problem(path, f"expected {_article(expected_text)}, got {_kind(instance)} {instance!r}",
                                _subschema_description(error))]
    return [locator.problem(path, error.message, _subschema_description(error))]


def _explain_one_of(error: Any, path: Path_, instance: Any, locator: Locator) -> Problem:
    # Built-in metric names: the common case is a typo.
    branches = error.validator_value
    enums = [b.get("enum") for b in branches if isinstance(b, dict) and "enum" in b]
    if isinstance(instance, str) and enums:
        names = enums[0]
        hint = suggest(instance, names) or f"built-in metrics: {', '.join(names)}; a custom metric is {{name: ..., function: module:callable}}"
        return locator.problem(path, f"unknown metric {instance!r}", hint)
    desc = _subschema_description(error)
    if isinstance(instance, dict):
        # Report the most relevant sub-error (e.g. an unknown key inside a data input).
        inner = [e for e in (error.context or []) if e.validator in ("additionalProperties", "type", "pattern", "enum", "not")]
        for sub in inner:
            if sub.validator == "additionalProperties":
                explained = _explain(sub, locator)
                if explained:
                    return explained[0]
        keys = ", ".join(sorted(instance)) or "nothing"
        return locator.problem(path, f"this combination of keys is not valid (found: {keys})", desc)
    return locator.problem(path, f"{instance!r} does not fit any accepted form", desc)


def _article(text: str) -> str:
    return ("an " if text[:1] in "aeiou" else "a ") + text


def _kind(value: Any) -> str:
    return {dict: "mapping", list: "list", str: "string", bool: "boolean", int: "integer", float: "number", type(None): "null"}.get(type(value), type(value).__name__)
