"""The one way to read ``mlops.yaml``: ``load(path, profile=None) -> Config``.

Steps, each collecting problems rather than stopping at the first:

1. parse YAML, keeping the source location of every key and value;
2. overlay the chosen profile (``--profile`` / ``MLOPS_PROFILE``) and merge ``defaults``
   under every model, remembering where each merged value was written;
3. substitute ``${VAR}`` / ``${VAR:-default}``;
4. validate against ``schemas/mlops.schema.json`` (JSON Schema 2020-12, plus the rule of
   each value's ``x-mlops-kind``: :mod:`mlops_sessions.config.kinds`), unless this exact
   effective document already passed under this exact schema (see ``_verdict_file``);
5. build the frozen :class:`~mlops_sessions.config.Config` and run the cross-field checks
   (:mod:`mlops_sessions.config.rules`): on the document, and the typed rules that
   render and deploy enforce through the same functions.

Anything wrong raises a single :class:`~mlops_sessions.errors.ConfigError`.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import json
import os
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from mlops_sessions.cachefile import marker_present
from mlops_sessions.config import (
    API_VERSION,
    Config,
    build,
    interpolate,
    kinds,
    rules,
    yamlpos,
)
from mlops_sessions.config.locate import Locator, dotted, suggest
from mlops_sessions.config.schema_errors import OWN_DESCRIPTION, article, explain, kind_of
from mlops_sessions.errors import ConfigError, Problem

PROFILE_ENV = "MLOPS_PROFILE"
# Where schema verdicts are remembered (default: $XDG_CACHE_HOME/mlops-sessions), and the
# switch that turns the memo off.
CACHE_ENV = "MLOPS_CACHE_DIR"
NO_CACHE_ENV = "MLOPS_NO_CACHE"
_VERDICTS_KEPT = 512
Path_ = yamlpos.Path_


@functools.lru_cache(maxsize=1)
def _schema_text() -> str:
    return resources.files("mlops_sessions").joinpath("_schemas/mlops.schema.json").read_text()


@functools.lru_cache(maxsize=1)
def schema() -> dict[str, Any]:
    """The packaged JSON Schema for mlops.yaml."""
    loaded: dict[str, Any] = json.loads(_schema_text())
    return loaded


@functools.lru_cache(maxsize=1)
def _validator() -> Any:
    import jsonschema

    # JSON Schema 2020-12 plus the annotation that names a value's kind: its rule
    # (config/kinds.py) runs wherever the walk meets an annotated value.
    checker = jsonschema.validators.extend(  # type: ignore[no-untyped-call]
        jsonschema.Draft202012Validator, {kinds.KEYWORD: _check_kind}
    )
    return checker(_inline_refs(schema(), schema()["$defs"], ()))


def _check_kind(validator: Any, kind: str, instance: Any, subschema: Any) -> Iterator[Any]:
    """The ``x-mlops-kind`` keyword: the kind's rule, each finding a ValidationError located
    under the instance and carrying its hint."""
    from jsonschema import ValidationError

    for finding in kinds.findings(kind, instance):
        error = ValidationError(finding.message, path=finding.where)
        error.mlops_hint = finding.hint  # type: ignore[attr-defined]
        yield error


def _inline_refs(node: Any, defs: Mapping[str, Any], active: tuple[str, ...]) -> Any:
    """The schema with every local ``$ref`` replaced by its definition.

    Resolving references through ``referencing`` on every descent is about half of the
    validation time of a large file; the schema is static, so it is resolved once. The
    definition's keywords win over the annotations written next to a ``$ref`` (our
    schema puts only descriptions there), which keeps ``error.schema`` — and with it the
    hints in messages — what it was with references. ``$defs`` stay for any cycle.
    """
    if isinstance(node, list):
        return [_inline_refs(item, defs, active) for item in node]
    if not isinstance(node, dict):
        return node
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/") and ref not in active:
        target = _inline_refs(defs[ref.rsplit("/", 1)[-1]], defs, (*active, ref))
        siblings = {k: _inline_refs(v, defs, active) for k, v in node.items() if k != "$ref"}
        merged = {**siblings, **target}
        if "description" in siblings:
            # What this property is for (its own description), used by 'missing key' hints.
            merged[OWN_DESCRIPTION] = siblings["description"]
        return merged
    return {k: v if k == "$defs" else _inline_refs(v, defs, active) for k, v in node.items()}


def load(
    path: str | os.PathLike[str],
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Load, validate and type the config at path, under the given (or env-chosen) profile."""
    env = os.environ if env is None else env
    if profile is None:
        profile = env.get(PROFILE_ENV) or None
    text, shown, root = _read(path)
    return loads(text, file=shown, root=root, profile=profile, env=env)


