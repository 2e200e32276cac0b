"""Class of failure: a damaged store met through the command line (issue 12 §3).

A truncated run.json or blessed.json, and a store path that is a file, each give a one-line
error naming the file and the fix — no traceback — in the steps that read them (train,
evaluate, lineage); ``mlops train`` recovers from a damaged run by training again.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.conftest import run_mlops
from tests.train.conftest import Project, make_project


def _error_line(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.startswith("mlops ")]
    assert "Traceback" not in stderr, stderr
    assert len(lines) == 1, stderr
    return lines[0]


def _trained(tmp_path: Path) -> tuple[Project, str]:
    project = make_project(tmp_path / "proj", params={"epochs": 1})
    done = run_mlops(project.root, "train", "--json")
    assert done.returncode == 0, done.stderr
    return project, json.loads(done.stdout)["runs"][0]["run_id"]


@pytest.mark.slow
def test_truncated_run_json_is_reported_and_train_recovers(tmp_path: Path) -> None:
    project, run_id = _trained(tmp_path)
    meta = project.store / "runs" / run_id / "run.json"
    meta.write_bytes(meta.read_bytes()[:100])
    for args in (("evaluate",), ("lineage", run_id)):
        done = run_mlops(project.root, *args)
        assert done.returncode == 1
        line = _error_line(done.stderr)
        assert str(meta) in line and "not valid JSON (truncated?)" in line, line
        assert "mlops train" in line
    done = run_mlops(project.root, "train", "--json")
    assert done.returncode == 0, done.stderr
    assert "training again" in done.stderr and str(meta) in done.stderr
    fresh = json.loads(done.stdout)["runs"][0]
    assert fresh["reused"] is False and fresh["run_id"] != run_id
    assert not (project.store / "runs" / run_id).exists()  # set aside, out of the way
    done = run_mlops(project.root, "evaluate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert run_mlops(project.root, "lineage", fresh["run_id"]).returncode == 0


@pytest.mark.slow
def test_truncated_blessed_json_is_reported_with_the_fix(tmp_path: Path) -> None:
    project, run_id = _trained(tmp_path)
    assert run_mlops(project.root, "evaluate").returncode == 0
    blessed = project.store / "models" / "toy" / "blessed.json"
    blessed.write_bytes(blessed.read_bytes()[:-20])
    for args in (("evaluate", "--force"), ("lineage", run_id)):
        done = run_mlops(project.root, *args)
        assert done.returncode == 1
        line = _error_line(done.stderr)
        assert str(blessed) in line and "delete" in line, line
    blessed.unlink()  # the fix the message gives
    done = run_mlops(project.root, "evaluate")
    assert done.returncode == 0, done.stdout + done.stderr
    assert json.loads(blessed.read_text())["run_id"] == run_id


def test_a_store_path_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", params={"epochs": 1})
    project.store.write_text("mine\n")
    done = run_mlops(project.root, "train")
    assert done.returncode == 1
    line = _error_line(done.stderr)
    assert str(project.store) in line and "is a file where the store expects a directory" in line
    assert project.store.read_text() == "mine\n"
