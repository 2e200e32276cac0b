"""records.rollouts: where a rollout's state, events and report live, and the ConfigMap
encoding (a value edited by hand on the cluster is ignored, not a traceback)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mlops_sessions.records import keys, rollouts
from mlops_sessions.records.io import RecordError


def test_state_events_and_report_are_kept_per_target_and_revision(tmp_path: Path) -> None:
    target = rollouts.target_dir(tmp_path, "digits", "prod/ctx", "ml")
    assert target == tmp_path / "rollouts" / "digits" / "prod_ctx--ml"
    rollouts.save_state(target, {"revision": 3, "phase": "progressing", "step": 0}, "begin")
    rollouts.save_state(target, {"revision": 3, "phase": "aborted", "step": 1}, "aborted")
    rollouts.save_report(target, 3, "## ❌ digits: rollout ABORTED\n")
    state = rollouts.load_state(target, 3)
    assert state is not None and state["phase"] == "aborted" and state["schema"] == 1
    assert [e["event"] for e in rollouts.events(target, 3)] == ["begin", "aborted"]
    assert rollouts.report_file(target, 3).read_text().startswith("## ❌")
    assert rollouts.revisions(target) == [3]
    assert rollouts.load_state(target, 4) is None


def test_a_damaged_state_file_names_itself_and_the_fix(tmp_path: Path) -> None:
    target = rollouts.target_dir(tmp_path, "digits", "c", "ml")
    path = rollouts.state_file(target, 1)
    path.parent.mkdir(parents=True)
    path.write_text('{"revision": 1, "pha')
    with pytest.raises(RecordError, match=r"state\.json.*mlops status"):
        rollouts.load_state(target, 1)


def test_configmap_values_round_trip_and_hand_edits_are_ignored() -> None:
    text = rollouts.encode({"revision": 2, "phase": "promoting"})
    assert json.loads(text) == {"schema": 1, "revision": 2, "phase": "promoting"}
    assert rollouts.decode(text) == {"schema": 1, "revision": 2, "phase": "promoting"}
    for edited in ("", None, "not json", "[1, 2]"):
        assert rollouts.decode(edited) is None
    request = rollouts.request("abort", "mlops abort (alice)", 2)
    assert request["action"] == "abort" and request["revision"] == 2
    with pytest.raises(ValueError, match="unknown rollout request"):
        rollouts.request("pause", "x", 2)
    assert keys.rollout_configmap("digits") == "digits-mlops-rollout"