@dataclass(frozen=True)
class UnsetVariable:
    """A ``${VAR}`` without default whose variable is not set here, and where it is."""

    variable: str
    problem: Problem


def check_profile(
    path: str | os.PathLike[str],
    profile: str,
    env: Mapping[str, str] | None = None,
    *,
    strict_env: bool = True,
) -> list[UnsetVariable]:
    """Check the file under a profile; with ``strict_env=False`` unset variables are returned
    instead of raised.

    A profile that is not in use here (prod's namespace comes from the prod CI job) may
    reference variables this machine does not set. Its structure is still checked: every
    other problem raises :class:`ConfigError` as :func:`load` does. When variables are
    unset the values holding them cannot be judged, so the schema is checked on the rest
    and the cross-field rules (which read those values) wait for an environment that sets
    them; with none unset the check is exactly :func:`load`'s.
    """
    env = os.environ if env is None else env
    text, shown, root = _read(path)
    if strict_env:
        loads(text, file=shown, root=root, profile=profile, env=env)
        return []
    document, locator, unresolved = _effective(text, shown, profile, env)
    unset = [u for u in unresolved if u.variable is not None]
    if not unset:
        loads(text, file=shown, root=root, profile=profile, env=env)
        return []
    problems = [u.problem for u in unresolved if u.variable is None]
    problems += _validate(document, locator, skip={u.path for u in unresolved})
    if problems:
        raise ConfigError(problems)
    return [UnsetVariable(u.variable, u.problem) for u in unset if u.variable is not None]


def _read(path: str | os.PathLike[str]) -> tuple[str, str, Path]:
    """(text, the name problems show, the project root) of the config file at path."""
    file = Path(path)
    shown = str(path)
    try:
        with file.open("rb") as stream:
            # One byte past the limit is enough to refuse a huge file without reading it.
            data = stream.read(yamlpos.MAX_BYTES + 1)
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ConfigError(
            [
                Problem(
                    shown,
                    line,
                    column,
                    "",
                    f"the file is not UTF-8: byte 0x{data[exc.start]:02x} cannot be decoded",
                    "save mlops.yaml as UTF-8 (most editors: 'Save with encoding')",
                )
            ]
        ) from None
    except FileNotFoundError:
        raise ConfigError(
            [
                Problem(
                    shown,
                    None,
                    None,
                    "",
                    "file not found",
                    "run `mlops init` to create one, or pass --config PATH",
                )
            ]
        ) from None
    except OSError as exc:
        raise ConfigError(
            [Problem(shown, None, None, "", f"cannot read the file: {exc}")]
        ) from None
    return text, shown, file.resolve().parent


