"""Class of failure: a damaged cache entry (issue 21). It must never block the pipeline.

A cache entry only saves work, unlike a record (tests/robustness/test_damaged_records.py).
Every cache kind — the train cache, the evaluation reuse, the test-pass cache, the file hash
memo, the nox install stamp and the schema verdict — is damaged in every way a file can be
(empty, truncated, not JSON, JSON of the wrong shape, a directory where the file belongs)
and read through the product's own reader. The property, for each pair: one warning line
naming the file, a miss, and the step's rewrite succeeds and is a hit again. End to end,
``mlops train --dry-run`` and ``mlops validate`` carry on over damaged entries.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions.cachefile import marker_present
from mlops_sessions.config import loader
from mlops_sessions.frontends.cli import main
from mlops_sessions.frontends.noxplugin import STAMP, read_stamp
from mlops_sessions.hashing import FileHashCache
from mlops_sessions.records import evaluations, runs
from mlops_sessions.records.io import stamped, write_json_atomic
from mlops_sessions.records.store import Store
from mlops_sessions.steps.test_cmd import _recorded_pass

KEY = "ab" * 32
RUN = f"20260101T000000Z-0a0b0c-{KEY[:8]}"
EVAL = "20260101T000001Z-0d0e0f"
WARNING = "warning: ignoring the damaged"


@dataclass(frozen=True)
class Kind:
    """One cache: where its entry is, how the step writes it and how the step reads it."""

    name: str
    path: Callable[[Path], Path]
    write: Callable[[Path], None]  # what the step writes after a miss
    read: Callable[[Path], Any]  # the product's reader: None is a miss


def _store(root: Path) -> Path:
    return root / ".mlops"


def _write_train(root: Path) -> None:
    store = Store(_store(root))
    with store.staging(store.run_dir(RUN)) as stage:
        write_json_atomic(stage / "run.json", {"run_id": RUN, "model": "m", "key": KEY})
    store.record_cache("train", KEY, RUN, model="m")


def _write_evaluation(root: Path) -> None:
    store = _store(root)
    directory = evaluations.eval_dir(store, RUN) / EVAL
    write_json_atomic(directory / "verdict.json", {"passed": True})
    write_json_atomic(directory / "metrics.json", {"values": {"accuracy": 0.9}})
    evaluations.record_evaluation(store, KEY, "m", RUN, EVAL, {"model_hash": "x"})


def _write_test_pass(root: Path) -> None:
    entry = runs.cache_entry(_store(root), "test", KEY)
    write_json_atomic(entry, stamped({"passed": True, "key": KEY, "counts": {"tests": 1}}))


def _memo(root: Path) -> FileHashCache:
    return FileHashCache(runs.file_hash_table(_store(root)))


def _write_memo(root: Path) -> None:
    data = root / "data.bin"
    data.write_bytes(b"input data")
    memo = _memo(root)
    memo.file(data)
    memo.save()


def _write_stamp(root: Path) -> None:
    (root / "venv" / STAMP).parent.mkdir(exist_ok=True)
    (root / "venv" / STAMP).write_text("0f" * 32)


KINDS = [
    Kind(
        "train",
        lambda root: runs.cache_entry(_store(root), "train", KEY),
        _write_train,
        lambda root: Store(_store(root)).cached_run("train", KEY),
    ),
    Kind(
        "evaluate",
        lambda root: runs.cache_entry(_store(root), evaluations.STEP, KEY),
        _write_evaluation,
        lambda root: evaluations.cached_evaluation(_store(root), KEY),
    ),
    Kind(
        "test-pass",
        lambda root: runs.cache_entry(_store(root), "test", KEY),
        _write_test_pass,
        lambda root: _recorded_pass(runs.cache_entry(_store(root), "test", KEY)),
    ),
    Kind(
        "file-hash-memo",
        lambda root: runs.file_hash_table(_store(root)),
        _write_memo,
        lambda root: _memo(root).entries or None,
    ),
    Kind(
        "nox-install-stamp",
        lambda root: root / "venv" / STAMP,
        _write_stamp,
        lambda root: read_stamp(root / "venv" / STAMP),
    ),
]


def _damage(path: Path, how: str) -> None:
    good = path.read_bytes()
    if how == "empty":
        path.write_bytes(b"")
    elif how == "truncated":
        path.write_bytes(good[: len(good) // 2])
    elif how == "not-json":
        path.write_bytes(b"\x00\xff{]garbage")
    elif how == "json-list":
        path.write_text("[1, 2, 3]")
    elif how == "json-wrong-fields":
        path.write_text(json.dumps({"schema": 1, "unexpected": {"run_id": 7}}))
    elif how == "directory":
        path.unlink()
        path.mkdir()
        (path / "stray").write_text("x")
    else:
        raise AssertionError(how)


DAMAGES = ["empty", "truncated", "not-json", "json-list", "json-wrong-fields", "directory"]


def _warnings(err: str) -> list[str]:
    return [line for line in err.splitlines() if line.startswith(WARNING)]


@pytest.mark.parametrize("how", DAMAGES)
@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_a_damaged_cache_entry_is_a_warned_miss_and_is_rewritten(
    kind: Kind, how: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    kind.write(tmp_path)
    path = kind.path(tmp_path)
    assert kind.read(tmp_path) is not None, "the good entry must be a hit"
    capsys.readouterr()

    _damage(path, how)
    assert kind.read(tmp_path) is None  # a miss, not an exception
    warned = _warnings(capsys.readouterr().err)
    assert len(warned) == 1 and str(path) in warned[0], warned

    assert kind.read(tmp_path) is None  # still a miss, and not warned twice
    assert _warnings(capsys.readouterr().err) == []
    kind.write(tmp_path)  # the step's write is not blocked by what was there
    assert kind.read(tmp_path) is not None


def test_every_cache_of_the_store_is_covered(tmp_path: Path) -> None:
    """A new cache under .mlops/cache/ needs a Kind here (the schema verdict lives outside)."""
    for kind in KINDS:
        kind.write(tmp_path)
    caches = {p.name for p in (_store(tmp_path) / "cache").iterdir()}
    assert caches == {"train", evaluations.STEP, "test", "filehash.json"}, caches


CONFIG = """\
apiVersion: mlops/v1alpha1
project: {name: caches}
models:
  tiny:
    train: {source: src, entrypoint: "m:train"}
