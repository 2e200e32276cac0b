"""The ``.mlops/`` artifact store: one documented layout, every write atomic.

Layout (see docs/store.md)::

    .mlops/
      runs/<run-id>/           one training run; the directory appears only when complete
        run.json               key, params, seed, inputs, lineage, history, status
        model/                 the exported SavedModel
        eval/<eval-id>/        verdict.json, metrics.json, report.md, report.html
      cache/train/<key>.json   cache key -> run id (written after the run is complete)
      models/<model>/blessed.json        the current blessed run of a model
      models/<model>/blessings.jsonl     every blessing, newest last
      builds/  deployments/    image builds and deploy records (later steps)
      tmp/                     staging area; anything here is incomplete by definition

A step writes into ``tmp/`` and renames into place, so an interrupted step never leaves a
half-written artifact in a place a later step trusts.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

LAYOUT_VERSION = 1


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to path via a temp file in the same directory and an atomic rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(data, handle, indent=2, sort_keys=True, default=str)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any:
    with open(path, encoding="utf-8") as handle:
        return json.load(handle)


def read_json_lines(path: Path) -> list[dict[str, Any]]:
    """Records of an append-only .jsonl history; a line that is not JSON (a writer killed
    mid-line) is skipped. A missing file is an empty history."""
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            continue
    return out


class Store:
    """Paths and atomic operations on one project's artifact store."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # --- layout -------------------------------------------------------------------
    @property
    def runs(self) -> Path:
        return self.root / "runs"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def run_dir(self, run_id: str) -> Path:
        return self.runs / run_id

    def cache_entry(self, step: str, key: str) -> Path:
        return self.root / "cache" / step / f"{key}.json"

    def model_dir(self, model: str) -> Path:
        return self.root / "models" / model

    def builds(self) -> Path:
        return self.root / "builds"

    def deployments(self) -> Path:
        return self.root / "deployments"

    # --- staging ------------------------------------------------------------------
    @contextlib.contextmanager
    def staging(self, final: Path) -> Iterator[Path]:
        """Yield an empty directory; on success it is renamed to final, on error removed.

        The rename is atomic on one filesystem (tmp/ lives inside the store for that reason).
        """
        self.tmp.mkdir(parents=True, exist_ok=True)
        self._ensure_marker()
        stage = self.tmp / f"{final.name}.{uuid.uuid4().hex[:8]}"
        stage.mkdir()
        try:
            yield stage
            final.parent.mkdir(parents=True, exist_ok=True)
            if final.exists():
                shutil.rmtree(final)
            os.replace(stage, final)
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)

    def _ensure_marker(self) -> None:
        marker = self.root / "store.json"
        if not marker.exists():
            write_json_atomic(marker, {"layout": LAYOUT_VERSION})
        gitignore = self.root / ".gitignore"
        if not gitignore.exists():
            write_text_atomic(
                gitignore, "# mlops-sessions artifact store; not for version control\n*\n"
            )

    def clean_tmp(self) -> int:
        """Remove leftovers of interrupted steps; returns how many were removed."""
        if not self.tmp.exists():
            return 0
        count = 0
        for child in self.tmp.iterdir():
            shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(
                missing_ok=True
            )
            count += 1
        return count

    # --- runs -------------------------------------------------------------------------
    def list_runs(self) -> list[dict[str, Any]]:
        """Every complete run's run.json, oldest first."""
        if not self.runs.exists():
            return []
        out = []
        for child in sorted(self.runs.iterdir()):
            meta = child / "run.json"
            if meta.is_file():
                try:
                    out.append(read_json(meta))
                except (OSError, json.JSONDecodeError):
                    continue
        out.sort(key=lambda r: (r.get("finished_at", ""), r.get("run_id", "")))
        return out

    def load_run(self, run_id: str) -> dict[str, Any] | None:
        meta = self.run_dir(run_id) / "run.json"
        if not meta.is_file():
            return None
        data: dict[str, Any] = read_json(meta)
        return data

    # --- cache --------------------------------------------------------------------
    def cached_run(self, step: str, key: str) -> dict[str, Any] | None:
        """The run recorded for key, only if the run itself is complete and present."""
        entry = self.cache_entry(step, key)
        if not entry.is_file():
            return None
        try:
            run_id = read_json(entry)["run_id"]
        except (OSError, json.JSONDecodeError, KeyError):
            return None
        return self.load_run(run_id)

    def record_cache(self, step: str, key: str, run_id: str) -> None:
        write_json_atomic(self.cache_entry(step, key), {"run_id": run_id, "key": key})

    # --- blessing -----------------------------------------------------------------
    def blessed(self, model: str) -> dict[str, Any] | None:
        path = self.model_dir(model) / "blessed.json"
        if not path.is_file():
            return None
        data: dict[str, Any] = read_json(path)
        return data

    def bless(self, model: str, record: dict[str, Any]) -> None:
        directory = self.model_dir(model)
        directory.mkdir(parents=True, exist_ok=True)
        with open(directory / "blessings.jsonl", "a", encoding="utf-8") as log:
            log.write(json.dumps(record, sort_keys=True) + "\n")
        write_json_atomic(directory / "blessed.json", record)

    def blessings(self, model: str) -> list[dict[str, Any]]:
        path = self.model_dir(model) / "blessings.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
