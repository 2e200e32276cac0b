"""Turn a schema-valid effective document into the frozen Config dataclasses.

A small generic converter driven by the dataclasses' type hints, so adding a config key
means adding a field (and its schema entry) — no hand-written parsing per section.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union

from mlops_sessions.config import model as cfg

# YAML/JSON spelling -> dataclass field name where they differ.
_RENAMES = {"apiVersion": "api_version", "for": "for_"}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(cfg))


def convert(tp: Any, value: Any) -> Any:
    """Convert plain data to type tp (dataclass, tuple, Mapping, Optional, Union, primitives)."""
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        for option in options:
            if dataclasses.is_dataclass(option) and isinstance(value, dict):
                return convert(option, value)
        for option in options:
            if not dataclasses.is_dataclass(option):
                return convert(option, value)
        return convert(options[0], value)
    if origin is tuple:
        (item, *_rest) = typing.get_args(tp)
        return tuple(convert(item, v) for v in value)
    if origin in (Mapping, dict) or tp in (Mapping, dict):
        args = typing.get_args(tp)
        item_tp = args[1] if len(args) == 2 else Any
        return types.MappingProxyType({k: convert(item_tp, v) for k, v in value.items()})
    if origin is Literal:
        return value
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return _dataclass(tp, value)
    if tp is int and isinstance(value, float) and not isinstance(value, bool):
        return int(value)  # JSON Schema's 'integer' accepts 2.0
    if tp is float and isinstance(value, int):
        return float(value)
    if tp is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # e.g. cpu: 2
    if tp is Any:
        return _freeze(value)
    return value


def _freeze(value: Any) -> Any:
    if isinstance(value, dict):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    return value


def _dataclass(cls: type, data: Mapping[str, Any]) -> Any:
    hints = _hints(cls)
    kwargs = {}
    for key, value in data.items():
        name = _RENAMES.get(key, key)
        if name in hints:
            kwargs[name] = convert(hints[name], value)
    return cls(**kwargs)


def config(document: Mapping[str, Any], root: Path, file: str, profile: str | None) -> cfg.Config:
    models = {
        name: _dataclass(cfg.ModelConfig, {**spec, "name": name})
        for name, spec in document["models"].items()
    }
    top = {k: v for k, v in document.items() if k not in ("models", "profiles", "defaults")}
    built: cfg.Config = _dataclass(cfg.Config, {**_store_fields(top), "models": {}})
    return dataclasses.replace(
        built,
        models=types.MappingProxyType(models),
        profiles=tuple(document.get("profiles", {}) or {}),
        root=root,
        source_file=Path(file),
        profile=profile,
        document=_freeze_plain({**top, "models": document["models"]}),
    )


def _store_fields(top: Mapping[str, Any]) -> dict[str, Any]:
    """``store:`` is a path (the original form) or ``{path, remote, endpoint, region}``.

    The object form is split into ``Config.store`` (still the local path, so readers of it
    are unchanged) and ``Config.store_remote``.
    """
    store = top.get("store")
    if not isinstance(store, Mapping):
        return dict(top)
    out = {k: v for k, v in top.items() if k != "store"}
    out["store"] = store.get("path", ".mlops")
    if store.get("remote"):
        out["store_remote"] = {
            "url": store["remote"],
            **{k: store[k] for k in ("endpoint", "region") if store.get(k) is not None},
        }
    return out


def _freeze_plain(document: Mapping[str, Any]) -> Mapping[str, Any]:
    import copy

    return types.MappingProxyType(copy.deepcopy(dict(document)))
