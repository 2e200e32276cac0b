"""Serving benchmark: one SavedModel served three ways, measured in one run with wrk.

Phases (one server at a time, same machine, same request body: one 64-pixel row):

- (a) ``seed``:     the seed article's recipe, Flask + gunicorn, ``model.predict`` per request
- (b) ``mlops``:    ``python -m mlops_sessions serve`` with the repository's mlops.yaml settings
- (c2) ``constant``: the same HTTP stack (aiohttp) answering a constant, no model
- (c1) ``in-process``: the SavedModel's serving signature called on full batches (rows/s)

Each HTTP phase runs wrk at concurrency 1, 8, 32 and 64 for ``--seconds`` each (after a
short warm-up) and records requests/s and p50/p99 latency from wrk's own histogram. The
targets (at concurrency 32): (b) >= 3x (a) requests/s with a p99 no worse, and
(b) >= 50% of min((c1) rows/s, (c2) requests/s).

Usage (from the repository root; needs wrk, gunicorn, flask):

    python benchmarks/serving/run.py [--seconds 5] [--model-dir PATH] [--out results.json]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONCURRENCY = (1, 8, 32, 64)
MODEL = "digits"

WRK_SCRIPT = """\
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
local f = assert(io.open("{body}", "rb"))
wrk.body = f:read("*a")
f:close()

function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    'RESULT {{"requests": %d, "duration_us": %d, "p50_us": %d, "p99_us": %d, ' ..
    '"connect": %d, "read": %d, "write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect, e.read, e.write, e.status, e.timeout))
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def export_model(directory: Path) -> Path:
    """The example's architecture (Dense 64 -> 64 -> 10 softmax) as a SavedModel."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(64,), name="pixels"),
            keras.layers.Dense(64, activation="relu"),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    path = directory / "model"
    model.export(str(path), verbose=False)
    return path


def wait_ready(url: str, process: subprocess.Popen[bytes], timeout: float = 300.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early ({process.returncode}) while waiting for {url}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url + "/ready", timeout=2) as response,
        ):
            if response.status == 200:
                return
        time.sleep(0.2)
    raise SystemExit(f"{url} not ready after {timeout}s")


@contextlib.contextmanager
def running(args: list[str], port: int, log: Path, env: dict[str, str]) -> Iterator[str]:
    """Start a server process, wait for /ready, stop it (SIGTERM, by PID) afterwards."""
    with serving(args, port, log, env) as (url, _):
        yield url


@contextlib.contextmanager
def serving(
    args: list[str], port: int, log: Path, env: dict[str, str]
) -> Iterator[tuple[str, int]]:
    """Like running, yielding (url, pid): the A/B runner reads the server's CPU time."""
    with open(log, "wb") as sink:
        process = subprocess.Popen(args, cwd=REPO, env=env, stdout=sink, stderr=sink)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process)
        yield url, process.pid
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def wrk(url: str, script: Path, connections: int, seconds: float) -> dict[str, Any]:
    command = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{int(seconds)}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"{url}/v1/models/{MODEL}:predict",
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    line = next(x for x in output.splitlines() if x.startswith("RESULT "))
    raw = json.loads(line[len("RESULT ") :])
    errors = sum(raw[k] for k in ("connect", "read", "write", "status", "timeout"))
    return {
        "concurrency": connections,
        "requests": raw["requests"],
        "rps": raw["requests"] / (raw["duration_us"] / 1e6),
        "p50_ms": raw["p50_us"] / 1000,
        "p99_ms": raw["p99_us"] / 1000,
        "errors": errors,
    }


def measure(url: str, script: Path, seconds: float) -> list[dict[str, Any]]:
    wrk(url, script, 8, 1)  # warm-up: connections, caches, first batches
    return [wrk(url, script, c, seconds) for c in CONCURRENCY]


def in_process_rows_per_second(model_dir: Path, batch: int, seconds: float) -> dict[str, Any]:
    import numpy as np
    import tensorflow as tf

    function = tf.saved_model.load(str(model_dir)).signatures["serving_default"]
    rows = np.random.default_rng(0).random((batch, 64), dtype=np.float32)
    for _ in range(20):
        function(pixels=tf.constant(rows))
    calls = 0
    started = time.perf_counter()
    while time.perf_counter() - started < seconds:
        function(pixels=tf.constant(rows))["output_0"].numpy()
        calls += 1
    elapsed = time.perf_counter() - started
    return {
        "batch": batch,
        "rows_per_s": calls * batch / elapsed,
        "ms_per_call": elapsed / calls * 1e3,
    }


def serve_settings() -> dict[str, Any]:
    sys.path.insert(0, str(REPO))
    from mlops_sessions.config.loader import load

    serve = load(REPO / "mlops.yaml").models[MODEL].serve
    return {
        "max_batch_size": serve.batching.max_batch_size,
        "max_wait": serve.batching.max_wait,
        "workers": serve.workers,
    }


