"""The training planner: what goes into the cache key, data resolution, hash memo. No TF."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.config.loader import load
from mlops_sessions.console.common import parse_params
from mlops_sessions.drivers.training.plans import plan_run
from mlops_sessions.errors import StepError
from mlops_sessions.hashing import FileHashCache
from mlops_sessions.planning.datainputs import resolve_inputs
from mlops_sessions.planning.training import apply_overrides, parse_duration, plan_training

Factory = Callable[..., Any]


def _key(config_path: Path, **override: Any) -> str:
    config = load(str(config_path))
    return plan_training(config, config.models["toy"], params_override=override or None).key


def _edit(config_path: Path, change: Callable[[dict[str, Any]], object]) -> None:
    doc = yaml.safe_load(config_path.read_text())
    change(doc)
    config_path.write_text(yaml.safe_dump(doc, sort_keys=False))


def test_key_is_stable_and_records_lineage(toy_project: Factory) -> None:
    project = toy_project()
    config = load(str(project.config))
    first = plan_training(config, config.models["toy"])
    second = plan_training(config, config.models["toy"])
    assert first.key == second.key
    assert len(first.key) == 64
    assert first.params == {"epochs": 2, "hidden": 8, "lr": 0.01}
    assert first.inputs == {"toy": (project.root / "data" / "toy.csv").resolve()}
    lineage = first.lineage()
    assert set(lineage) == {"git", "config_hash", "code_hash", "data_hashes", "requirements_hash"}
    assert lineage["config_hash"] == config.model_hash("toy")
    assert lineage["requirements_hash"] is not None


@pytest.mark.parametrize(
    "change",
    [
        "param",
        "override",
        "seed",
        "data",
        "code",
        "new_code_file",
        "lock",
        "entrypoint",
        "determinism",
    ],
)
def test_everything_that_changes_the_result_changes_the_key(
    toy_project: Factory, change: str
) -> None:
    project = toy_project()
    before = _key(project.config)
    if change == "param":
        _edit(project.config, lambda d: d["models"]["toy"]["train"]["params"].update(hidden=9))
    elif change == "override":
        assert _key(project.config, hidden=9) != before
        return
    elif change == "seed":
        _edit(project.config, lambda d: d["models"]["toy"]["train"].update(seed=8))
    elif change == "data":
        data = project.root / "data" / "toy.csv"
        data.write_text(data.read_text() + "0,0,0,0,1\n")
    elif change == "code":
        code = project.root / "src" / "toy_model.py"
        code.write_text(code.read_text() + "\n# changed\n")
    elif change == "new_code_file":
        (project.root / "src" / "helpers.py").write_text("VALUE = 1\n")
    elif change == "lock":
        (project.root / "requirements.lock").write_text("numpy==2.4.5\n")
    elif change == "entrypoint":
        _edit(
            project.config,
            lambda d: d["models"]["toy"]["train"].update(entrypoint="toy_model:raises"),
        )
    elif change == "determinism":
        _edit(project.config, lambda d: d["models"]["toy"]["train"].update(deterministic=False))
    assert _key(project.config) != before


def test_settings_that_cannot_change_weights_keep_the_key(toy_project: Factory) -> None:
    project = toy_project()
    before = _key(project.config)
    config_hash = load(str(project.config)).model_hash("toy")
    _edit(
        project.config,
        lambda d: d["models"]["toy"]["evaluate"]["thresholds"]["accuracy"].update(min=0.9),
    )
    (project.root / "src" / "__pycache__").mkdir()
    (project.root / "src" / "__pycache__" / "toy_model.cpython-311.pyc").write_bytes(b"compiled")
    assert _key(project.config) == before
    # ... but the lineage still tells the two configs apart.
    assert load(str(project.config)).model_hash("toy") != config_hash


def test_override_equal_to_declared_value_gives_the_same_key(toy_project: Factory) -> None:
    project = toy_project()
    assert _key(project.config, epochs=2) == _key(project.config)


def test_unknown_param_override_is_refused(toy_project: Factory) -> None:
    project = toy_project()
    with pytest.raises(StepError, match=r"'epoch' is not a param .*declared: epochs, hidden, lr"):
        _key(project.config, epoch=3)


def test_nested_override() -> None:
    merged = apply_overrides({"opt": {"lr": 0.1, "beta": 0.9}, "n": 1}, {"opt.lr": 0.5})
    assert merged == {"opt": {"lr": 0.5, "beta": 0.9}, "n": 1}
    with pytest.raises(StepError, match="'n' is not a mapping"):
        apply_overrides({"n": 1}, {"n.x": 2})


def test_param_values_are_typed_as_yaml() -> None:
    assert parse_params(["epochs=3", "lr=1e-3", "name=wide", "flags=[1, 2]", "on=true"]) == {
        "epochs": 3,
        "lr": 0.001,
        "name": "wide",
        "flags": [1, 2],
        "on": True,
    }
    with pytest.raises(StepError, match="is not KEY=VALUE"):
        parse_params(["epochs"])


def test_duration() -> None:
    assert parse_duration("500ms") == 0.5
    assert parse_duration("5m") == 300
    with pytest.raises(StepError, match="cannot read duration"):
        parse_duration("soon")


def test_missing_data_file_names_the_entry_and_fix(toy_project: Factory) -> None:
    project = toy_project()
    (project.root / "data" / "toy.csv").unlink()
    with pytest.raises(
        StepError, match=r"data input 'toy': .*toy.csv does not exist.*data.toy.path"
    ):
        _key(project.config)


def test_package_resources(toy_project: Factory) -> None:
    project = toy_project()
    _edit(
        project.config,
        lambda d: d["data"].update(
            digits={"package": "sklearn", "resource": "datasets/data/digits.csv.gz"},
            gone={"package": "sklearn", "resource": "datasets/data/nope.csv"},
            absent={"package": "no_such_package_here", "resource": "x.csv"},
        ),
    )
    config = load(str(project.config))
    path = resolve_inputs(config, ["digits"])["digits"]
    assert path.name == "digits.csv.gz" and path.is_file()
    with pytest.raises(
        StepError, match=r"package 'sklearn' .* has no resource 'datasets/data/nope.csv'"
    ):
        resolve_inputs(config, ["gone"])
    with pytest.raises(StepError, match="package 'no_such_package_here' is not installed"):
        resolve_inputs(config, ["absent"])


def test_unchanged_large_data_file_is_not_reread(toy_project: Factory) -> None:
    project = toy_project()
    big = project.root / "data" / "big.bin"
    with open(big, "wb") as handle:  # 64 MiB: reading it again would be noticeable
        for _ in range(64):
            handle.write(os.urandom(1 << 20))
    _edit(
        project.config,
        lambda d: (
            d["data"].update(big={"path": "data/big.bin"}),
            d["models"]["toy"]["train"]["inputs"].append("big"),
        ),
    )
    config = load(str(project.config))
    table = project.store / "cache" / "filehash.json"

    first = FileHashCache(table)
    key = plan_training(config, config.models["toy"], hash_cache=first).key
    assert first.hashed == 4  # code, toy.csv, big.bin, lock
    first.save()  # what the step does after planning

    second = FileHashCache(table)  # a new process: the memo comes from disk
    assert plan_training(config, config.models["toy"], hash_cache=second).key == key
    assert second.hashed == 0

    with open(big, "r+b") as handle:  # same size, new content and mtime
        handle.write(b"changed!")
    third = FileHashCache(table)
    assert plan_training(config, config.models["toy"], hash_cache=third).key != key
    assert third.hashed == 1


def test_dry_run_trains_nothing(toy_project: Factory) -> None:
    project = toy_project()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops_sessions",
            "train",
            "-c",
            str(project.config),
            "--dry-run",
            "--param",
            "epochs=5",
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "not cached: would train" in done.stdout
    assert "toy_model:train" in done.stdout
    assert '"epochs": 5' in done.stdout
    assert "toy.csv" in done.stdout
    assert not (project.store / "runs").exists()


def test_git_lineage_and_ignored_files(toy_project: Factory) -> None:
    project = toy_project()
    root = project.root

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    (root / ".gitignore").write_text(".mlops/\nsrc/scratch/\n")
    git("add", "-A")
    git("commit", "-q", "-m", "init")
    config = load(str(project.config))
    plan = plan_run(config, config.models["toy"])
    assert plan.git.commit == git("rev-parse", "HEAD") and plan.git.dirty is False

    # A git-ignored file in the source directory is not code: same key.
    (root / "src" / "scratch").mkdir()
    (root / "src" / "scratch" / "notes.txt").write_text("scratch\n")
    assert plan_run(config, config.models["toy"]).key == plan.key

    # An uncommitted edit changes the key (the working tree is hashed, not HEAD) and the
    # lineage says the tree is dirty.
    code = root / "src" / "toy_model.py"
    code.write_text(code.read_text() + "\n# edited\n")
    edited = plan_run(config, config.models["toy"])
    assert edited.key != plan.key and edited.git.dirty is True
