"""When the served model was trained: read from its run record's ``finished_at`` (the time
the ``MlopsModelTooOld`` alert compares with ``alerts.max_model_age``), and left out rather
than guessed when the record has none or an unreadable one."""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlops_sessions.steps.serve import _timestamp


@given(st.datetimes(min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1)))
def test_a_record_time_round_trips_to_unix_seconds(moment: datetime) -> None:
    aware = moment.replace(tzinfo=timezone.utc)
    written = aware.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    parsed = _timestamp(written)
    assert parsed is not None
    assert abs(parsed - aware.timestamp()) < 0.001


@pytest.mark.parametrize("stamp", [None, "", "yesterday", 12, "2026-13-40T00:00:00Z"])
def test_no_or_an_unreadable_time_leaves_the_metric_out(stamp: object) -> None:
    assert _timestamp(stamp) is None
