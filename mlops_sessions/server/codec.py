"""Request parsing and response encoding for the TensorFlow Serving REST format.

Every request body is checked against the model's signature *before* it is queued: JSON
syntax, the ``instances`` (row) or ``inputs`` (columnar) layout, input names, per-row shape
and dtype, value range. Anything wrong raises :class:`RequestError` with a 4xx status and a
message naming what was expected, so bad input can never reach the model thread or turn
into a 5xx. Pure functions over bytes and numpy arrays: no HTTP, no TensorFlow.

JSON goes through orjson (parsing and encoding are most of a small request's Python work);
the standard library is kept for what orjson does differently: it names the mistake in a
body orjson refuses, and it writes non-finite outputs as ``NaN``/``Infinity`` like
TF Serving does, where orjson would write ``null``.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from typing import Any, NamedTuple, NoReturn

import numpy as np
import orjson

from mlops_sessions.server.runtime import Signature, TensorInfo

# Which JSON number kinds each tensor dtype kind accepts (numpy dtype.kind letters).
_ACCEPTED_KINDS = {"f": "fiu", "i": "iu", "u": "iu", "b": "b"}
_KIND_WORDS = {"f": "numbers", "i": "integers", "u": "non-negative integers", "b": "booleans"}
_TOP_LEVEL_KEYS = frozenset(("instances", "inputs", "signature_name"))
_MAX, _MIN = np.maximum.reduce, np.minimum.reduce


class RequestError(Exception):
    """A client error: HTTP status plus a message that says what was expected."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers


class PredictRequest(NamedTuple):
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
TOO_DEEP = "invalid JSON: nested too deeply; send an array of rows"


def _decode_stdlib(body: bytes) -> Any:
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        bad(f"request body is not UTF-8 ({exc.reason} at byte {exc.start}); send JSON")
    try:
        return _DECODER.decode(text)
    except json.JSONDecodeError as exc:
        bad(f"invalid JSON at line {exc.lineno} column {exc.colno}: {exc.msg}")
    except RecursionError:
        bad(TOO_DEEP)


def decode_json(body: bytes) -> Any:
    """Parse a JSON body; NaN/Infinity and absurd nesting are client errors, not crashes."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        # orjson stops at 1024 levels (no recursion, no crash); the stdlib would recurse.
        if "depth limit" in exc.msg:
            bad(TOO_DEEP)
    # orjson refuses a few bodies the standard library reads (a lone UTF-16 surrogate in a
    # string, 1e999), and its messages differ: the stdlib decides, as it always did, so
    # clients see the same answer and message. Only bodies that failed pay for it.
    return _decode_stdlib(body)


def _in_float_range(array: np.ndarray, limit: float) -> bool:
    """Every value's magnitude is below ``limit`` (no NaN): the cast to the float is finite."""
    kind = array.dtype.kind
    if kind in "iu" and limit > 2.0**64:  # no 64-bit integer reaches float32's range
        return True
    # One pass: the sum of squares is below limit^2 only if every |value| is (NaN and
    # overflow give NaN/inf). np.vdot, unlike the reductions, raises no FP warnings.
    if kind == "f" and float(np.vdot(array, array)) < limit * limit:
        return True
    # Exact (slower) check: big but in-range values, integers for float16, and rejections.
    return bool(_MAX(array, axis=None) < limit and _MIN(array, axis=None) > -limit)


def to_array(value: Any, info: TensorInfo, where: str, rows: int | None) -> np.ndarray:
    """One input as an array of shape [rows, *row_shape] whose values fit info.dtype.

    Integer and boolean inputs come back in info.dtype. Float inputs keep the dtype they
    were parsed in (float64, or integers); their values are checked to cast to info.dtype
    without overflow, and :func:`as_model_input` casts them. RequestError if invalid.
    """
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
    if target_kind == "f":
        # A range check instead of a guarded cast plus isfinite(): in range, the cast cannot
        # overflow, and it is left to the batcher, which casts a whole batch while stacking
        # it (one numpy call per batch instead of one per request on the event loop).
        if not _in_float_range(array, info.float_limit):
            bad(f"{where}: value out of range for {info.dtype.name} (overflows); {expected}")
        return array
    if array.dtype == info.dtype:
        return array
    with np.errstate(all="ignore"):
        converted = array.astype(info.dtype)
    if not np.array_equal(converted, array):
        bad(f"{where}: value out of range for {info.dtype.name}; {expected}")
    return converted


