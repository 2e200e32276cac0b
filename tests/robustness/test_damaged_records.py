"""Class of failure: a damaged record file in ``.mlops/`` (issue 12 §3).

Every kind of record the store writes — run.json, the train/evaluate/test cache entries,
blessed.json and blessings.jsonl, builds' build/scan/latest.json and their histories, deploy
revisions and events.jsonl, an evaluation's verdict.json and metrics.json — is truncated or
corrupted at arbitrary byte offsets (hypothesis chooses file, offset and damage), and every
reader of the records package is called. The property: a reader returns, skips a torn last
line of a log, or raises the tool's own ``RecordError`` naming the file; no other exception.
(Cache entries are read as a warned miss: tests/robustness/test_damaged_caches.py.)
Also: a store path that is a file, and a directory where a record file belongs.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_sessions.errors import MlopsError
from mlops_sessions.records import blessings, builds, deployments, evaluations, runs
from mlops_sessions.records.io import RecordError, read_log, write_json_atomic
from mlops_sessions.records.store import Store

KEY = "ab" * 32
RUN = f"20260101T000000Z-0a0b0c-{KEY[:8]}"
EVAL = "20260101T000001Z-0d0e0f"


def populate(root: Path) -> list[Path]:
    """A store holding two records of every kind, written by the records package."""
    store = Store(root)
    with store.staging(store.run_dir(RUN)) as stage:
        write_json_atomic(stage / "run.json", {"run_id": RUN, "model": "m", "key": KEY})
    store.record_cache("train", KEY, RUN, model="m")
    evaluation = evaluations.eval_dir(root, RUN) / EVAL
    write_json_atomic(evaluation / "verdict.json", {"passed": True, "notes": ["a"]})
    write_json_atomic(evaluation / "metrics.json", {"values": {"accuracy": 0.9}})
    evaluations.record_evaluation(root, "cd" * 32, "m", RUN, EVAL, {"model_hash": "x"})
    runs.write_cache(root, "test", "ef" * 32, {"passed": True})
    for n in range(2):
        store.bless("m", {"run_id": RUN, "model_hash": f"h{n}", "eval_id": EVAL})
        for kind in builds.KINDS:
            builds.record(root, "serve", kind, {"image": f"reg/x@sha256:{n}", "run_id": RUN})
        target = deployments.target_dir(root, "m", "ctx", "ns")
        deployments.save_revision(target, {"revision": n + 1, "status": "ok"}, "applied")
    return sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))


def readers(root: Path) -> list[Callable[[], Any]]:
    """Every read the package offers over that store."""
    store = Store(root)
    target = deployments.target_dir(root, "m", "ctx", "ns")
    return [
        lambda: runs.load_run(root, RUN),
        lambda: runs.list_runs(root),
        lambda: runs.cached_run_id(root, "train", KEY),
        lambda: runs.read_cache(root, "test", "ef" * 32, fields=("key",)),
        lambda: store.cached_run("train", KEY),
        lambda: blessings.blessed(root, "m"),
        lambda: blessings.blessings(root, "m"),
        *(lambda kind=kind: builds.load_record(root, "serve", kind) for kind in builds.KINDS),
        *(lambda kind=kind: builds.load_history(root, "serve", kind) for kind in builds.KINDS),
        lambda: builds.images(root),
        lambda: deployments.revisions(target),
        lambda: deployments.events(target),
        lambda: deployments.revisions_of_model(root, "m"),
        lambda: evaluations.evaluations(root, RUN),
        lambda: evaluations.load_evaluation(root, RUN, EVAL),
        lambda: evaluations.cached_evaluation(root, "cd" * 32),
    ]


@pytest.fixture(scope="module")
def pristine(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Path]]:
    root = tmp_path_factory.mktemp("pristine") / ".mlops"
    return root, populate(root)


def test_every_record_kind_is_covered(pristine: tuple[Path, list[Path]]) -> None:
    names = {p.name for p in pristine[1]}
    expected = {"run.json", "blessed.json", "blessings.jsonl", "build.json", "scan.json"}
    expected |= {"latest.json", "history.jsonl", "build-history.jsonl", "scan-history.jsonl"}
    expected |= {"r000001.json", "events.jsonl", "verdict.json", "metrics.json", "store.json"}
    assert expected <= names
    assert any(p.parent.name == "train" for p in pristine[1])
    assert any(p.parent.name == "evaluate" for p in pristine[1])


DAMAGE = st.sampled_from(["truncate", "flip", "garbage", "empty"])


@settings(
    max_examples=120,  # fast tier: under a second even on a busy machine; the space is small
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(
    choice=st.integers(min_value=0),
    offset=st.integers(min_value=0),
    damage=DAMAGE,
    byte=st.integers(min_value=0, max_value=255),
)
def test_damaged_record_is_read_or_refused_cleanly(
    pristine: tuple[Path, list[Path]],
    tmp_path: Path,
    choice: int,
    offset: int,
    damage: str,
    byte: int,
) -> None:
    source, files = pristine
    root = tmp_path / f"case-{choice}-{offset}-{damage}-{byte}" / ".mlops"
    shutil.copytree(source, root)
    victim = root / files[choice % len(files)].relative_to(source)
    content = victim.read_bytes()
    at = offset % (len(content) + 1)
    if damage == "truncate":
        victim.write_bytes(content[:at])
    elif damage == "flip":
        at = min(at, len(content) - 1)
        victim.write_bytes(content[:at] + bytes([byte]) + content[at + 1 :])
    elif damage == "garbage":
        victim.write_bytes(content[:at] + b"\x00{]" + bytes([byte]) + content[at:])
    else:
        victim.write_bytes(b"")
    for read in readers(root):
        try:
            read()
        except RecordError as exc:
            text = str(exc)
            assert "\n" not in text and str(root) in text, text
        # Anything else (JSONDecodeError, KeyError, AttributeError ...) fails the test.
    if victim.suffix == ".jsonl" and damage == "truncate":
        # A log cut anywhere is a log with a torn last line: it reads, as a prefix.
        assert read_log(victim) == read_log(files[choice % len(files)])[: len(read_log(victim))]


def test_torn_last_line_is_skipped_and_a_bad_middle_line_raises(tmp_path: Path) -> None:
    log = tmp_path / "models" / "m" / "blessings.jsonl"
    for n in range(3):
        blessings.bless(tmp_path, "m", {"run_id": str(n)})
    whole = log.read_bytes()
    log.write_bytes(whole[:-7])
    assert [r["run_id"] for r in read_log(log)] == ["0", "1"]
    # The next append cuts the torn tail off first: the log stays readable.
    blessings.bless(tmp_path, "m", {"run_id": "3"})
    assert [r["run_id"] for r in read_log(log)] == ["0", "1", "3"]
    assert blessings.blessed(tmp_path, "m")["run_id"] == "3"  # type: ignore[index]
    lines = log.read_bytes().split(b"\n")
    lines[1] = b'{"run_id": '
    log.write_bytes(b"\n".join(lines))
    with pytest.raises(RecordError, match=r"blessings.jsonl: line 2 is not a JSON record"):
        read_log(log)


def test_truncated_record_names_the_file_and_the_fix(tmp_path: Path) -> None:
    store = Store(tmp_path / ".mlops")
    store.bless("m", {"run_id": "r"})
    path = store.model_dir("m") / "blessed.json"
    path.write_text(path.read_text()[:9])
    with pytest.raises(RecordError) as caught:
        store.blessed("m")
    assert str(path) in str(caught.value) and "not valid JSON (truncated?)" in str(caught.value)
    assert "delete" in str(caught.value) and isinstance(caught.value, MlopsError)


def test_a_store_that_is_a_file_is_one_clear_error(tmp_path: Path) -> None:
    root = tmp_path / ".mlops"
    root.write_text("not a directory")
    store = Store(root)
    with pytest.raises(RecordError, match="is a file where the store expects a directory"):
        store.bless("m", {"run_id": "r"})
    with pytest.raises(RecordError, match=re.escape(str(root))):
        store.blessed("m")
    with pytest.raises(RecordError, match=re.escape(str(root))), store.staging(store.run_dir("r")):
        pass
    assert root.read_text() == "not a directory"


def test_a_directory_where_a_record_belongs_is_one_clear_error(tmp_path: Path) -> None:
    store = Store(tmp_path / ".mlops")
    (store.model_dir("m") / "blessed.json").mkdir(parents=True)
    with pytest.raises(RecordError, match="is a directory where the store expects"):
        store.blessed("m")
    with pytest.raises(RecordError, match="is a directory where the store expects"):
        store.bless("m", {"run_id": "r"})
    # Nothing half-written beside it: the log line was not appended either.
    assert not (store.model_dir("m") / "blessings.jsonl").exists()
