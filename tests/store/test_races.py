"""Concurrency and damage on the shared store, with real processes and a real S3 API.

- two processes bless at once from two machines: exactly one pointer write wins, the loser
  is told who won (BlessConflict: the step then judges again), both runs and evaluations
  stay on the remote, and the pointer names a model that downloads complete and checked;
- a process killed between uploading a model and publishing its run leaves nothing a
  reader trusts, and a later push completes it;
- an archive damaged on the remote is refused by its sha256, and nothing is installed.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions.console.shared_store import remote_for
from mlops_sessions.records.io import write_json_atomic
from mlops_sessions.records.remote import RemoteError
from mlops_sessions.records.store import Store

REPO = Path(__file__).resolve().parents[2]


def place_run(root: Path, run_id: str, *, key: str = "k" * 64, size: int = 256 * 1024) -> None:
    """A complete run (with one evaluation) in a local store, in the documented format."""
    run_dir = root / "runs" / run_id
    model = run_dir / "model"
    (model / "variables").mkdir(parents=True)
    (model / "saved_model.pb").write_bytes(os.urandom(size))
    (model / "variables" / "variables.index").write_bytes(run_id.encode())
    write_json_atomic(
        run_dir / "run.json",
        {
            "run_id": run_id,
            "model": "toy",
            "key": key,
            "status": "complete",
            "finished_at": "2026-01-01T00:00:00.000Z",
            "model_dir": "model",
            "model_hash": hashlib.sha256(run_id.encode()).hexdigest(),
        },
    )
    evaluation = run_dir / "eval" / "e1"
    write_json_atomic(evaluation / "metrics.json", {"values": {"accuracy": 0.9}})
    write_json_atomic(evaluation / "verdict.json", {"passed": True, "created_at": "x"})


BLESS = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    from mlops_sessions.console.shared_store import remote_for
    from mlops_sessions.records.remote import BlessConflict
    from mlops_sessions.records.store import Store

    root, url, endpoint, run_id, start = sys.argv[1:]
    store = Store(Path(root), remote_for(url, endpoint=endpoint))
    while time.time() < float(start):
        time.sleep(0.001)
    record = {"model": "toy", "run_id": run_id, "eval_id": "e1", "blessed_at": str(start)}
    try:
        store.bless("toy", record, expected_run=None)
        print(json.dumps({"won": True}))
    except BlessConflict as conflict:
        print(json.dumps({"won": False, "current": conflict.current["run_id"]}))
    """
)


def _python(*args: str, **kwargs: Any) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env
    )


def test_two_processes_blessing_at_once(tmp_path: Path, bucket: Any) -> None:
    runs = {"one": "20260101T000000Z-aaaaaa-11111111", "two": "20260101T000000Z-bbbbbb-22222222"}
    start = time.time() + 2.0  # both wait for the same instant, then race
    procs = []
    for machine, run_id in runs.items():
        place_run(tmp_path / machine, run_id)
        args = [str(tmp_path / machine), bucket.url, bucket.endpoint, run_id, str(start)]
        procs.append(_python("-c", BLESS, *args))
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
        results.append(json.loads(out))
    winners = [r for r, result in zip(runs.values(), results, strict=True) if result["won"]]
    assert len(winners) == 1, results
    (loser,) = [result for result in results if not result["won"]]
    assert loser["current"] == winners[0], "the loser learns who blessed instead"
    # Both runs and both evaluations are kept; only the winner's blessing was logged.
    keys = bucket.objects()
    for run_id in runs.values():
        assert f"runs/{run_id}/run.json" in keys
        assert f"runs/{run_id}/eval/e1/verdict.json" in keys
    assert [bucket.json(k)["run_id"] for k in bucket.objects("models/toy/blessings/")] == winners
    # The pointer names a model that is complete: it downloads and passes its sha256.
    reader = Store(tmp_path / "reader", remote_for(bucket.url, endpoint=bucket.endpoint))
    pointer = reader.blessed("toy")
    assert pointer is not None and pointer["run_id"] == winners[0]
    run = reader.load_run(winners[0])
    assert run is not None
    model = reader.ensure_model(run)
    machine = "one" if winners[0] == runs["one"] else "two"
    original = tmp_path / machine / "runs" / winners[0] / "model" / "saved_model.pb"
    assert (model / "saved_model.pb").read_bytes() == original.read_bytes()


