"""Request parsing and response encoding for the TensorFlow Serving REST format.

Every request body is checked against the model's signature *before* it is queued: JSON
syntax, the ``instances`` (row) or ``inputs`` (columnar) layout, input names, per-row shape
and dtype, value range. Anything wrong raises :class:`RequestError` with a 4xx status and a
message naming what was expected, so bad input can never reach the model thread or turn
into a 5xx. Pure functions over bytes and numpy arrays: no HTTP, no TensorFlow.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np

from mlops_sessions.executors.server.runtime import Signature, TensorInfo

# Which JSON number kinds each tensor dtype kind accepts (numpy dtype.kind letters).
_ACCEPTED_KINDS = {"f": "fiu", "i": "iu", "u": "iu", "b": "b"}
_KIND_WORDS = {"f": "numbers", "i": "integers", "u": "non-negative integers", "b": "booleans"}
_TOP_LEVEL_KEYS = ("instances", "inputs", "signature_name")


class RequestError(Exception):
    """A client error: HTTP status plus a message that says what was expected."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class PredictRequest:
    """A validated request: one array per signature input, all with ``rows`` rows."""

    inputs: dict[str, np.ndarray]
    rows: int
    columnar: bool


def bad(message: str, status: int = 400) -> NoReturn:
    raise RequestError(status, message)


def _reject_constant(name: str) -> NoReturn:
    bad(f"invalid JSON: {name} is not a JSON number; send finite numbers")


# One decoder for all requests: json.loads with a hook would build a new one per call.
_DECODER = json.JSONDecoder(parse_constant=_reject_constant)


