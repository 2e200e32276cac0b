"""The repository's own example (mlops.yaml, model `digits`) trains fast and well enough.

Runs the real `mlops train` on a copy of the example (so the repo's .mlops/ is untouched)
and scores the exported SavedModel on the example's own held-out split.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mlops_sessions.config.loader import load
from mlops_sessions.contract import DataContext
from mlops_sessions.executors.tf.usercode import load_callable
from mlops_sessions.planning.datainputs import resolve_inputs


@pytest.mark.slow
def test_example_trains_under_a_minute_to_95_percent(repo_root: Path, tmp_path: Path) -> None:
    for name in ("mlops.yaml", "requirements.lock"):
        shutil.copy(repo_root / name, tmp_path / name)
    shutil.copytree(
        repo_root / "examples", tmp_path / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mlops_sessions",
            "train",
            "-c",
            str(tmp_path / "mlops.yaml"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    (summary,) = json.loads(done.stdout)["runs"]
    # About 15 s on an idle 2-core machine; the bound leaves room for a busy CI runner.
    assert summary["duration_s"] < 60, summary

    import tensorflow as tf

    config = load(str(tmp_path / "mlops.yaml"))
    run = json.loads((Path(summary["run_dir"]) / "run.json").read_text())
    ctx = DataContext(
        model="digits",
        params=run["params"],
        seed=run["seed"],
        inputs=resolve_inputs(config, ["digits"]),
    )
    heldout = load_callable("digits_model:heldout", tmp_path / "examples" / "digits")
    features, labels = heldout(ctx)
    served = tf.saved_model.load(str(Path(summary["run_dir"]) / "model"))
    (name,) = run["signature"]["inputs"]
    (probabilities,) = served.signatures["serving_default"](
        **{name: tf.constant(features)}
    ).values()
    accuracy = float(np.mean(np.argmax(probabilities.numpy(), axis=1) == labels))
    assert accuracy >= 0.95, accuracy