KILLED_PUSH = textwrap.dedent(
    """
    import os, sys
    from pathlib import Path
    from mlops_sessions.console.shared_store import SharedRemote
    from mlops_sessions.executors.s3.store import S3ObjectStore
    from mlops_sessions.records.store import Store

    class DiesBeforePublishing(S3ObjectStore):
        def put(self, key, data, **kwargs):
            if key.endswith("/run.json"):
                os._exit(9)  # killed: the model is uploaded, the run is not published
            return super().put(key, data, **kwargs)

    root, url, endpoint, run_id, key = sys.argv[1:]
    store = Store(Path(root), SharedRemote(DiesBeforePublishing(url, endpoint=endpoint)))
    store.record_cache("train", key, run_id, model="toy")
    """
)


def test_an_upload_killed_half_way_leaves_nothing_trusted(tmp_path: Path, bucket: Any) -> None:
    run_id, key = "20260101T000000Z-cccccc-33333333", "3" * 64
    place_run(tmp_path / "laptop", run_id, key=key)
    args = [str(tmp_path / "laptop"), bucket.url, bucket.endpoint, run_id, key]
    proc = _python("-c", KILLED_PUSH, *args)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 9, err
    assert f"runs/{run_id}/model.tar.gz" in bucket.objects(), "it died after the upload"

    ci = Store(tmp_path / "ci", remote_for(bucket.url, endpoint=bucket.endpoint))
    assert ci.cached_run("train", key) is None, "no published run: CI trains"
    assert ci.sync is not None and ci.sync.remote_run_ids() == []
    assert not (tmp_path / "ci" / "runs").exists()

    # A later push from the laptop completes what the killed one started.
    laptop = Store(tmp_path / "laptop", remote_for(bucket.url, endpoint=bucket.endpoint))
    assert laptop.push()["runs"] == 1
    run = ci.cached_run("train", key)
    assert run is not None and run["run_id"] == run_id
    assert (ci.ensure_model(run) / "saved_model.pb").is_file()


def test_a_damaged_archive_is_refused_by_its_sha256(tmp_path: Path, bucket: Any) -> None:
    run_id = "20260101T000000Z-dddddd-44444444"
    place_run(tmp_path / "laptop", run_id)
    Store(tmp_path / "laptop", remote_for(bucket.url, endpoint=bucket.endpoint)).push()
    key = f"team/digits/runs/{run_id}/model.tar.gz"
    whole = bucket.client.get_object(Bucket=bucket.name, Key=key)["Body"].read()
    # What a writer that died mid-stream on a store without atomic PUTs would leave.
    bucket.client.put_object(Bucket=bucket.name, Key=key, Body=whole[: len(whole) // 2])

    ci = Store(tmp_path / "ci", remote_for(bucket.url, endpoint=bucket.endpoint))
    run = ci.load_run(run_id)
    assert run is not None
    with pytest.raises(RemoteError, match="does not match its sha256"):
        ci.ensure_model(run)
    assert not (tmp_path / "ci" / "runs" / run_id / "model").exists()
    assert list((tmp_path / "ci" / "tmp").iterdir()) == []


def test_an_object_whose_bytes_do_not_match_its_checksum_is_refused(bucket: Any) -> None:
    remote = remote_for(bucket.url, endpoint=bucket.endpoint)
    remote.put("models/toy/blessed.json", b'{"run_id": "a"}')
    bucket.client.put_object(
        Bucket=bucket.name,
        Key="team/digits/models/toy/blessed.json",
        Body=b'{"run_id": "b"}',
        Metadata={"sha256": hashlib.sha256(b'{"run_id": "a"}').hexdigest()},
    )
    with pytest.raises(RemoteError, match="does not match the sha256"):
        remote.get("models/toy/blessed.json")
