"""Model runtime: load a SavedModel and call its serving signature on whole batches.

This is the only server module that imports TensorFlow (lazily, in :func:`load_saved_model`),
so the HTTP layer, the codec and the tests of both can run against any object with the
:class:`Model` shape. The signature read here is what the codec validates requests against,
before anything reaches the batching queue.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

SERVING_SIGNATURE = "serving_default"


@dataclass(frozen=True)
class TensorInfo:
    """One named tensor of a signature; shape[0] is the batch dimension (None)."""

    name: str
    dtype: np.dtype[Any]
    shape: tuple[int | None, ...]

    @functools.cached_property
    def row_shape(self) -> tuple[int | None, ...]:
        return self.shape[1:]

    @functools.cached_property
    def fixed_row_shape(self) -> bool:
        return all(dim is not None for dim in self.row_shape)

    @functools.cached_property
    def float_limit(self) -> float:
        """Magnitudes at or above this round to infinity in this float dtype (inf: none do).

        The largest finite value plus half a unit in its last place: below it, a cast
        rounds to a finite number. float64 is what JSON numbers parse to, so only
        non-finite values exceed it.
        """
        if self.dtype.kind != "f" or self.dtype.itemsize >= 8:
            return math.inf
        info = np.finfo(self.dtype)
        half_ulp: float = 2.0 ** (int(info.maxexp) - int(info.nmant) - 2)
        return float(info.max) + half_ulp

    @functools.cached_property
    def expected(self) -> str:
        """'expected pixels: float32[64] per row' (cached: the hot path quotes it in errors)."""
        dims = ", ".join("?" if d is None else str(d) for d in self.row_shape)
        return f"expected {self.name}: {self.dtype.name}[{dims}] per row"

    def to_json(self) -> dict[str, Any]:
        return {
            "dtype": _TF_DTYPE_NAMES.get(self.dtype.name, self.dtype.name),
            "tensor_shape": {
                "dim": [{"size": str(-1 if d is None else d), "name": ""} for d in self.shape],
                "unknown_rank": False,
            },
            "name": self.name,
        }


# TensorFlow Serving's metadata names dtypes like the protobuf enum (DT_FLOAT, ...).
_TF_DTYPE_NAMES = {
    "float16": "DT_HALF",
    "float32": "DT_FLOAT",
    "float64": "DT_DOUBLE",
    "int8": "DT_INT8",
    "int16": "DT_INT16",
    "int32": "DT_INT32",
    "int64": "DT_INT64",
    "uint8": "DT_UINT8",
    "uint16": "DT_UINT16",
    "uint32": "DT_UINT32",
    "uint64": "DT_UINT64",
    "bool": "DT_BOOL",
}


@dataclass(frozen=True)
class Signature:
    inputs: Mapping[str, TensorInfo]
    outputs: Mapping[str, TensorInfo]

    @property
    def batchable(self) -> bool:
        """Rows of different requests can be stacked only when every row shape is fixed."""
        return all(info.fixed_row_shape for info in self.inputs.values())


class Model(Protocol):
    """What the server needs from a model: its signature and a batch call."""

    signature: Signature

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run one batch (every input has the same leading dimension)."""
        ...


class UnsupportedModelError(Exception):
    """The SavedModel cannot be served by this runtime (message says why)."""


class SavedModelRuntime:
    """A SavedModel's ``serving_default`` signature as a :class:`Model`."""

    def __init__(self, path: Path, function: Any, signature: Signature, keepalive: Any) -> None:
        self.path = path
        self.signature = signature
        self._function = function
        # The loaded object owns the variables the concrete function captures.
        self._keepalive = keepalive

    def predict(self, inputs: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorflow as tf

        # tf.constant: the same tensor as convert_to_tensor for an ndarray, at half the cost
        # (no dispatch layer); this runs under the GIL on every batch.
        feeds = {name: tf.constant(value) for name, value in inputs.items()}
        results = self._function(**feeds)
        return {name: tensor.numpy() for name, tensor in results.items()}

    def warmup(self, max_batch_size: int) -> None:
        """Call the model on zero batches of the sizes it will see, before /ready turns true."""
        sizes = sorted({1, max(1, max_batch_size // 2), max(1, max_batch_size)})
        for size in sizes:
            batch = {
                name: np.zeros((size, *(d or 1 for d in info.row_shape)), dtype=info.dtype)
                for name, info in self.signature.inputs.items()
            }
            self.predict(batch)


def _tensor_info(name: str, spec: Any) -> TensorInfo:
    dtype = spec.dtype
    if not (dtype.is_floating or dtype.is_integer or dtype.is_bool):
        raise UnsupportedModelError(
            f"signature tensor {name!r} has dtype {dtype.name}; this server serves numeric "
            "and boolean tensors only (use runtime: tfserving for string inputs)"
        )
    if spec.shape.rank is None or spec.shape.rank == 0:
        raise UnsupportedModelError(
            f"signature tensor {name!r} has shape {spec.shape}; expected a batch dimension first"
        )
    return TensorInfo(
        name=name, dtype=np.dtype(dtype.as_numpy_dtype), shape=tuple(spec.shape.as_list())
    )


def load_saved_model(path: Path) -> SavedModelRuntime:
    """Load ``path`` and return its serving signature; raise UnsupportedModelError if unusable."""
    import tensorflow as tf

    if not (path / "saved_model.pb").is_file():
        raise UnsupportedModelError(f"{path} is not a SavedModel directory (no saved_model.pb)")
    try:
        loaded = tf.saved_model.load(str(path))
    except Exception as exc:  # TensorFlow's errors are long, multi-line C++ statuses
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise UnsupportedModelError(
            f"{path} does not load in TensorFlow ({type(exc).__name__}: {first[:300]}); "
            "re-export the model (model.export(DIR), or `mlops train --force`)"
        ) from None
    signatures = dict(loaded.signatures)
    if SERVING_SIGNATURE not in signatures:
        raise UnsupportedModelError(
            f"{path} has no {SERVING_SIGNATURE!r} signature "
            f"(it has: {', '.join(signatures) or 'none'}); export it with model.export(dir)"
        )
    function = signatures[SERVING_SIGNATURE]
    _, kw_specs = function.structured_input_signature
    inputs = {name: _tensor_info(name, spec) for name, spec in sorted(kw_specs.items())}
    outputs = {
        name: _tensor_info(name, spec) for name, spec in sorted(function.structured_outputs.items())
    }
    return SavedModelRuntime(path, function, Signature(inputs, outputs), loaded)
