"""The one parser for the config's units: durations, CPU and memory quantities.

mlops.yaml writes durations as ``500ms`` / ``30s`` / ``5m`` / ``1h`` and resources in
Kubernetes notation (``cpu: 500m`` or ``2``, ``memory: 512Mi``). The schema checks the
spelling with the patterns below (a test keeps the schema's copy equal to these); every
reader that needs a number — the cross-field checks, the manifest planner, the container
runner, the model server, training timeouts — converts through this module, so a value
the schema accepts always means the same amount everywhere.

Errors are :class:`UnitError` (a ``ValueError``): callers in the step layers turn it into
their own error type with the fix.
"""

from __future__ import annotations

import math
import re

# Kept equal to the schema's $defs/duration, $defs/cpu and $defs/memory patterns.
DURATION_PATTERN = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h)$"
CPU_PATTERN = r"^([0-9]+(\.[0-9]+)?|[0-9]+m)$"
# Kubernetes quantity suffixes: binary (Ki..Ei) or decimal (k, M, G, T, P, E). 'K' is not
# one: the API server refuses '1K', so the schema does too.
MEMORY_PATTERN = r"^[0-9]+(\.[0-9]+)?(Ki|Mi|Gi|Ti|Pi|Ei|k|M|G|T|P|E)?$"

_DURATION = re.compile(DURATION_PATTERN)
_CPU = re.compile(CPU_PATTERN)
_MEMORY = re.compile(MEMORY_PATTERN)
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
_MEMORY_FACTORS = {
    "": 1,
    "k": 10**3,
    "M": 10**6,
    "G": 10**9,
    "T": 10**12,
    "P": 10**15,
    "E": 10**18,
    "Ki": 2**10,
    "Mi": 2**20,
    "Gi": 2**30,
    "Ti": 2**40,
    "Pi": 2**50,
    "Ei": 2**60,
}
# Kubernetes counts seconds (probe periods, grace periods, deadlines) in int32 fields.
INT32_MAX = 2**31 - 1


class UnitError(ValueError):
    """A value that is not a duration or quantity in the schema's notation."""


def duration_seconds(text: str) -> float:
    """'500ms' -> 0.5, '5m' -> 300.0."""
    match = _DURATION.match(text.strip()) if isinstance(text, str) else None
    if match is None:
        raise UnitError(f"not a duration: {text!r}; write e.g. '500ms', '30s', '5m' or '1h'")
    seconds = float(text.strip()[: match.start(2)]) * _UNIT_SECONDS[match.group(2)]
    if not math.isfinite(seconds):
        raise UnitError(f"duration {text[:20]!r}... is too long to count")
    return seconds


def whole_seconds(text: str, *, minimum: int = 0) -> int:
    """A duration as whole seconds, rounded up, at least minimum.

    Kubernetes counts probe and grace periods in whole seconds; rounding up keeps a
    half-second timeout from becoming zero (which would mean 'the default').
    """
    return max(minimum, math.ceil(round(duration_seconds(text), 6)))


def cpu_cores(value: str | float | int) -> float:
    """'500m' -> 0.5, '2' -> 2.0, 0.25 -> 0.25."""
    if isinstance(value, str):
        if _CPU.match(value) is None:
            raise UnitError(f"not a CPU quantity: {value!r}; write e.g. 2, 0.5 or '500m'")
        return float(value[:-1]) / 1000 if value.endswith("m") else float(value)
    if isinstance(value, bool):
        raise UnitError(f"not a CPU quantity: {value!r}; write e.g. 2, 0.5 or '500m'")
    return float(value)  # `cpu: 0.00001` is a number; str() would give '1e-05'


def memory_bytes(value: str | int) -> float:
    """'512Mi' -> 536870912.0, '1G' -> 1e9."""
    if isinstance(value, bool):
        raise UnitError(f"not a memory quantity: {value!r}; write e.g. '512Mi' or '4Gi'")
    text = str(value)
    match = _MEMORY.match(text)
    if match is None:
        raise UnitError(f"not a memory quantity: {value!r}; write e.g. '512Mi' or '4Gi'")
    suffix = match.group(2) or ""
    return float(text[: len(text) - len(suffix)]) * _MEMORY_FACTORS[suffix]
