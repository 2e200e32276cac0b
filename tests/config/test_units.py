"""One parser for durations and quantities; one definition of the dirty-tag format.

The schema's patterns are the units module's (a change to one without the other fails
here); every spelling the schema accepts parses, and to the amount Kubernetes means.
The dirty-tag suffix the tag policy writes is what deploy's release policy recognises.
"""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_sessions.config import units
from mlops_sessions.config.loader import schema
from mlops_sessions.planning import k8s_common, tags, training
from mlops_sessions.server import settings as server_settings


def test_schema_patterns_are_the_units_patterns() -> None:
    defs = schema()["$defs"]
    assert defs["duration"]["pattern"] == units.DURATION_PATTERN
    assert defs["cpu"]["pattern"] == units.CPU_PATTERN
    assert defs["memory"]["pattern"] == units.MEMORY_PATTERN


@settings(max_examples=150, deadline=None, database=None)
@given(text=st.from_regex(units.DURATION_PATTERN, fullmatch=True))
def test_every_schema_duration_parses_the_same_everywhere(text: str) -> None:
    try:
        seconds = units.duration_seconds(text)
    except units.UnitError as exc:
        # Only a number too large for a float: the one refusal past the pattern.
        assert "too long to count" in str(exc)
        return
    assert seconds >= 0
    # The planner, the trainer and the server read it through the same function.
    assert training.parse_duration(text) == seconds
    assert server_settings.parse_duration(text) == seconds
    assert k8s_common.seconds(text) == units.whole_seconds(text) == math.ceil(round(seconds, 6))


@pytest.mark.parametrize(
    ("text", "seconds"), [("500ms", 0.5), ("30s", 30), ("5m", 300), ("1.5h", 5400)]
)
def test_durations(text: str, seconds: float) -> None:
    assert units.duration_seconds(text) == seconds


@pytest.mark.parametrize(
    ("value", "cores"), [("500m", 0.5), ("2", 2.0), (0.25, 0.25), (3, 3.0), ("1.5", 1.5)]
)
def test_cpu(value: str | float, cores: float) -> None:
    assert units.cpu_cores(value) == cores


@pytest.mark.parametrize(
    ("value", "size"),
    [("512Mi", 512 * 2**20), ("1Gi", 2**30), ("1k", 1000), ("2M", 2 * 10**6), ("10", 10)],
)
def test_memory(value: str, size: float) -> None:
    assert units.memory_bytes(value) == size


@pytest.mark.parametrize("bad", ["", "5", "5 m", "1d", "-1s", "soon", "1e3s"])
def test_not_durations(bad: str) -> None:
    with pytest.raises(units.UnitError, match="not a duration"):
        units.duration_seconds(bad)


@pytest.mark.parametrize("bad", ["1K", "1KB", "1gi", "-1Mi", "1.Mi", "Mi"])
def test_not_memory(bad: str) -> None:
    with pytest.raises(units.UnitError):
        units.memory_bytes(bad)


@settings(max_examples=50, deadline=None, database=None)
@given(
    tag=st.from_regex(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,40}", fullmatch=True),
    digest=st.from_regex(r"[0-9a-f]{64}", fullmatch=True),
)
def test_dirty_tag_format_is_written_and_read_in_one_place(tag: str, digest: str) -> None:
    written = tags.dirty_tag(tag, digest)
    assert tags.is_dirty_tag(written)
    assert written.endswith(digest[: tags.DIRTY_SUFFIX_LEN])
    assert not tags.is_dirty_tag(tag + "-dirty-" + digest[: tags.DIRTY_SUFFIX_LEN - 1])