def loads(
    text: str,
    file: str = "mlops.yaml",
    root: Path | None = None,
    profile: str | None = None,
    env: Mapping[str, str] | None = None,
) -> Config:
    """Like load(), from text already read (tests and `mlops validate -` use this)."""
    env = os.environ if env is None else env
    document, locator, unresolved = _effective(text, file, profile, env)
    # An unset ${VAR} is reported together with every schema problem elsewhere in the
    # file; the value still holding '${VAR}' is not judged by the schema a second time.
    problems = [u.problem for u in unresolved]
    problems += _schema_problems(document, locator, skip={u.path for u in unresolved})
    if problems:
        raise ConfigError(problems)
    # The schema passed: the document builds. Cross-field checks on the document and the
    # typed rules the later steps enforce (the same functions they call) all report at once.
    problems = rules.cross_field(document, locator, root or Path.cwd())
    config = build.config(document, root=(root or Path.cwd()), file=file, profile=profile)
    problems += [
        locator.problem(finding.path, finding.message, finding.hint)
        for finding in rules.config_findings(config)
    ]
    if problems:
        raise ConfigError(problems)
    return config


def effective_document(
    text: str, file: str, profile: str | None, env: Mapping[str, str]
) -> tuple[dict[str, Any], Locator]:
    """Parse and merge, without schema validation: the document `mlops config` prints."""
    document, locator, unresolved = _effective(text, file, profile, env)
    if unresolved:
        raise ConfigError([u.problem for u in unresolved])
    return document, locator


def _effective(
    text: str, file: str, profile: str | None, env: Mapping[str, str]
) -> tuple[dict[str, Any], Locator, list[_Unresolved]]:
    """effective_document(), returning ${...} problems (with their paths) instead of raising."""
    try:
        parsed = yamlpos.parse(text)
    except yaml.MarkedYAMLError as exc:
        raise ConfigError([_yaml_problem(file, exc, text)]) from None
    except yaml.reader.ReaderError as exc:
        # Characters YAML does not allow (NUL, most control characters): locate them.
        before = text[: exc.position]
        line, column = before.count("\n") + 1, exc.position - (before.rfind("\n") + 1) + 1
        char = exc.character  # an int code point from libyaml, a str from PyYAML
        shown_char = chr(char) if isinstance(char, int) else char
        problem = Problem(
            file,
            line,
            column,
            "",
            f"invalid YAML: character {shown_char!r} is not allowed in a YAML file",
            "remove it; mlops.yaml is plain text",
        )
        raise ConfigError([problem]) from None
    except yaml.YAMLError as exc:
        raise ConfigError([Problem(file, None, None, "", f"invalid YAML: {exc}")]) from None
    except RecursionError:
        raise ConfigError(
            [
                Problem(
                    file,
                    None,
                    None,
                    "",
                    "the document is nested too deeply to read",
                    "flatten the structure; no mlops.yaml needs more than a few levels",
                )
            ]
        ) from None
    locator = Locator(file, dict(parsed.values), dict(parsed.keys))
    problems = [
        locator.problem(
            p, f"duplicate key '{p[-1]}'", "remove one of them; YAML keeps only the last", key=True
        )
        for p, _ in parsed.duplicates
    ]
    problems += [
        Problem(file, loc.line, loc.column, dotted(p), message, hint)
        for p, loc, message, hint in parsed.issues
    ]
    doc = parsed.data
    if not isinstance(doc, dict):
        kind = "empty" if doc is None else article(kind_of(doc))
        problems.append(
            Problem(
                file,
                1,
                1,
                "",
                f"the file is {kind}, expected a mapping",
                f"start with 'apiVersion: {API_VERSION}'; `mlops init` writes a complete example",
            )
        )
        raise ConfigError(problems)
    if problems:
        raise ConfigError(problems)
    doc = _apply_profile(doc, profile, locator)
    doc = _apply_defaults(doc, locator)
    return _interpolate(doc, locator, env)


