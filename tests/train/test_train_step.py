"""`mlops train` end to end on a tiny real Keras model: cache, --force, determinism, run.json,
and a clear StepError (never a traceback) for each kind of bad training code."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions.hashing import sha256_dir

Factory = Callable[..., Any]


def _variables_hash(model_dir: Path) -> str:
    """Independent of the product's weights_hash: load the SavedModel, hash variable values."""
    import tensorflow as tf

    loaded = tf.saved_model.load(str(model_dir))
    digests = sorted(hashlib.sha256(v.numpy().tobytes()).hexdigest() for v in loaded.variables)
    return hashlib.sha256("".join(digests).encode()).hexdigest()


def test_train_writes_a_complete_run(
    toy_project: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = toy_project()
    code, result, err = project.train(capsys=capsys)
    assert code == 0, err
    (summary,) = result["runs"]
    assert summary["reused"] is False
    # Progress is plain lines (stderr is not a TTY here; --json keeps stdout for the result).
    assert "[toy] epoch 1/2" in err and "[toy] epoch 2/2" in err and "loss" in err

    (run,) = project.runs()
    run_dir = project.store / "runs" / run["run_id"]
    assert run["run_id"] == summary["run_id"]
    assert run["run_id"].endswith("-" + run["key"][:8])
    assert run["status"] == "complete" and run["model"] == "toy"
    assert run["params"] == {"epochs": 2, "hidden": 8, "lr": 0.01} and run["seed"] == 7
    data = (project.root / "data" / "toy.csv").resolve()
    assert run["inputs"]["toy"]["path"] == str(data)
    assert run["inputs"]["toy"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert run["model_dir"] == "model"
    assert (run_dir / "model" / "saved_model.pb").is_file()
    assert run["model_hash"] == sha256_dir(run_dir / "model")
    assert run["signature"] == {
        "name": "serving_default",
        "inputs": {"features": {"dtype": "float32", "shape": [None, 4]}},
        "outputs": {"output_0": {"dtype": "float32", "shape": [None, 2]}},
    }
    assert set(run["history"]) >= {"loss", "accuracy", "val_loss", "val_accuracy"}
    assert all(len(values) == 2 for values in run["history"].values())
    lineage = run["lineage"]
    assert lineage["data_hashes"] == {"toy": run["inputs"]["toy"]["sha256"]}
    assert lineage["requirements_hash"] == hashlib.sha256(b"numpy==2.4.6\n").hexdigest()
    assert lineage["git"] == {"commit": None, "dirty": None, "branch": None}  # not a checkout
    assert len(lineage["config_hash"]) == 64 and len(lineage["code_hash"]) == 64
    env = lineage["environment"]
    assert env["tensorflow"] and env["python"] and "/device:CPU:0" in env["devices"]
    assert run["finished_at"] >= run["started_at"] and run["duration_s"] > 0
    assert project.tmp_entries() == []
    assert (project.store / "cache" / "train" / f"{run['key']}.json").is_file()


def test_unchanged_key_reuses_the_run(
    toy_project: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = Path(os.environ.get("TMPDIR", "/tmp")) / f"trace-{os.getpid()}-{id(capsys)}"
    trace.unlink(missing_ok=True)
    project = toy_project(params={"trace": str(trace)})
    code, first, _ = project.train(capsys=capsys)
    assert code == 0
    code, second, _ = project.train(capsys=capsys)
    assert code == 0
    assert second["runs"][0]["reused"] is True
    assert second["runs"][0]["run_id"] == first["runs"][0]["run_id"]
    assert trace.read_text() == "trained\n"  # the entrypoint ran once
    assert len(project.runs()) == 1

    # Human output names the reused run.
    from mlops_sessions.frontends.cli import main

    capsys.readouterr()
    assert main(["train", "-c", str(project.config)]) == 0
    assert f"reused run {first['runs'][0]['run_id']}" in capsys.readouterr().out
    trace.unlink()


@pytest.mark.slow
def test_force_retrains_deterministically(
    toy_project: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = toy_project()
    code, first, err = project.train(capsys=capsys)
    assert code == 0, err
    code, second, err = project.train("--force", capsys=capsys)
    assert code == 0, err
    a, b = first["runs"][0], second["runs"][0]
    assert b["reused"] is False and b["run_id"] != a["run_id"] and b["key"] == a["key"]
    runs = {r["run_id"]: r for r in project.runs()}
    assert set(runs) == {a["run_id"], b["run_id"]}
    # Same inputs -> same weights: by the recorded hash and by loading both models back.
    assert runs[a["run_id"]]["weights_hash"] == runs[b["run_id"]]["weights_hash"]
    dirs = [project.store / "runs" / r / "model" for r in (a["run_id"], b["run_id"])]
    assert _variables_hash(dirs[0]) == _variables_hash(dirs[1])
    # The cache now points at the newest run.
    code, third, _ = project.train(capsys=capsys)
    assert third["runs"][0]["run_id"] == b["run_id"] and third["runs"][0]["reused"]


@pytest.mark.slow
def test_different_seed_gives_different_weights(
    toy_project: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    """The determinism check above could not fail if every run had the same weights."""
    one = toy_project("one", seed=1)
    two = toy_project("two", seed=2)
    assert one.train(capsys=capsys)[0] == 0
    assert two.train(capsys=capsys)[0] == 0
    (run_one,), (run_two,) = one.runs(), two.runs()
    assert run_one["weights_hash"] != run_two["weights_hash"]
    assert _variables_hash(one.store / "runs" / run_one["run_id"] / "model") != _variables_hash(
        two.store / "runs" / run_two["run_id"] / "model"
    )


@pytest.mark.slow
def test_param_override_is_part_of_the_key(
    toy_project: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = toy_project()
    code, base, _ = project.train(capsys=capsys)
    code, wide, err = project.train("--param", "hidden=16", "--param", "epochs=1", capsys=capsys)
    assert code == 0, err
    assert wide["runs"][0]["reused"] is False
    assert wide["runs"][0]["key"] != base["runs"][0]["key"]
    run = next(r for r in project.runs() if r["run_id"] == wide["runs"][0]["run_id"])
    assert run["params"] == {"epochs": 1, "hidden": 16, "lr": 0.01}
    assert len(run["history"]["loss"]) == 1
    code, again, _ = project.train("--param", "epochs=1", "--param", "hidden=16", capsys=capsys)
    assert again["runs"][0]["reused"] and again["runs"][0]["run_id"] == run["run_id"]


def test_model_written_to_model_dir_is_accepted(
    toy_project: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = toy_project(entrypoint="toy_model:writes_own")
    code, _, err = project.train(capsys=capsys)
    assert code == 0, err
    (run,) = project.runs()
    assert run["history"] == {"loss": [0.5, 0.25]}
    assert run["signature"]["inputs"] == {"x": {"dtype": "float32", "shape": [None, 4]}}
    assert run["signature"]["outputs"] == {"y": {"dtype": "float32", "shape": [None, 4]}}


@pytest.mark.parametrize(
    ("entrypoint", "message"),
    [
        (
            "toy_model:raises",
            r"toy_model:raises raised ValueError: learning rate must be positive "
            r"\(at .*toy_model.py:\d+ in raises\)",
        ),
        (
            "toy_model:returns_nothing",
            r"returned no model and wrote no SavedModel to ctx.model_dir; return the Keras model",
        ),
        (
            "toy_model:no_signature",
            r"the SavedModel has no 'serving_default' signature \(signatures: none\)",
        ),
        (
            "toy_model:fixed_batch",
            r"'serving_default' signature cannot serve batches: "
            r"input 'x' has a fixed batch size \(shape \[1, 4\]\)",
        ),
        ("toy_model:returns_number", r"returned a int; return the Keras model"),
        (
            "toy_model:not_a_function",
            r"'not_a_function' in module 'toy_model' is a int, not a function",
        ),
        (
            "toy_model:nope",
            r"module 'toy_model' \(.*\) has no attribute 'nope'; callables it defines: .*train",
        ),
        (
            "missing_module:train",
            r"cannot import module 'missing_module' from .*src; "
            r"check the module name and train.source",
        ),
    ],
)
def test_bad_training_code_gives_a_clear_error(
    toy_project: Factory, capsys: pytest.CaptureFixture[str], entrypoint: str, message: str
) -> None:
    import re

    project = toy_project(entrypoint=entrypoint)
    code, result, err = project.train(capsys=capsys)
    assert code == 1 and result is None
    assert "\nmlops train: " in err
    assert re.search(message, err), err
    assert "Traceback" not in err
    assert project.runs() == [] and project.tmp_entries() == []
    assert not (project.store / "cache" / "train").exists()


def test_missing_data_file_is_a_clear_error(
    toy_project: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = toy_project()
    (project.root / "data" / "toy.csv").unlink()
    code, _, err = project.train(capsys=capsys)
    assert code == 1
    assert "data input 'toy'" in err and "does not exist" in err and "Traceback" not in err


def test_gpu_request_without_gpu_fails_clearly(
    toy_project: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = toy_project(train_extra={"resources": {"gpu": 1}})
    code, _, err = project.train(capsys=capsys)
    assert code == 1
    assert "train.resources.gpu asks for 1 GPU(s) but TensorFlow sees no GPU" in err
    assert "train.allow_cpu_fallback: true" in err
    assert project.runs() == []


def test_gpu_request_falls_back_to_cpu_when_allowed(
    toy_project: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = toy_project(train_extra={"resources": {"gpu": 1}, "allow_cpu_fallback": True})
    code, result, err = project.train(capsys=capsys)
    assert code == 0, err
    assert "warning: model 'toy': train.resources.gpu asks for 1 GPU(s)" in err
    assert "training on CPU because train.allow_cpu_fallback is true" in err
    (run,) = project.runs()
    assert run["warnings"] and "allow_cpu_fallback" in run["warnings"][0]
    assert run["lineage"]["environment"]["gpus"] == []
    assert result["runs"][0]["warnings"] == run["warnings"]


def test_timeout_stops_training(toy_project: Factory, capsys: pytest.CaptureFixture[str]) -> None:
    project = toy_project(params={"sleep": 0.3, "epochs": 20}, train_extra={"timeout": "200ms"})
    code, _, err = project.train(capsys=capsys)
    assert code == 1
    assert "training ran longer than train.timeout (0.2s)" in err
    assert project.runs() == [] and project.tmp_entries() == []


def test_model_without_train_section_is_refused(
    toy_project: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = toy_project()
    code, _, err = project.train("nosuchmodel", capsys=capsys)
    assert code == 1 and "unknown model(s): nosuchmodel" in err


@pytest.mark.slow
def test_container_entry_point_runs_a_spec(
    toy_project: Factory, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The path the train container uses: a JSON spec in, model/ and result.json out.

    It also shows determinism across processes: the separate process gets the same weights
    as `mlops train` run here.
    """
    import json
    import subprocess
    import sys

    from mlops_sessions.config.loader import load
    from mlops_sessions.planning.training import plan_training

    project = toy_project()
    config = load(str(project.config))
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(plan_training(config, config.models["toy"]).to_spec()))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-m", "mlops_sessions.executors.tf.train", str(spec), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((out / "result.json").read_text())
    assert result["model_hash"] == sha256_dir(out / "model")
    assert result["signature"]["inputs"] == {"features": {"dtype": "float32", "shape": [None, 4]}}
    assert len(result["history"]["loss"]) == 2
    assert "[toy] epoch 2/2" in done.stdout
    code, _, err = project.train(capsys=capsys)
    assert code == 0, err
    (run,) = project.runs()
    assert run["weights_hash"] == result["weights_hash"]

    bad = json.loads(spec.read_text())
    bad["entrypoint"] = "toy_model:raises"
    spec.write_text(json.dumps(bad))
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops_sessions.executors.tf.train",
            str(spec),
            str(tmp_path / "o2"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 1
    assert "train: toy_model:raises raised ValueError" in done.stderr
    assert "Traceback" not in done.stderr


def test_missing_tensorflow_is_a_clear_error(toy_project: Factory) -> None:
    """A session venv without the train extra: the import fails as if TF were not installed."""
    import subprocess
    import sys

    project = toy_project()
    script = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from mlops_sessions.frontends.cli import main\n"
        f"sys.exit(main(['train', '-c', {str(project.config)!r}]))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 1
    assert "TensorFlow is not importable here" in done.stderr
    assert "mlops-sessions[train]" in done.stderr and "Traceback" not in done.stderr
    assert project.runs() == [] and project.tmp_entries() == []
