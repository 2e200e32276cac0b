"""Image and deploy records reach the shared store when they are written (real S3 API).

A pushed image's record (``builds/<image>/latest.json`` and its history) and a deploy
revision (``deployments/<model>/<context>--<namespace>/``) are what another machine's
render, deploy and rollback read. With ``store.remote`` they are shared as soon as
``mlops push`` or ``mlops deploy`` writes them, without a separate ``mlops store push``; a
remote that does not answer then leaves them safe locally and says how to share them later.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from mlops_sessions.console.shared_store import remote_for
from mlops_sessions.drivers import imaging
from mlops_sessions.drivers.history import StoreHistory
from mlops_sessions.executors.s3.store import RETRIES_ENV
from mlops_sessions.records import builds, deployments
from mlops_sessions.records.store import Store
from tests.fixtures.moto import free_port
from tests.store.conftest import Bucket

IMAGE = "registry.example.com/shop/serve@sha256:" + "ab" * 32


def _store(root: Path, bucket: Bucket) -> Store:
    return Store(root, remote_for(bucket.url, endpoint=bucket.endpoint))


def test_a_pushed_image_record_is_shared_at_once(tmp_path: Path, bucket: Bucket) -> None:
    laptop = _store(tmp_path / "laptop", bucket)
    imaging.record(laptop, "serve", "latest", {"image": IMAGE, "run_id": "r1"})
    imaging.record(laptop, "serve", "latest", {"image": IMAGE, "run_id": "r2"})
    assert bucket.json("builds/serve/latest.json")["run_id"] == "r2"
    assert len(bucket.objects("builds/serve/history.jsonl.d/")) == 2

    ci = _store(tmp_path / "ci", bucket)
    ci.pull()
    latest = builds.load_record(ci.root, "serve", "latest")
    assert latest is not None and latest["image"] == IMAGE and latest["run_id"] == "r2"
    assert [r["run_id"] for r in builds.load_history(ci.root, "serve", "latest")] == ["r1", "r2"]


def test_a_deploy_revision_is_shared_at_once(tmp_path: Path, bucket: Bucket) -> None:
    laptop = _store(tmp_path / "laptop", bucket)
    history = StoreHistory(laptop, "toy", "prod", "ml")
    history.save({"revision": 1, "image": IMAGE, "status": "deployed"}, "deploy")
    history.save({"revision": 2, "image": IMAGE, "status": "failed"}, "deploy")
    prefix = "deployments/toy/prod--ml/"
    assert bucket.json(f"{prefix}revisions/r000002.json")["status"] == "failed"
    assert len(bucket.objects(f"{prefix}events.jsonl.d/")) == 2

    ci = _store(tmp_path / "ci", bucket)
    ci.pull()
    target = deployments.target_dir(ci.root, "toy", "prod", "ml")
    assert [r["revision"] for r in deployments.revisions(target)] == [1, 2]
    assert [e["revision"] for e in deployments.events(target)] == [1, 2]


def test_a_remote_that_does_not_answer_keeps_the_record_and_says_how_to_share_it(
    tmp_path: Path,
    bucket: Bucket,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv(RETRIES_ENV, "0")
    down = Store(
        tmp_path / "laptop", remote_for(bucket.url, endpoint=f"http://127.0.0.1:{free_port()}")
    )
    imaging.record(down, "serve", "latest", {"image": IMAGE})
    StoreHistory(down, "toy", "prod", "ml").save({"revision": 1, "image": IMAGE}, "deploy")
    err = capsys.readouterr().err
    assert err.count("`mlops store push`") == 2 and "Traceback" not in err, err
    latest = json.loads(builds.record_path(down.root, "serve", "latest").read_text())
    assert latest["image"] == IMAGE
    target = deployments.target_dir(down.root, "toy", "prod", "ml")
    assert [r["revision"] for r in deployments.revisions(target)] == [1]

    # Once the remote answers, `mlops store push` shares what was kept.
    up = _store(tmp_path / "laptop", bucket)
    up.push()
    assert bucket.json("builds/serve/latest.json")["image"] == IMAGE
    assert "deployments/toy/prod--ml/revisions/r000001.json" in bucket.objects()


def test_a_newer_pointer_record_replaces_the_pulled_copy(tmp_path: Path, bucket: Bucket) -> None:
    """latest.json is rewritten by every push: a machine that pulled an older one gets the
    newer one at its next pull, and never deploys the image it replaced."""
    laptop = _store(tmp_path / "laptop", bucket)
    ci = _store(tmp_path / "ci", bucket)
    imaging.record(laptop, "serve", "latest", {"image": IMAGE, "run_id": "r1"})
    ci.pull()
    old_copy = builds.record_path(ci.root, "serve", "latest")
    os.utime(old_copy, (time.time() - 60, time.time() - 60))  # pulled a minute ago
    newer = IMAGE.replace("ab" * 32, "cd" * 32)
    imaging.record(laptop, "serve", "latest", {"image": newer, "run_id": "r2"})
    ci.pull()
    latest = builds.load_record(ci.root, "serve", "latest")
    assert latest is not None and latest["image"] == newer

    # A record written here after the remote's copy (kept while the remote was down) stays.
    imaging.record(Store(ci.root), "serve", "latest", {"image": IMAGE, "run_id": "r3"})
    ci.pull()
    kept = builds.load_record(ci.root, "serve", "latest")
    assert kept is not None and kept["run_id"] == "r3"