def _yaml_problem(file: str, exc: yaml.MarkedYAMLError, text: str) -> Problem:
    """A YAML syntax or tag error, located at the mark and naming where the construct began."""
    mark = exc.problem_mark or exc.context_mark
    message = f"invalid YAML: {exc.problem or exc.context}"
    if exc.context and exc.problem:
        where = ""
        if (
            exc.context_mark is not None
            and exc.problem_mark is not None
            and (exc.context_mark.line != exc.problem_mark.line)
        ):
            where = f" (line {exc.context_mark.line + 1}, column {exc.context_mark.column + 1})"
        if exc.problem.startswith("but "):
            message = f"invalid YAML: {exc.context}{where}, {exc.problem}"
        else:
            message = f"invalid YAML: {exc.problem} {exc.context}{where}"
    if isinstance(exc, yamlpos.LimitError):
        hint = (
            "mlops.yaml describes the pipeline; keep data and long lists in the files it "
            f"names (limits: {yamlpos.MAX_BYTES // 1024 // 1024} MiB, "
            f"{yamlpos.MAX_DEPTH} levels of nesting)"
        )
    elif isinstance(exc, yamlpos.AliasError):
        hint = "reuse an anchor (*name) only outside the value it names, and not in bulk"
    elif isinstance(exc, yaml.constructor.ConstructorError):
        hint = (
            "mlops.yaml takes plain YAML: strings, numbers, booleans, lists and mappings (no tags)"
        )
    elif mark is not None and _char_at(text, mark.line, mark.column) == "\t":
        hint = "indent with spaces; YAML does not allow tabs for indentation"
    else:
        hint = "check indentation and quoting near this position"
    return Problem(
        file, mark.line + 1 if mark else None, mark.column + 1 if mark else None, "", message, hint
    )


def _char_at(text: str, line: int, column: int) -> str:
    lines = text.splitlines()
    return lines[line][column : column + 1] if line < len(lines) else ""


def _overlay(base: Any, over: Any) -> Any:
    """Deep merge: mappings merge key by key, everything else is replaced by the overlay."""
    if isinstance(base, dict) and isinstance(over, dict):
        merged = dict(base)
        for key, value in over.items():
            merged[key] = _overlay(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    return copy.deepcopy(over)


def _relocate(
    locator: Locator, source_prefix: Path_, targets: Iterable[Path_], only_missing: bool
) -> None:
    """Make locations under source_prefix answer for paths under each target prefix too.

    One pass collects the entries under the source; copying them is then linear in what
    is copied (a defaults section merged under 50 models must not rescan the file 50x).
    """
    n = len(source_prefix)
    target_list = list(targets)
    for table in (locator.values, locator.keys):
        under = [(path[n:], loc) for path, loc in table.items() if path[:n] == source_prefix]
        for prefix in target_list:
            for rest, loc in under:
                target = prefix + rest
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
            f"available profiles: {', '.join(names)}"
            if names
            else "this file declares no profiles: add one under 'profiles:' or drop --profile"
        )
        raise ConfigError([locator.problem(("profiles",), f"unknown profile '{profile}'", hint)])
    overlay = profiles[profile]
    if not isinstance(overlay, dict):
        raise ConfigError(
            [locator.problem(("profiles", profile), "a profile must be a mapping of overrides")]
        )
    for forbidden in ("apiVersion", "profiles"):
        if forbidden in overlay:
            raise ConfigError(
                [
                    locator.problem(
                        ("profiles", profile, forbidden),
                        f"a profile cannot override '{forbidden}'",
                        f"remove '{forbidden}' from profiles.{profile}; "
                        "it applies to the whole file",
                        key=True,
                    )
                ]
            )
    _relocate(locator, ("profiles", profile), [()], only_missing=False)
    return dict(_overlay(doc, overlay))


def _apply_defaults(doc: dict[str, Any], locator: Locator) -> dict[str, Any]:
    defaults = doc.get("defaults")
    models = doc.get("models")
    if not isinstance(defaults, dict) or not isinstance(models, dict):
        return doc
    merged_models: dict[str, Any] = {}
    for name, model in models.items():
        merged_models[name] = (
            _overlay(copy.deepcopy(defaults), model) if isinstance(model, dict) else model
        )
    merged = [name for name, model in models.items() if isinstance(model, dict)]
    for section in defaults:
        targets = [("models", name, section) for name in merged]
        _relocate(locator, ("defaults", section), targets, only_missing=True)
    return {**doc, "models": merged_models}


