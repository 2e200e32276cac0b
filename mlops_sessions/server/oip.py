"""Open Inference Protocol (KServe "v2") request parsing and response encoding.

``POST /v2/models/<name>[/versions/<v>]/infer`` takes
``{"inputs": [{"name", "shape", "datatype", "data"}]}`` with one entry per signature input
(``data`` flat in row-major order, or nested) and answers
``{"model_name", "model_version", "outputs": [{"name", "shape", "datatype", "data"}]}``.
Validation reuses the TF Serving codec's checks, so both protocols reject the same mistakes
with the same 4xx messages. Pure: no HTTP, no TensorFlow.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from mlops_sessions.server.codec import (
    PredictRequest,
    bad,
    decode_json,
    encode_json,
    to_array,
)
from mlops_sessions.server.runtime import Signature

DATATYPES = {
    "bool": "BOOL", "uint8": "UINT8", "uint16": "UINT16", "uint32": "UINT32", "uint64": "UINT64",
    "int8": "INT8", "int16": "INT16", "int32": "INT32", "int64": "INT64",
    "float16": "FP16", "float32": "FP32", "float64": "FP64",
}  # fmt: skip


def datatype(dtype: np.dtype[Any]) -> str:
    name = str(dtype.name)
    return DATATYPES.get(name, name.upper())


def _shape(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        bad(f"{where}: 'shape' must be a list of non-negative integers")
    return tuple(value)


def parse_infer(body: bytes, signature: Signature) -> PredictRequest:
    """Validate an ``/infer`` body against the signature."""
    document = decode_json(body)
    if not isinstance(document, dict) or not isinstance(document.get("inputs"), list):
        bad("request body must be a JSON object with an 'inputs' list of tensors")
    by_name: dict[str, Mapping[str, Any]] = {}
    for index, tensor in enumerate(document["inputs"]):
        if not isinstance(tensor, dict) or not isinstance(tensor.get("name"), str):
            bad(f"'inputs'[{index}]: expected an object with 'name', 'shape', 'datatype', 'data'")
        by_name[tensor["name"]] = tensor
    expected = sorted(signature.inputs)
    if sorted(by_name) != expected:
        got = ", ".join(repr(n[:50]) for n in sorted(by_name)[:5])
        bad(f"'inputs' names [{got}]; expected exactly {', '.join(map(repr, expected))}")
    arrays: dict[str, np.ndarray] = {}
    rows: int | None = None
    for name, info in signature.inputs.items():
        tensor = by_name[name]
        where = f"input {name!r}"
        want = datatype(info.dtype)
        if tensor.get("datatype") != want:
            bad(f"{where}: datatype {str(tensor.get('datatype'))[:20]!r}, expected {want!r}")
        shape = _shape(tensor.get("shape"), where)
        try:
            data = np.asarray(tensor.get("data"))
            data = data.reshape(shape)
        except (ValueError, TypeError, OverflowError, RecursionError):
            count = math.prod(shape)
            bad(f"{where}: 'data' does not hold {count} values for shape {list(shape)}")
        arrays[name] = to_array(data, info, where, rows)
        rows = arrays[name].shape[0]
    if rows is None:
        bad("'inputs' is empty")
    return PredictRequest(inputs=arrays, rows=rows, columnar=True)


def encode_infer(outputs: Mapping[str, np.ndarray], model: str, version: str) -> bytes:
    body = {
        "model_name": model,
        "model_version": version,
        "outputs": [
            {
                "name": name,
                "shape": list(value.shape),
                "datatype": datatype(value.dtype),
                "data": value.reshape(-1).tolist(),
            }
            for name, value in outputs.items()
        ],
    }
    return encode_json(body)
