"""Multi-worker training for real: two ``tf_train`` processes on loopback, one cluster.

Each process gets its own ``TF_CONFIG`` (the cluster spec of both loopback addresses and its
task index), exactly what a pod of the Indexed training Job gets; the example's
``train(ctx)`` builds its model under ``ctx.strategy`` (``MultiWorkerMirroredStrategy``
here). The chief's exported model must pass the example's gate threshold (accuracy >= 0.95
on its held-out split), and the two workers, all-reducing every step, must end with the
same weights.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlops_sessions.config.loader import load
from mlops_sessions.contract import DataContext
from mlops_sessions.executors.tf.usercode import load_callable
from mlops_sessions.planning.train_job import tf_config
from mlops_sessions.planning.training import plan_training
from tests.conftest import clean_env


def free_ports(count: int) -> list[int]:
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def example_project(repo_root: Path, tmp_path: Path) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    for name in ("mlops.yaml", "requirements.lock"):
        shutil.copy(repo_root / name, tmp_path / name)
    shutil.copytree(
        repo_root / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    return tmp_path / "mlops.yaml"


def heldout_accuracy(config_file: Path, model_dir: Path, params: dict[str, object]) -> float:
    import tensorflow as tf

    from mlops_sessions.planning.datainputs import resolve_inputs

    config = load(str(config_file))
    ctx = DataContext("digits", params, 1234, resolve_inputs(config, ["digits"]))
    heldout = load_callable("digits_model:heldout", config_file.parent / "examples" / "digits")
    features, labels = heldout(ctx)
    served = tf.saved_model.load(str(model_dir))
    (probabilities,) = served.signatures["serving_default"](pixels=tf.constant(features)).values()
    return float(np.mean(np.argmax(probabilities.numpy(), axis=1) == labels))


@pytest.mark.slow
def test_two_workers_train_the_example_and_the_chiefs_model_passes_the_gate(
    repo_root: Path, tmp_path: Path
) -> None:
    config_file = example_project(repo_root, tmp_path / "project")
    config = load(str(config_file))
    plan = plan_training(config, config.models["digits"])
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(plan.to_spec()))
    hosts = [f"127.0.0.1:{port}" for port in free_ports(2)]
    workers = [
        subprocess.Popen(
            [sys.executable, "-m", "mlops_sessions.executors.tf.train", str(spec),
             str(tmp_path / f"out{index}")],
            env=clean_env(TF_CONFIG=json.dumps(tf_config(hosts, index)), TF_CPP_MIN_LOG_LEVEL="2"),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for index in range(2)
    ]  # fmt: skip
    logs = [w.communicate(timeout=600)[0] for w in workers]
    for worker, log in zip(workers, logs, strict=True):
        assert worker.returncode == 0, log[-3000:]
    results = [json.loads((tmp_path / f"out{i}" / "result.json").read_text()) for i in range(2)]
    # All-reduced every step: both replicas hold the same variables at the end.
    assert results[0]["weights_hash"] == results[1]["weights_hash"]
    assert len(results[0]["history"]["accuracy"]) == plan.params["epochs"]
    accuracy = heldout_accuracy(config_file, tmp_path / "out0" / "model", dict(plan.params))
    gate = config.models["digits"].evaluate
    assert gate is not None
    minimum = gate.thresholds["accuracy"].min
    assert minimum is not None and accuracy >= minimum, (accuracy, minimum)
    assert os.path.isdir(tmp_path / "out1" / "model")  # a worker's copy, in its scratch dir
