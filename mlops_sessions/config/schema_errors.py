"""JSON Schema errors as located problems with a hint that names the fix.

:mod:`mlops_sessions.config.loader` validates the effective document against the schema;
each error jsonschema reports comes here and leaves as a
:class:`~mlops_sessions.errors.Problem`
at the file, line and column of the offending key or value: a misspelt key gets a
did-you-mean, a name that breaks Kubernetes' rules the fixed name, a ``oneOf`` the branch
the value was closest to, an S3 URI the S3 rule it breaks.
"""

from __future__ import annotations

import re
from typing import Any

from mlops_sessions.config import kinds, s3uri
from mlops_sessions.config.locate import Locator, Path_, suggest
from mlops_sessions.errors import Problem

# Where the loader keeps a $ref'd property's own description (validators ignore it).
OWN_DESCRIPTION = "x-mlops-property-description"


def _subschema_description(error: Any) -> str:
    desc = error.schema.get("description", "") if isinstance(error.schema, dict) else ""
    return str(desc)


_DNS_HINT = "use lowercase letters, digits and '-' (a DNS-1123 label, at most 63 characters)"
# Patterns whose failure has a specific reason and fix (the S3 rules of data.<name>.uri).
_PATTERN_EXPLAINERS = {
    s3uri.OBJECT_URI_PATTERN: s3uri.object_uri_problem,
    s3uri.SHA256_PATTERN: s3uri.sha256_problem,
}


def explain(error: Any, locator: Locator) -> list[Problem]:
    path = tuple(error.absolute_path)
    validator = error.validator
    instance = error.instance
    if "propertyNames" in error.relative_schema_path:
        # The instance is a key (a model, image or data name); point at the key itself.
        fixed = str(instance).lower().replace("_", "-")
        pattern = error.validator_value if error.validator == "pattern" else None
        fits = isinstance(pattern, str) and re.search(pattern, fixed) is not None
        hint = (_subschema_description(error) or _DNS_HINT).rstrip(".") + (
            f", e.g. '{fixed}'" if fits and fixed != instance else ""
        )
        what = "name" if len(path) == 1 else "key"
        return [
            locator.problem(
                (*path, instance), f"{what} {instance!r} is not allowed", hint, key=True
            )
        ]
    if validator == "additionalProperties" and isinstance(instance, dict):
        allowed = list(error.schema.get("properties", {}))
        extras = [k for k in instance if k not in allowed]
        out = []
        for extra in extras:
            hint = suggest(extra, allowed) or (
                f"allowed keys here: {', '.join(allowed)}" if allowed else ""
            )
            out.append(locator.problem((*path, extra), f"unknown key '{extra}'", hint, key=True))
        if out:
            return out
    if validator == "required":
        missing = error.message.split("'")[1] if "'" in error.message else error.message
        prop = error.schema.get("properties", {}).get(missing, {})
        prop = prop if isinstance(prop, dict) else {}
        if "const" in prop:
            hint = f"add '{missing}: {prop['const']}'"
        else:
            desc = prop.get(OWN_DESCRIPTION) or prop.get("description", "")
            hint = f"add '{missing}': {desc}" if desc else f"add '{missing}'"
        return [locator.problem(path, f"missing required key '{missing}'", hint)]
    if validator == kinds.KEYWORD:
        return [locator.problem(path, error.message, getattr(error, "mlops_hint", ""))]
    if validator == "const":
        return [
            locator.problem(
                path,
                f"must be '{error.validator_value}', got {instance!r}",
                f"set it to {error.validator_value}",
            )
        ]
    if validator == "enum":
        options = [str(v) for v in error.validator_value]
        hint = suggest(str(instance), options) if isinstance(instance, str) else ""
        return [locator.problem(path, f"{instance!r} is not one of: {', '.join(options)}", hint)]
    if validator == "not" and isinstance(instance, str) and instance.endswith(":latest"):
        return [
            locator.problem(
                path,
                f"'{instance}' uses the tag 'latest', which is not reproducible",
                "pin a version tag (e.g. :2.16.1) or a digest (@sha256:...)",
            )
        ]
    if validator == "pattern" and isinstance(instance, str):
        explain = _PATTERN_EXPLAINERS.get(str(error.validator_value))
        found = explain(instance) if explain is not None else None
        if found is not None:
            return [locator.problem(path, *found)]
    if validator == "pattern":
        return [
            locator.problem(
                path,
                f"{instance!r} is not in the expected form",
                _subschema_description(error) or f"must match {error.validator_value}",
            )
        ]
    if validator == "oneOf":
        return [_explain_one_of(error, path, instance, locator)]
    if validator == "type":
        expected = error.validator_value
        names = [
            _TYPE_NAMES.get(str(t), str(t))
            for t in (expected if isinstance(expected, list) else [expected])
        ]
        got = kind_of(instance)
        shown = "" if instance is None or isinstance(instance, (dict, list)) else f" {instance!r}"
        hint = _subschema_description(error)
        if "string" in names and not isinstance(instance, (dict, list)):
            hint = (hint + " " if hint else "") + "Quote the value to keep it a string."
        got = "null" if instance is None else article(got)
        return [
            locator.problem(path, f"expected {article(' or '.join(names))}, got {got}{shown}", hint)
        ]
    if validator == "maximum":
        limit = error.validator_value
        why = " (Kubernetes stores it in 32 bits)" if limit == 2**31 - 1 else ""
        return [
            locator.problem(
                path,
                f"{instance} is greater than the maximum of {limit}{why}",
                " ".join(filter(None, [_subschema_description(error), f"Use at most {limit}."])),
            )
        ]
    if validator == "minProperties":
        props = list(error.schema.get("properties", {}))
        need = (
            f"at least one of: {', '.join(props)}"
            if props
            else f"at least {error.validator_value} entry"
        )
        return [
            locator.problem(
                path, f"this mapping is empty; it needs {need}", _subschema_description(error)
            )
        ]
    if validator == "minItems":
        count = error.validator_value
        return [
            locator.problem(
                path,
                f"this list needs at least {count} item{'s' if count != 1 else ''}",
                _subschema_description(error),
            )
        ]
    if validator == "uniqueItems" and isinstance(instance, list):
        repeated = next(v for i, v in enumerate(instance) if v in instance[:i])
        return [
            locator.problem(path, f"{repeated!r} is listed more than once", "list each item once")
        ]
    return [locator.problem(path, error.message, _subschema_description(error))]