class _Unresolved(NamedTuple):
    """A value whose ${...} could not be substituted: an unset variable (named) or a
    malformed reference (variable None)."""

    path: Path_
    problem: Problem
    variable: str | None


def _interpolate(
    doc: dict[str, Any], locator: Locator, env: Mapping[str, str]
) -> tuple[dict[str, Any], Locator, list[_Unresolved]]:
    problems: list[_Unresolved] = []

    def visit(path: tuple[str | int, ...], value: str) -> Any:
        if path and path[0] == "profiles":
            return value  # overlays are interpolated once chosen, as part of the document
        try:
            substituted = interpolate.substitute(value, env)
        except interpolate.UnsetVariable as unset:
            problems.append(
                _Unresolved(
                    path,
                    locator.problem(
                        path,
                        f"environment variable '{unset.name}' is not set",
                        f"export {unset.name}=..., or give a default: ${{{unset.name}:-value}}",
                    ),
                    unset.name,
                )
            )
            return value
        except interpolate.BadReference as bad:
            problems.append(
                _Unresolved(
                    path,
                    locator.problem(
                        path,
                        f"malformed reference '{bad.text}'",
                        "write ${NAME} or ${NAME:-default}; $${ is a literal ${",
                    ),
                    None,
                )
            )
            return value
        if substituted == value:
            return value
        loc = locator.find(path)
        return interpolate.retype(substituted) if loc is not None and loc.plain else substituted

    result = interpolate.walk_strings(doc, visit)
    assert isinstance(result, dict)
    return result, locator, problems


# --- schema errors -> problems ----------------------------------------------------------


def _verdict_file(document: dict[str, Any]) -> Path | None:
    """Where the verdict 'this document is schema-valid' is remembered, or None (no memo).

    Importing jsonschema costs more than everything else `mlops validate` does, and every
    step loads the config again; an unchanged file under an unchanged schema is therefore
    validated once. The key is the hash of the schema text and of the canonical JSON of
    the effective document, so any change in either validates afresh. Only passes are
    remembered: a failing file is always fully explained.
    """
    if os.environ.get(NO_CACHE_ENV):
        return None
    try:
        blob = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError):
        return None
    digest = hashlib.sha256(_schema_text().encode() + b"\0" + blob.encode()).hexdigest()
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "mlops-sessions"
    )
    if not os.path.isabs(base):
        return None  # no HOME: never scatter a cache into the working directory
    return Path(base) / "schema-valid" / digest


def _remember_valid(marker: Path) -> None:
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.touch()
        kept = sorted(marker.parent.iterdir(), key=lambda p: p.stat().st_mtime)
        for old in kept[: max(0, len(kept) - _VERDICTS_KEPT)]:
            old.unlink(missing_ok=True)
    except OSError:
        pass  # a read-only or full cache only costs speed


def _schema_problems(
    document: dict[str, Any], locator: Locator, skip: Collection[Path_] = ()
) -> list[Problem]:
    marker = _verdict_file(document)
    if marker is not None and marker_present(marker, what="schema verdict cache entry"):
        return []
    problems = _validate(document, locator, skip)
    if not problems and marker is not None:
        _remember_valid(marker)
    return problems


def _validate(document: dict[str, Any], locator: Locator, skip: Collection[Path_]) -> list[Problem]:
    problems: list[Problem] = []
    seen: set[tuple[str, int | None, int | None, str]] = set()
    for error in _validator().iter_errors(document):
        if tuple(error.absolute_path) in skip:
            continue  # a value still holding an unresolved ${...}, reported already
        for problem in explain(error, locator):
            key = (problem.path, problem.line, problem.column, problem.message)
            if key not in seen:
                seen.add(key)
                problems.append(problem)
    return problems
