"""The shared store (``store.remote``) in a CI-like checkout, against a cold pipeline.

A real S3 API (moto's server on loopback) holds the shared store. On copies of the example
project (the digits model, trained for real), all sharing one nox envdir so venv installs
are not what is measured (CI caches .nox too):

(a) cold: a fresh checkout with an empty ``.mlops/`` and NO remote — `nox -s pipeline`
    trains and evaluates, as every CI pipeline did while the store travelled only as an
    artifact;
(b) remote: a fresh checkout with an empty ``.mlops/`` and the remote — the key is
    unchanged since the laptop's pipeline, so `nox -s pipeline` reuses the remote's run
    (no training, model not downloaded) and its verdict;
(c) bytes read from the remote by `mlops evaluate` in a checkout whose candidate is new
    (trained there): the baseline costs the blessed pointer and that evaluation's
    verdict.json + metrics.json, not the model, next to the size of the blessed model's
    archive and of the whole remote.

Run: python benchmarks/store_bench.py [--runs N] [--workdir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
NOXFILE = 'import mlops_sessions\n\nmlops_sessions.register("mlops.yaml")\n'
BUCKET = "bench-store"


def _env(endpoint: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NOX", "MLOPS_", "AWS_"))}
    env.update(
        {
            "AWS_ACCESS_KEY_ID": "AKIDBENCH",
            "AWS_SECRET_ACCESS_KEY": "bench-secret",
            "AWS_DEFAULT_REGION": "us-east-1",
            "AWS_EC2_METADATA_DISABLED": "true",
            "MLOPS_STORE_ENDPOINT": endpoint,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
        }
    )
    return env


def _run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{(done.stdout + done.stderr)[-3000:]}")
    return done


def moto(logdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    binary = shutil.which("moto_server")
    if binary is None:
        raise SystemExit("moto_server is not installed: pip install 'moto[server]'")
    with open(logdir / "moto.log", "wb") as out:
        proc = subprocess.Popen(
            [binary, "-H", "127.0.0.1", "-p", str(port)], stdout=out, stderr=out
        )
    url = f"http://127.0.0.1:{port}"
    direct = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    for _ in range(150):
        try:
            with direct.open(f"{url}/moto-api/", timeout=2):
                return proc, url
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("moto_server did not start")


def checkout(root: Path, remote: bool) -> Path:
    """A copy of the example project, its store (with or without the remote) empty."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    shutil.copy(REPO / "requirements.lock", root / "requirements.lock")
    shutil.copytree(
        REPO / "examples", root / "examples", ignore=shutil.ignore_patterns("__pycache__")
    )
    doc = yaml.safe_load((REPO / "mlops.yaml").read_text())
    if remote:
        doc["store"] = {"path": ".mlops", "remote": f"s3://{BUCKET}/digits"}
    (root / "mlops.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    (root / "noxfile.py").write_text(NOXFILE)
    return root


def pipeline(root: Path, envdir: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    _run([sys.executable, "-m", "nox", "--envdir", str(envdir), "-s", "pipeline"], root, env)
    return time.perf_counter() - start


def remote_size(env: dict[str, str], endpoint: str, prefix: str = "digits/") -> dict[str, int]:
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=env["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=env["AWS_SECRET_ACCESS_KEY"],
        region_name="us-east-1",
    )
    sizes: dict[str, int] = {}
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET, Prefix=prefix):
        for item in page.get("Contents", []):
            sizes[str(item["Key"])[len(prefix) :]] = int(item["Size"])
    return sizes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=None)
    args = parser.parse_args()
    work = args.workdir or Path(tempfile.mkdtemp(prefix="store-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    envdir = work / "nox-envs"
    proc, endpoint = moto(work)
    env = _env(endpoint)
    try:
        import boto3

        boto3.client(
            "s3",
            endpoint_url=endpoint,
            aws_access_key_id="AKIDBENCH",
            aws_secret_access_key="bench-secret",
            region_name="us-east-1",
        ).create_bucket(Bucket=BUCKET)

        # Warm-up: venvs for both configs, the laptop's run, its blessing, the CI verdict.
        warm = {
            "laptop pipeline (remote, venvs installed)": pipeline(
                checkout(work / "laptop", True), envdir, env
            ),
            "cold pipeline (no remote, venvs installed)": pipeline(
                checkout(work / "cold-warmup", False), envdir, env
            ),
            "first CI checkout (judged vs the laptop's blessing)": pipeline(
                checkout(work / "ci-first", True), envdir, env
            ),
        }
        cold = [pipeline(checkout(work / "cold", False), envdir, env) for _ in range(args.runs)]
        shared = [pipeline(checkout(work / "ci", True), envdir, env) for _ in range(args.runs)]
        ci = work / "ci"
        assert not any((ci / ".mlops" / "runs").glob("*/model")), "model was downloaded"

        # (c) a new candidate judged against the remote's blessed model.
        fresh = checkout(work / "candidate", True)
        mlops = [sys.executable, "-m", "mlops_sessions"]
        _run([*mlops, "train", "--param", "epochs=3"], fresh, env)
        done = _run([*mlops, "evaluate", "--param", "epochs=3", "--json"], fresh, env)
        evaluated: dict[str, Any] = json.loads(done.stdout)
        read = int(evaluated["store"]["downloaded_bytes"])
        sizes = remote_size(env, endpoint)
        baseline = evaluated["models"]["digits"]["baseline"]
        assert baseline["available"], "the candidate was judged against the blessed model"
        archive = sizes.get(f"runs/{baseline['run_id']}/model.tar.gz", 0)
    finally:
        proc.terminate()
        proc.wait(timeout=10)

    load = os.getloadavg()[0]
    print(f"load average {load:.1f} on {os.cpu_count()} CPUs; workdir {work}")
    for name, seconds in warm.items():
        print(f"warm-up: {name:<55} {seconds:7.2f} s")
    print(f"{'measurement (median of ' + str(args.runs) + ')':<58} seconds")
    print(f"{'cold `nox -s pipeline` (empty store, no remote)':<58} {statistics.median(cold):7.2f}")
    print(
        f"{'CI-like checkout, unchanged key, `nox -s pipeline` + remote':<58} "
        f"{statistics.median(shared):7.2f}"
    )
    print(f"{'ratio':<58} {statistics.median(cold) / statistics.median(shared):7.1f}x")
    print(f"bytes read by `mlops evaluate` for the baseline (new candidate): {read:,}")
    print(f"  the blessed model's archive on the remote:                     {archive:,}")
    whole = f"the whole remote store ({len(sizes)} objects):"
    print(f"  {whole:<62} {sum(sizes.values()):,}")


if __name__ == "__main__":
    main()
