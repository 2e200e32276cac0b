"""Importing the team's code: clear StepErrors for every way an import path can be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from mlops_sessions.errors import StepError
from mlops_sessions.executors.tf.usercode import call_user, load_callable


def _module(directory: Path, name: str, text: str) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.py").write_text(text)
    return directory


def test_loads_function_from_source(tmp_path: Path) -> None:
    source = _module(tmp_path / "a", "uc_plain", "def train(ctx):\n    return ctx * 2\n")
    func = load_callable("uc_plain:train", source)
    assert func(21) == 42


def test_same_module_name_in_two_sources_gives_each_its_own(tmp_path: Path) -> None:
    first = _module(tmp_path / "one", "uc_shared", "def which(ctx):\n    return 'one'\n")
    second = _module(tmp_path / "two", "uc_shared", "def which(ctx):\n    return 'two'\n")
    assert load_callable("uc_shared:which", first)(None) == "one"
    assert load_callable("uc_shared:which", second)(None) == "two"
    assert load_callable("uc_shared:which", first)(None) == "one"


def test_edited_module_is_reimported(tmp_path: Path) -> None:
    source = _module(tmp_path, "uc_edit", "def value(ctx):\n    return 1\n")
    assert load_callable("uc_edit:value", source)(None) == 1
    path = source / "uc_edit.py"
    path.write_text("def value(ctx):\n    return 2\n")
    stat = path.stat()
    import os

    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert load_callable("uc_edit:value", source)(None) == 2


@pytest.mark.parametrize(
    ("path", "text", "message"),
    [
        (
            "uc_missing_mod:train",
            None,
            r"cannot import module 'uc_missing_mod' from .*check the module name",
        ),
        (
            "uc_attr:trian",
            "def train(ctx):\n    pass\n",
            r"has no attribute 'trian'; callables it defines: train",
        ),
        (
            "uc_boom:train",
            "raise RuntimeError('no GPU here')\n",
            r"importing 'uc_boom' raised RuntimeError: no GPU here \(at .*uc_boom.py:1",
        ),
        (
            "uc_dep:train",
            "import not_installed_lib_xyz\n",
            r"imports 'not_installed_lib_xyz', which is not installed",
        ),
        ("uc_value:train", "train = 3\n", r"'train' in module 'uc_value' is a int, not a function"),
        ("no_colon", None, r"not an import path; write it as 'package.module:function'"),
    ],
)
def test_bad_import_paths(tmp_path: Path, path: str, text: str | None, message: str) -> None:
    if text is not None:
        _module(tmp_path, path.split(":")[0], text)
    with pytest.raises(StepError, match=message):
        load_callable(path, tmp_path)


def test_call_user_reports_where_the_code_failed(tmp_path: Path) -> None:
    source = _module(
        tmp_path, "uc_raises", "def train(ctx):\n    x = 1\n    raise KeyError('epochs')\n"
    )
    func = load_callable("uc_raises:train", source)
    with pytest.raises(
        StepError,
        match=r"uc_raises:train raised KeyError: 'epochs' \(at .*uc_raises.py:3 in train\)",
    ):
        call_user("uc_raises:train", func, None)