def run(seconds: float, model_dir: Path | None, work: Path, seed_workers: int) -> dict[str, Any]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    model_dir = model_dir or export_model(work)
    body = work / "body.json"
    import numpy as np

    row = np.random.default_rng(1).random(64).round(4).tolist()
    body.write_text(json.dumps({"instances": [row]}))
    script = work / "post.lua"
    script.write_text(WRK_SCRIPT.format(body=body))
    settings = serve_settings()
    results: dict[str, Any] = {
        "seconds_per_phase": seconds,
        "serve": settings,
        "cpus": os.cpu_count(),
    }

    port = free_port()
    seed = [
        "gunicorn",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(seed_workers),
        "--chdir",
        str(HERE),
        "seed_app:app",
    ]
    with running(seed, port, work / "seed.log", {**env, "SEED_MODEL_DIR": str(model_dir)}) as url:
        results["seed"] = measure(url, script, seconds)

    port = free_port()
    ours = [
        sys.executable,
        "-m",
        "mlops_sessions",
        "serve",
        "-c",
        str(REPO / "mlops.yaml"),
        MODEL,
        "--model-dir",
        str(model_dir),
        "--port",
        str(port),
    ]
    with running(ours, port, work / "mlops.log", env) as url:
        results["mlops"] = measure(url, script, seconds)
        with urllib.request.urlopen(url + "/metrics") as response:
            metrics = response.read().decode()
        results["mlops_batches"] = {
            line.split("{")[0]: float(line.rsplit(" ", 1)[1])
            for line in metrics.splitlines()
            if line.startswith(("mlops_serve_batch_size_count", "mlops_serve_batch_size_sum"))
        }

    port = free_port()
    constant = [sys.executable, str(HERE / "constant_server.py"), str(port)]
    with running(constant, port, work / "constant.log", env) as url:
        results["constant"] = measure(url, script, seconds)

    results["in_process"] = in_process_rows_per_second(
        model_dir, int(settings["max_batch_size"]), seconds
    )
    return results


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    at = {
        name: next(r for r in results[name] if r["concurrency"] == 32)
        for name in ("seed", "mlops", "constant")
    }
    limit = min(results["in_process"]["rows_per_s"], at["constant"]["rps"])
    return {
        # max(): the seed may finish no request at all in a short phase on a busy machine.
        "speedup_vs_seed": at["mlops"]["rps"] / max(at["seed"]["rps"], 1e-9),
        "p99_ms": {"mlops": at["mlops"]["p99_ms"], "seed": at["seed"]["p99_ms"]},
        "share_of_limit": at["mlops"]["rps"] / limit,
        "speedup_ok": at["mlops"]["rps"] >= 3 * at["seed"]["rps"],
        "p99_ok": at["mlops"]["p99_ms"] <= at["seed"]["p99_ms"],
        "limit_ok": at["mlops"]["rps"] >= 0.5 * limit,
    }


def table(results: dict[str, Any]) -> str:
    lines = [
        "| server | concurrency | requests/s | p50 ms | p99 ms | errors |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    names = {
        "seed": "(a) Flask + gunicorn",
        "mlops": "(b) mlops serve",
        "constant": "(c2) HTTP stack, constant",
    }
    for key, label in names.items():
        for r in results[key]:
            if r["requests"] == 0:  # nothing answered within the phase: no latency to show
                latency = "> phase | > phase"
            else:
                latency = f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
            lines.append(
                f"| {label} | {r['concurrency']} | {r['rps']:.0f} | {latency} | {r['errors']} |"
            )
    c1 = results["in_process"]
    lines.append(
        f"\n(c1) in-process, batches of {c1['batch']}: {c1['rows_per_s']:.0f} rows/s "
        f"({c1['ms_per_call']:.3f} ms per call)"
    )
    batches = results["mlops_batches"]
    rows = batches["mlops_serve_batch_size_sum"] / max(batches["mlops_serve_batch_size_count"], 1)
    lines.append(f"(b) mean rows per model call over all its phases: {rows:.1f}")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="length of each wrk phase")
    parser.add_argument("--model-dir", type=Path, default=None, help="SavedModel (Keras export)")
    parser.add_argument(
        "--seed-workers",
        type=int,
        default=1,
        help="gunicorn workers for (a); the seed's command uses the default, 1",
    )
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("gunicorn") is None:
        print("needs wrk (apt-get install wrk) and gunicorn + flask (pip)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        results = run(args.seconds, args.model_dir, Path(tmp), args.seed_workers)
    results["verdict"] = verdict(results)
    print(table(results))
    print(json.dumps(results["verdict"], indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