def _explain_one_of(error: Any, path: Path_, instance: Any, locator: Locator) -> Problem:
    branches = [b for b in error.validator_value if isinstance(b, dict)]
    enums = [b["enum"] for b in branches if "enum" in b]
    if isinstance(instance, str) and enums:
        # Built-in metric names: the common case is a typo.
        names = enums[0]
        hint = suggest(instance, names) or (
            f"built-in metrics: {', '.join(names)}; "
            "a custom metric is {name: ..., function: module:callable}"
        )
        return locator.problem(path, f"unknown metric {instance!r}", hint)
    forms = [b["required"] for b in branches if "required" in b]
    if isinstance(instance, dict) and forms and len(forms) == len(branches):
        # Mutually exclusive key sets (data input, image base): say which forms exist.
        named = ["'" + "' + '".join(form) + "'" for form in forms]
        either = (
            f"either {named[0]} or {named[1]}"
            if len(named) == 2
            else f"one of {', '.join(named[:-1])} or {named[-1]}"
        )
        complete = [form for form in forms if all(k in instance for k in form)]
        used = [form for form in forms if any(k in instance for k in form)]
        keys = ", ".join(sorted(instance)) or "nothing"
        hint = _subschema_description(error)
        if len(used) > 1:
            message = (
                f"give {either}, not {'both' if len(used) == 2 else 'several'} (found: {keys})"
            )
        elif complete:
            message = f"{keys} cannot be combined; give {either}"
        else:
            message = f"incomplete: give {either} (found: {keys})"
            missing = [k for k in used[0] if k not in instance] if used else []
            props = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
            if missing and isinstance(props.get(missing[0]), dict):
                desc = props[missing[0]].get("description", "")
                hint = f"add '{missing[0]}'" + (f": {desc}" if desc else "")
        return locator.problem(path, message, hint)
    # Otherwise explain the failure of the branch that has the instance's type (e.g. a
    # custom metric mapping missing 'function'), skipping branches of another type.
    context = list(error.context or [])
    wrong_type = {
        sub.relative_schema_path[0]
        for sub in context
        if sub.validator == "type" and tuple(sub.absolute_path) == path
    }
    for sub in context:
        if sub.relative_schema_path[0] in wrong_type:
            continue
        explained = explain(sub, locator)
        if explained:
            return explained[0]
    hint = f"built-in metrics: {', '.join(enums[0])}" if enums else _subschema_description(error)
    return locator.problem(path, f"{instance!r} does not fit any accepted form", hint)


_TYPE_NAMES = {"object": "mapping", "array": "list"}


def article(text: str) -> str:
    return ("an " if text[:1] in "aeiou" else "a ") + text


def kind_of(value: Any) -> str:
    kinds = {
        dict: "mapping",
        list: "list",
        str: "string",
        bool: "boolean",
        int: "integer",
        float: "number",
        type(None): "null",
    }
    return kinds.get(type(value), type(value).__name__)