"""


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text("def train(ctx):\n    pass\n")
    (tmp_path / "mlops.yaml").write_text(CONFIG)
    monkeypatch.setenv(loader.CACHE_ENV, str(tmp_path / "user-cache"))
    monkeypatch.delenv(loader.NO_CACHE_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _dry_run(project: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, Any], str]:
    code = main(["train", "-c", str(project / "mlops.yaml"), "--dry-run", "--json"])
    out, err = capsys.readouterr()
    return code, json.loads(out) if code == 0 else {}, err


@pytest.mark.parametrize("how", DAMAGES)
def test_train_dry_run_carries_on_over_a_damaged_train_cache_and_memo(
    project: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, plan, _ = _dry_run(project, capsys)
    assert code == 0
    key = plan["plans"][0]["key"]
    store = project / ".mlops"
    entry = runs.cache_entry(store, "train", key)
    write_json_atomic(entry, stamped({"run_id": RUN, "key": key}))  # names a run: it is "good"
    memo = runs.file_hash_table(store)
    for path in (entry, memo):
        _damage(path, how)

    code, plan, err = _dry_run(project, capsys)
    assert code == 0, err
    assert plan["plans"][0]["cached"] is False and plan["plans"][0]["key"] == key
    warned = _warnings(err)
    assert any(str(entry) in line for line in warned), err
    assert any(str(memo) in line for line in warned), err


@pytest.mark.parametrize("how", ["not-empty", "directory"])
def test_validate_carries_on_over_a_damaged_schema_verdict(
    project: Path, how: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["validate", "-c", str(project / "mlops.yaml")]) == 0
    (marker,) = (project / "user-cache" / "schema-valid").iterdir()
    assert marker_present(marker, what="schema verdict")
    if how == "directory":
        marker.unlink()
        marker.mkdir()
    else:
        marker.write_text("garbage")
    capsys.readouterr()

    assert main(["validate", "-c", str(project / "mlops.yaml")]) == 0
    warned = _warnings(capsys.readouterr().err)
    assert len(warned) == 1 and str(marker) in warned[0], warned
    # Validated afresh and remembered again: an empty marker file.
    assert marker.is_file() and marker.stat().st_size == 0
