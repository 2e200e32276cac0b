"""Class of failure: two writers racing in one store (issue 12 §3).

Two ``mlops train --force`` of the same model started together in one checkout must keep
two runs: distinct run ids (not one-second stamps), neither deleting the other's directory,
and a cache pointer that names one of them, complete. Two blessings of one model at once
leave a log and a pointer that agree.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from mlops_sessions.records import blessings
from mlops_sessions.records.io import read_log
from tests.conftest import clean_env
from tests.train.conftest import make_project


@pytest.mark.slow
def test_two_forced_trainings_keep_two_runs(tmp_path: Path) -> None:
    project = make_project(tmp_path / "proj", params={"epochs": 1})
    command = [sys.executable, "-m", "mlops_sessions", "train", "-c", str(project.config)]
    command += ["--force", "--json"]
    procs = [
        subprocess.Popen(
            command,
            cwd=project.root,
            env=clean_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    ids = [json.loads(out)["runs"][0]["run_id"] for out, _ in outputs]
    assert ids[0] != ids[1]
    runs = {r["run_id"]: r for r in project.runs()}
    assert set(runs) == set(ids)
    for run_id in ids:
        assert (project.store / "runs" / run_id / "model" / "saved_model.pb").is_file()
    (entry,) = (project.store / "cache" / "train").glob("*.json")
    assert json.loads(entry.read_text())["run_id"] in ids
    assert project.tmp_entries() == []


def test_concurrent_blessings_agree(tmp_path: Path) -> None:
    def bless_many(worker: int) -> None:
        for n in range(50):
            blessings.bless(tmp_path, "m", {"run_id": f"{worker}-{n}"})

    threads = [threading.Thread(target=bless_many, args=(w,)) for w in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    log = read_log(blessings.log_file(tmp_path, "m"))
    assert len(log) == 200 and len({r["run_id"] for r in log}) == 200
    assert blessings.blessed(tmp_path, "m") == log[-1]