def as_model_input(arrays: list[np.ndarray], info: TensorInfo) -> np.ndarray:
    """Stack validated arrays of one input (from :func:`to_array`) in the model's dtype."""
    if len(arrays) == 1:
        return arrays[0].astype(info.dtype, copy=False)
    # "same_kind" casting (the default) covers float64/integers to a narrower float, whose
    # range to_array has checked.
    return np.concatenate(arrays, dtype=info.dtype)


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
    has_rows, has_cols = "instances" in document, "inputs" in document
    if len(document) != has_rows + has_cols + ("signature_name" in document):
        unknown = [k for k in document if k not in _TOP_LEVEL_KEYS]
        bad(
            f"unknown field(s) {', '.join(map(repr, unknown[:5]))}; "
            f"expected 'instances' or 'inputs', and optionally 'signature_name'"
        )
    requested = document.get("signature_name", signature_name)
    if requested != signature_name:
        bad(
            f"unknown signature_name {str(requested)[:100]!r}; this model serves {signature_name!r}"
        )
    if has_rows == has_cols:
        bad("send exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    if has_rows:
        arrays = _parse_rows(document["instances"], signature)
    else:
        arrays = _parse_columns(document["inputs"], signature)
    rows = next(iter(arrays.values())).shape[0]
    return PredictRequest(arrays, rows, has_cols)


# Content-Encoding values the server decodes itself (aiohttp's automatic decompression is
# off: it answered a body that does not match its header with a 500, and an encoding it
# cannot decode with a bare-text 400). zlib's wbits: 16+ = gzip, 32+ = zlib or gzip header.
_GZIP_WBITS = 16 + zlib.MAX_WBITS
_ZLIB_WBITS = zlib.MAX_WBITS
_RAW_WBITS = -zlib.MAX_WBITS
ENCODINGS = ("gzip", "deflate", "identity")
_ACCEPT = {"Accept-Encoding": ", ".join(ENCODINGS)}


def _zlib_header(data: bytes) -> bool:
    """RFC 1950: CM = 8 and the 16-bit header is a multiple of 31 (else raw deflate)."""
    return len(data) >= 2 and data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0


def _inflate(data: bytes, coding: str, limit: int) -> bytes:
    """One coding undone, never more than ``limit`` bytes out (a zip bomb is a 413)."""
    if coding == "deflate":
        # HTTP's "deflate" is the zlib format; some clients send raw deflate: accept both.
        wbits = _ZLIB_WBITS if _zlib_header(data) else _RAW_WBITS
    else:
        wbits = _GZIP_WBITS
    out: list[bytes] = []
    size = 0
    rest = data
    while True:
        decoder = zlib.decompressobj(wbits)
        try:
            chunk = decoder.decompress(rest, limit + 1 - size)
        except zlib.error as exc:
            bad(
                f"request body is not valid {coding} data ({exc}); send a body that matches "
                "its Content-Encoding header, or drop the header"
            )
        size += len(chunk)
        out.append(chunk)
        if size > limit:
            bad(
                f"request body over the limit of {limit} bytes once decompressed "
                "(serve.max_body_bytes); send fewer rows",
                413,
            )
        if not decoder.eof:
            bad(f"request body is truncated {coding} data; send the whole compressed body")
        rest = decoder.unused_data
        # gzip allows several members one after the other (RFC 1952 2.2); nothing else
        # may follow the end of the compressed data.
        if not rest:
            return b"".join(out)
        if coding != "gzip":
            bad(f"request body has {len(rest)} bytes after the end of its {coding} data")


def decode_content(body: bytes, header: str, limit: int) -> bytes:
    """Undo the body's Content-Encoding (RFC 9110 8.4: codings listed in applied order).

    An unsupported coding is a 415 that lists the supported ones (RFC 7694); a body that
    does not decode as its header says is a 400: both are the client's doing.
    """
    codings = [c.strip().lower() for c in header.split(",")]
    unknown = [c for c in codings if c not in ("gzip", "x-gzip", "deflate", "identity", "")]
    if unknown:
        raise RequestError(
            415,
            f"unsupported Content-Encoding {unknown[0][:40]!r}; send {', '.join(ENCODINGS)}",
            _ACCEPT,
        )
    for coding in reversed(codings):
        if coding in ("gzip", "x-gzip"):
            body = _inflate(body, "gzip", limit)
        elif coding == "deflate":
            body = _inflate(body, "deflate", limit)
    return body


# Built once: json.dumps with non-default options constructs an encoder per call.
_ENCODER = json.JSONEncoder(separators=(",", ":"))


def encode_json(body: Any) -> bytes:
    """Encode a response; non-finite floats as NaN/Infinity (TF Serving's way), not null.

    orjson writes NaN and infinities as ``null``, and a numeric tensor has no other null, so
    a null in the output means a non-finite value: only then the stdlib encodes it again.
    """
    try:
        encoded = orjson.dumps(body)
    except orjson.JSONEncodeError:  # a lone surrogate (an undecodable file name): escape it
        return _ENCODER.encode(body).encode()
    if b"null" in encoded:
        return _ENCODER.encode(body).encode()
    return encoded


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
    return encode_json(body)


def encode_error(message: str) -> bytes:
    return encode_json({"error": message})
