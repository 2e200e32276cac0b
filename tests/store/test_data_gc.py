"""``mlops store gc`` cleans the cache of ``s3://`` data inputs (``.mlops/data/``).

Kept: every copy a ``data:`` entry declares, under the file as written or any profile.
Removed: copies nobody declares, temp files of downloads that are not running, empty
directories and unused lock files. An object whose lock is held (a download in progress)
is skipped whole. ``--dry-run`` removes nothing and creates nothing.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.records.io import lock_path, locked

A = hashlib.sha256(b"declared").hexdigest()
B = hashlib.sha256(b"profile").hexdigest()
C = hashlib.sha256(b"old").hexdigest()
D = hashlib.sha256(b"downloading").hexdigest()
E = hashlib.sha256(b"lock-only").hexdigest()
F = hashlib.sha256(b"empty").hexdigest()


def write_project(root: Path) -> Path:
    root.mkdir()
    (root / "m.py").write_text("def train(ctx):\n    return None\n")
    config = root / "mlops.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlops/v1alpha1",
                "project": {"name": "p"},
                "data": {"toy": {"uri": "s3://data/toy/toy.csv", "sha256": A}},
                "models": {"m": {"train": {"entrypoint": "m:train", "inputs": ["toy"]}}},
                "profiles": {
                    "prod": {"data": {"toy": {"uri": "s3://data/prod/big.csv.gz", "sha256": B}}}
                },
            },
            sort_keys=False,
        )
    )
    return config


def put(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def layout(root: Path) -> list[str]:
    base = root / ".mlops" / "data"
    return sorted(str(p.relative_to(base)) for p in base.rglob("*"))


def gc(config: Path, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    from mlops_sessions.frontends.cli import main

    capsys.readouterr()
    code = main(["store", "-c", str(config), "gc", *args])
    out, err = capsys.readouterr()
    return code, (json.loads(out) if "--json" in args else out), err


def test_gc_keeps_every_declared_copy_and_removes_the_rest(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("MLOPS_PROFILE", raising=False)
    root = tmp_path / "proj"
    config = write_project(root)
    data = root / ".mlops" / "data"
    put(data / A / "toy.csv", b"declared")  # the file as written uses it
    put(data / A / ".toy.csv.fetch-k1l2.part", b"half")  # a killed download of it
    put(data / A / "renamed.csv", b"declared")  # a name no entry gives it any more
    put(data / B / "big.csv.gz", b"profile")  # only profile 'prod' declares it
    put(data / C / "toy.csv", b"old-old")  # nobody declares it
    lock_path(data / C).touch()
    put(data / D / ".x.csv.fetch-abcd.part", b"downloading")  # its lock is held below
    lock_path(data / E).touch()  # a lock whose object was never fetched
    (data / F).mkdir()  # an empty directory left behind
    before = {p: p.read_bytes() for p in data.rglob("*") if p.is_file()}

    with locked(lock_path(data / D)):
        listing = layout(root)
        code, result, err = gc(config, capsys, "--json", "--dry-run")
        assert code == 0, err
        assert layout(root) == listing  # dry: nothing removed, no lock file created
        assert {p: p.read_bytes() for p in before} == before
        dry = result["data"]

        code, result, err = gc(config, capsys, "--json")
        assert code == 0, err
    swept = result["data"]
    assert swept == dry  # the dry run said exactly what goes

    removed = {Path(r["path"]).relative_to(data).as_posix(): r for r in swept["removed"]}
    assert removed[f"{A}/.toy.csv.fetch-k1l2.part"]["why"] == "interrupted download"
    assert removed[f"{A}/renamed.csv"]["why"] == "not declared"
    assert removed[f"{C}/toy.csv"] == {
        "path": str(data / C / "toy.csv"),
        "bytes": 7,
        "why": "not declared",
    }
    assert removed[C]["why"] == removed[F]["why"] == "empty directory"
    assert removed[f".{C}.lock"]["why"] == removed[f".{E}.lock"]["why"] == "unused lock file"
    assert swept["freed_bytes"] == 4 + 8 + 7
    assert [Path(s["path"]).name for s in swept["skipped"]] == [D]
    assert sorted(Path(k).relative_to(data).as_posix() for k in swept["kept"]) == sorted(
        [f"{A}/toy.csv", f"{B}/big.csv.gz"]
    )
    # What is left: the declared copies (any profile), the running download untouched; gc
    # leaves no lock file of its own.
    assert layout(root) == sorted(
        [
            f".{D}.lock",
            A,
            f"{A}/toy.csv",
            B,
            f"{B}/big.csv.gz",
            D,
            f"{D}/.x.csv.fetch-abcd.part",
        ]
    )

    # Once the download is no longer running, its temp file goes too.
    code, text, err = gc(config, capsys)
    assert code == 0, err
    assert "data cache: removed 1 file(s), 11 bytes freed" in text
    assert f"{D}/.x.csv.fetch-abcd.part: interrupted download (11 bytes)" in text
    assert D not in layout(root)
    assert (data / A / "toy.csv").read_bytes() == b"declared"
    assert (data / B / "big.csv.gz").read_bytes() == b"profile"


def test_gc_under_a_profile_still_keeps_what_the_file_as_written_declares(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_PROFILE", "prod")
    root = tmp_path / "proj"
    config = write_project(root)
    data = root / ".mlops" / "data"
    put(data / A / "toy.csv", b"declared")
    put(data / B / "big.csv.gz", b"profile")
    code, result, err = gc(config, capsys, "--json")
    assert code == 0, err
    assert result["data"]["removed"] == [] and len(result["data"]["kept"]) == 2
    assert (data / A / "toy.csv").is_file() and (data / B / "big.csv.gz").is_file()


def test_gc_without_a_data_cache_reports_nothing_to_clean(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_project(tmp_path / "proj")
    code, text, err = gc(config, capsys)
    assert code == 0, err
    assert "data cache: removed 0 file(s), 0 bytes freed" in text
    assert not (tmp_path / "proj" / ".mlops" / "data").exists()


def test_a_download_waiting_on_a_lock_that_gc_removes_locks_the_new_file(tmp_path: Path) -> None:
    """gc unlinks a lock file while holding it; a waiter must not end up holding the removed
    file while a third process locks a new one at the same path."""
    import threading

    from mlops_sessions.records.io import try_locked, unlink_held_lock

    lock = tmp_path / ".object.lock"
    holding, release = threading.Event(), threading.Event()

    def download() -> None:
        with locked(lock):
            holding.set()
            release.wait(10)

    with try_locked(lock) as free:
        assert free
        waiter = threading.Thread(target=download)
        waiter.start()
        assert not holding.wait(0.3)  # waiting on gc's lock
        unlink_held_lock(lock)
    assert holding.wait(10)
    with try_locked(lock) as free:
        assert not free  # the waiter holds the file at the path, not the removed one
    release.set()
    waiter.join(10)
    with try_locked(lock) as free:
        assert free
