"""Image build benchmark: cold build, code-only rebuild, no-change rebuild, image size.

Runs the real ``mlops build`` CLI against a real Docker engine ($DOCKER_HOST) on a
throw-away project whose serve image carries a tiny Keras SavedModel. Not a test: it
prints figures (and JSON with --json) for benchmarks/images/README.md.

    DOCKER_HOST=unix:///tmp/d/docker.sock python benchmarks/images_bench.py \
        --base mlops-test-base:bookworm [--lock requirements.lock] [--repeat 3]

Targets: code-only rebuild <= 20% of the cold build; no-change rebuild < 2 s.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
SMALL_LOCK = "numpy==2.4.6\n"


def sh(root: Path, *argv: str) -> str:
    done = subprocess.run(
        ["git", "-c", "user.email=b@example.com", "-c", "user.name=bench", *argv],
        cwd=root,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def make_project(root: Path, base: str, lock: str) -> Path:
    (root / "src").mkdir(parents=True)
    (root / "src" / "bench_model.py").write_text('"""Benchmark model code."""\n\nVERSION = 0\n')
    (root / "requirements.lock").write_text(lock)
    doc = {
        "apiVersion": "mlops/v1alpha1",
        "project": {"name": "bench"},
        "python": {"requirements": "requirements.lock"},
        "images": {
            "serve": {"kind": "serve", "repository": "bench-serve", "base": {"image": base}}
        },
        "models": {
            "bench": {"image": "serve", "train": {"source": "src", "entrypoint": "bench_model:t"}}
        },
    }
    config = root / "mlops.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    sys.path.insert(0, str(REPO))
    from mlops_sessions.records.store import Store

    store = Store(root / ".mlops")
    run_id = "20260101T000000Z-bench000"
    with store.staging(store.run_dir(run_id)) as stage:
        export = (
            "import sys, keras\n"
            "m = keras.Sequential([keras.Input(shape=(64,)), keras.layers.Dense(64),"
            " keras.layers.Dense(10, activation='softmax')])\n"
            "m.export(sys.argv[1], verbose=False)\n"
        )
        subprocess.run([sys.executable, "-c", export, str(stage / "model")], check=True,
                       capture_output=True)  # fmt: skip
        record = {"run_id": run_id, "model": "bench", "status": "complete", "model_dir": "model",
                  "model_hash": "0" * 64}  # fmt: skip
        (stage / "run.json").write_text(json.dumps(record))
    store.bless("bench", {"run_id": run_id, "model_hash": "0" * 64})
    sh(root, "init", "-q")
    sh(root, "add", "-A")
    sh(root, "commit", "-q", "-m", "bench")
    return config


def mlops_build(config: Path, *extra: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "mlops_sessions", "build", "-c", str(config), "--json", *extra],
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
    )
    elapsed = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"mlops build failed:\n{done.stderr[-3000:]}")
    (entry,) = json.loads(done.stdout)["images"]
    return elapsed, entry


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--base", required=True, help="base image present on the engine")
    parser.add_argument("--lock", type=Path, help="requirements lock (default: numpy only)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if "DOCKER_HOST" not in os.environ:
        print("set DOCKER_HOST to the engine's socket", file=sys.stderr)
        return 2
    import docker

    lock = args.lock.read_text() if args.lock else SMALL_LOCK
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        root = Path(tmp) / "project"
        config = make_project(root, args.base, lock)
        first, _ = mlops_build(config, "--no-cache")  # includes downloading the wheels
        cold, code_only, unchanged = [], [], []
        for index in range(args.repeat):
            seconds, _ = mlops_build(config, "--no-cache")
            cold.append(seconds)
            seconds, entry = mlops_build(config)
            assert entry["skipped"], entry
            unchanged.append(seconds)
            source = root / "src" / "bench_model.py"
            source.write_text(f'"""Benchmark model code."""\n\nVERSION = {index + 1}\n')
            sh(root, "commit", "-qam", f"change {index}")
            seconds, entry = mlops_build(config)
            assert not entry["skipped"], entry
            code_only.append(seconds)
        with contextlib.closing(docker.DockerClient(base_url=os.environ["DOCKER_HOST"])) as client:
            base_size = int(client.images.get(args.base).attrs["Size"])
            image_size = int(client.images.get(entry["image_id"]).attrs["Size"])
    result = {
        "first_build_s": round(first, 2),
        "cold_build_s": round(statistics.median(cold), 2),
        "code_only_rebuild_s": round(statistics.median(code_only), 2),
        "no_change_rebuild_s": round(statistics.median(unchanged), 2),
        "rebuild_ratio": round(statistics.median(code_only) / statistics.median(cold), 3),
        "base_mb": round(base_size / 1e6, 1),
        "serve_image_mb": round(image_size / 1e6, 1),
        "repeat": args.repeat,
        "lock": str(args.lock or "numpy only"),
    }
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        for key, value in result.items():
            print(f"{key:22} {value}")
        print(
            f"targets: code-only rebuild <= 20% of cold: {result['rebuild_ratio'] <= 0.2}; "
            f"no-change < 2 s: {result['no_change_rebuild_s'] < 2}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
