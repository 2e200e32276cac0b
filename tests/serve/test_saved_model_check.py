"""``mlops serve`` on a broken SavedModel: ONE line naming the file, what is wrong and the fix.

A real export (``dense_model``) is damaged in each way a copied or half-written export can
be — saved_model.pb missing, empty, truncated, overwritten, a directory; the variables
index or a data shard truncated or missing; a path that is a file or does not exist — and
``python -m mlops_sessions serve --model-dir`` is run as a user runs it. It must exit 1
with exactly one line on stderr, before TensorFlow is imported (so none of its start-up
noise). Then every truncation point of saved_model.pb and of the data shard is caught by
the check itself.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from mlops_sessions.server import savedmodel
from tests.serve.conftest import write_config

DATA = "variables/variables.data-00000-of-00001"
INDEX = "variables/variables.index"


def _truncate(relative: str, keep: float) -> Callable[[Path], Path]:
    def damage(model: Path) -> Path:
        target = model / relative
        content = target.read_bytes()
        target.write_bytes(content[: int(len(content) * keep)])
        return target

    return damage


def _write(relative: str, content: bytes) -> Callable[[Path], Path]:
    def damage(model: Path) -> Path:
        (model / relative).write_bytes(content)
        return model / relative

    return damage


def _remove(relative: str) -> Callable[[Path], Path]:
    def damage(model: Path) -> Path:
        (model / relative).unlink()
        return model / relative if relative != "saved_model.pb" else model

    return damage


def _directory_for_graph(model: Path) -> Path:
    (model / "saved_model.pb").unlink()
    (model / "saved_model.pb").mkdir()
    return model / "saved_model.pb"


def _a_file(model: Path) -> Path:
    shutil.rmtree(model)
    model.write_text("not a directory")
    return model


def _nowhere(model: Path) -> Path:
    shutil.rmtree(model)
    return model


DAMAGES: dict[str, tuple[Callable[[Path], Path], str]] = {
    "graph-missing": (_remove("saved_model.pb"), "no saved_model.pb"),
    "graph-empty": (_write("saved_model.pb", b""), "is empty"),
    "graph-truncated": (_truncate("saved_model.pb", 0.6), "truncated or corrupt"),
    "graph-garbage": (_write("saved_model.pb", b"not a protobuf at all"), "truncated or corrupt"),
    "graph-no-metagraph": (_write("saved_model.pb", b"\x08\x01"), "holds no MetaGraph"),
    "graph-directory": (_directory_for_graph, "is a directory"),
    "index-truncated": (_truncate(INDEX, 0.5), "truncated or not a checkpoint index"),
    "index-missing": (_remove(INDEX), "is missing"),
    "data-truncated": (_truncate(DATA, 0.7), "is truncated"),
    "data-missing": (_remove(DATA), "is missing"),
    "model-dir-is-a-file": (_a_file, "is a file, not a SavedModel directory"),
    "model-dir-missing": (_nowhere, "does not exist"),
}


@pytest.mark.parametrize("name", list(DAMAGES))
def test_broken_export_is_one_line_before_tensorflow(
    name: str, dense_model: Path, tmp_path: Path
) -> None:
    model = tmp_path / "model"
    shutil.copytree(dense_model, model)
    damage, what = DAMAGES[name]
    culprit = damage(model)
    config = write_config(tmp_path, {"grpc_port": 0})
    result = subprocess.run(
        [sys.executable, "-m", "mlops_sessions", "serve", "-c", str(config),
         "--model-dir", str(model), "--port", "0"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 1, result.stderr
    assert len(lines) == 1, result.stderr  # nothing from TensorFlow: it was never imported
    assert str(culprit) in lines[0] and what in lines[0] and "re-export" in lines[0], lines


def test_the_intact_export_passes(dense_model: Path) -> None:
    assert savedmodel.problem(dense_model) is None


@pytest.mark.parametrize("relative", ["saved_model.pb", INDEX, DATA])
def test_every_truncation_point_is_caught(relative: str, dense_model: Path, tmp_path: Path) -> None:
    model = tmp_path / "model"
    shutil.copytree(dense_model, model)
    target = model / relative
    content = target.read_bytes()
    step = max(1, len(content) // 97)  # ~100 cut points, ending just before the last byte
    for cut in [*range(0, len(content), step), len(content) - 1]:
        target.write_bytes(content[:cut])
        found = savedmodel.problem(model)
        assert found is not None and str(target) in found, (cut, found)
    target.write_bytes(content)
    assert savedmodel.problem(model) is None