def decode_json(body: bytes) -> Any:
    """Parse a JSON body; NaN/Infinity and absurd nesting are client errors, not crashes."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad(f"request body is not UTF-8 ({exc.reason} at byte {exc.start}); send JSON")
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        bad(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
    except RecursionError:
        bad("invalid JSON: nested too deeply; send an array of rows")


def to_array(value: Any, info: TensorInfo, where: str, rows: int | None) -> np.ndarray:
    """One input as an array of info.dtype with shape [rows, *row_shape], or RequestError."""
    expected = info.expected
    try:
        array = np.asarray(value)
    except (ValueError, TypeError, OverflowError, RecursionError):
        bad(f"{where}: not a rectangular array (rows of equal length); {expected}")
    target_kind = info.dtype.kind
    if array.dtype.kind not in _ACCEPTED_KINDS.get(target_kind, ""):
        got = "strings" if array.dtype.kind in "USO" else f"{array.dtype.name} values"
        if array.dtype.kind == "O":
            got = "mixed or non-numeric values"
        bad(f"{where}: got {got}, expected {_KIND_WORDS[target_kind]} ({expected})")
    row_shape = info.row_shape
    if info.fixed_row_shape:  # the common case, one tuple comparison
        shape_ok = array.shape[1:] == row_shape
    else:
        shape_ok = array.ndim == len(row_shape) + 1 and all(
            want is None or got == want
            for got, want in zip(array.shape[1:], row_shape, strict=True)
        )
    if not shape_ok or array.shape[0] == 0:
        got_shape = list(array.shape)
        want = ["n", *("?" if d is None else d for d in row_shape)]
        bad(
            f"{where}: got shape {got_shape}, expected [{', '.join(map(str, want))}] "
            f"with n >= 1 rows ({expected})"
        )
    if rows is not None and array.shape[0] != rows:
        bad(f"{where}: has {array.shape[0]} rows but other inputs have {rows}; {expected}")
    if array.dtype == info.dtype:
        converted = array
    else:
        with np.errstate(all="ignore"):
            converted = array.astype(info.dtype)
        if target_kind in "iu" and not np.array_equal(converted, array):
            bad(f"{where}: value out of range for {info.dtype.name}; {expected}")
    if target_kind == "f" and not np.isfinite(converted).all():
        bad(f"{where}: value out of range for {info.dtype.name} (overflows); {expected}")
    return converted


def _named(value: Any, signature: Signature, where: str) -> Mapping[str, Any]:
    """Map input name -> value; a bare value is allowed for a single-input signature."""
    names = list(signature.inputs)
    if isinstance(value, dict):
        missing = [n for n in names if n not in value]
        unknown = [k for k in value if k not in signature.inputs]
        if missing or unknown:
            parts = []
            if missing:
                parts.append(f"missing {', '.join(map(repr, missing))}")
            if unknown:
                parts.append(f"unknown {', '.join(map(repr, unknown[:5]))}")
            bad(f"{where}: {'; '.join(parts)}; expected inputs {', '.join(map(repr, names))}")
        return value
    if len(names) != 1:
        bad(f"{where}: this model has several inputs; send an object keyed by {names}")
    return {names[0]: value}


def _parse_rows(instances: Any, signature: Signature) -> dict[str, np.ndarray]:
    if not isinstance(instances, list) or not instances:
        bad("'instances' must be a non-empty list of rows")
    infos = signature.inputs
    if len(infos) == 1 and not isinstance(instances[0], dict):
        # Fast path: one input, rows given bare; the whole list is one array.
        (info,) = infos.values()
        return {info.name: to_array(instances, info, "'instances'", None)}
    columns: dict[str, list[Any]] = {name: [] for name in infos}
    for index, row in enumerate(instances):
        if not isinstance(row, dict):
            bad(f"'instances'[{index}]: expected an object keyed by {list(infos)}")
        named = _named(row, signature, f"'instances'[{index}]")
        for name in infos:
            columns[name].append(named[name])
    rows = len(instances)
    return {
        name: to_array(columns[name], info, f"'instances' input {name!r}", rows)
        for name, info in infos.items()
    }


def _parse_columns(inputs: Any, signature: Signature) -> dict[str, np.ndarray]:
    named = _named(inputs, signature, "'inputs'")
    out: dict[str, np.ndarray] = {}
    rows: int | None = None
    for name, info in signature.inputs.items():
        array = to_array(named[name], info, f"'inputs' {name!r}", rows)
        rows = array.shape[0]
        out[name] = array
    return out


def parse_predict(body: bytes, signature: Signature, signature_name: str) -> PredictRequest:
    """Validate a ``:predict`` body against the signature (TF Serving's row/columnar forms)."""
    document = decode_json(body)
    if not isinstance(document, dict):
        bad("request body must be a JSON object with 'instances' (rows) or 'inputs' (columns)")
    unknown = [k for k in document if k not in _TOP_LEVEL_KEYS]
    if unknown:
        bad(
            f"unknown field(s) {', '.join(map(repr, unknown[:5]))}; "
            f"expected 'instances' or 'inputs', and optionally 'signature_name'"
        )
    requested = document.get("signature_name", signature_name)
    if requested != signature_name:
        bad(
            f"unknown signature_name {str(requested)[:100]!r}; this model serves {signature_name!r}"
        )
    has_rows, has_cols = "instances" in document, "inputs" in document
    if has_rows == has_cols:
        bad("send exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    if has_rows:
        arrays = _parse_rows(document["instances"], signature)
    else:
        arrays = _parse_columns(document["inputs"], signature)
    rows = next(iter(arrays.values())).shape[0]
    return PredictRequest(inputs=arrays, rows=rows, columnar=has_cols)


# Built once: json.dumps with non-default options constructs an encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode_predict(outputs: Mapping[str, np.ndarray], columnar: bool) -> bytes:
    """TF Serving's response: ``predictions`` for row requests, ``outputs`` for columnar."""
    if columnar:
        if len(outputs) == 1:
            body: dict[str, Any] = {"outputs": next(iter(outputs.values())).tolist()}
        else:
            body = {"outputs": {name: value.tolist() for name, value in outputs.items()}}
    elif len(outputs) == 1:
        body = {"predictions": next(iter(outputs.values())).tolist()}
    else:
        columns = {name: value.tolist() for name, value in outputs.items()}
        rows = len(next(iter(columns.values())))
        body = {"predictions": [{n: c[i] for n, c in columns.items()} for i in range(rows)]}
    return _ENCODER.encode(body).encode()


def encode_error(message: str) -> bytes:
    return json.dumps({"error": message}).encode()
