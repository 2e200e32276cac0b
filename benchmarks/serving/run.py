"""Serving benchmark: one SavedModel served many ways, measured in one run.

Phases (one server at a time, same machine, same request: one 64-pixel row):

- (a) ``seed``:     the seed article's recipe, Flask + gunicorn, ``model.predict`` per request
- (b) ``mlops``:    ``python -m mlops_sessions serve`` with the repository's mlops.yaml settings
- (b-grpc):         the same server process through TF Serving's gRPC API, loaded by
                    h2load (nghttp2's C load generator sending gRPC frames; without it,
                    ``grpc_load.py``, a bounded asyncio gRPC client in its own process)
- peers (``--venvs``): KServe's model server, MLServer (adaptive batching), BentoML
                    (batchable API), each in its own venv (see peers.py)
- (c2) ``constant``: the same HTTP stack (aiohttp) answering a constant, no model
- (c3) ``grpc_constant``: the same gRPC stack (grpc.aio) answering a constant, no model
- (c1) ``in-process``: the SavedModel's serving signature called on full batches (rows/s)
- heavy: (b) and (c1) again on a ~4.3M-parameter model (``--heavy``), where the model
  call, not HTTP, dominates

HTTP phases run wrk at concurrency 1, 8, 32 and 64 for ``--seconds`` each (after a short
warm-up) and record requests/s and p50/p99 latency from wrk's own histogram; the server
process tree's CPU time (user + system, from /proc) over the c=32 phase gives CPU per
request. Targets (at concurrency 32): (b) >= 4x the best peer's requests/s with a lower
p99; (b-grpc) >= (b); heavy (b) >= 80% of heavy (c1).

Usage (from the repository root; needs wrk, gunicorn, flask, and for a fair gRPC load
h2load from Debian's nghttp2-client; peers need their venvs):

    python benchmarks/serving/run.py [--seconds 5] [--venvs DIR] [--heavy] [--out results.json]
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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import Peer, peers

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
CONCURRENCY = (1, 8, 32, 64)
MODEL = "digits"
CLK_TCK = os.sysconf("SC_CLK_TCK")

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


def export_model(directory: Path, hidden: tuple[int, ...] = (64,), name: str = "model") -> Path:
    """The example's architecture (Dense 64 -> 64 -> 10 softmax) as a SavedModel; ``hidden``
    widens it (the heavy model: 1024, 2048, 1024 -> about 4.3M parameters)."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input(shape=(64,), name="pixels"),
            *(keras.layers.Dense(units, activation="relu") for units in hidden),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    path = directory / name
    model.export(str(path), verbose=False)
    return path


def wait_ready(
    url: str, process: subprocess.Popen[bytes], timeout: float = 300.0, path: str = "/ready"
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"server exited early ({process.returncode}) while waiting for {url}")
        with (
            contextlib.suppress(urllib.error.URLError, OSError),
            urllib.request.urlopen(url + path, timeout=2) as response,
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
    args: list[str],
    port: int,
    log: Path,
    env: dict[str, str],
    ready_path: str = "/ready",
    cwd: Path | None = None,
) -> Iterator[tuple[str, int]]:
    """Like running, yielding (url, pid): the A/B runner reads the server's CPU time."""
    with open(log, "wb") as sink:
        process = subprocess.Popen(
            args, cwd=cwd or REPO, env=env, stdout=sink, stderr=sink, start_new_session=True
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, process, path=ready_path)
        yield url, process.pid
    finally:
        # The server's own process group (start_new_session): peers run worker children.
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)  # stray children of a stopped server


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (from /proc)."""
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(entry.name)] = int(fields[1])
        times[int(entry.name)] = (int(fields[11]) + int(fields[12])) / CLK_TCK
    total, queue = 0.0, [pid]
    while queue:
        current = queue.pop()
        total += times.get(current, 0.0)
        queue.extend(child for child, parent in parents.items() if parent == current)
    return total


def wrk(
    url: str,
    script: Path,
    connections: int,
    seconds: float,
    path: str = f"/v1/models/{MODEL}:predict",
) -> dict[str, Any]:
    command = [
        "wrk",
        f"-t{min(2, connections)}",
        f"-c{connections}",
        f"-d{int(seconds)}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"{url}{path}",
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


def measure(
    url: str,
    script: Path,
    seconds: float,
    pid: int | None = None,
    path: str = f"/v1/models/{MODEL}:predict",
) -> list[dict[str, Any]]:
    """wrk at each concurrency; with pid, the server's CPU ms per request of each phase."""
    wrk(url, script, 8, 1, path)  # warm-up: connections, caches, first batches
    results = []
    for connections in CONCURRENCY:
        before = tree_cpu_seconds(pid) if pid else 0.0
        result = wrk(url, script, connections, seconds, path)
        if pid:
            cpu = tree_cpu_seconds(pid) - before
            result["cpu_ms_per_request"] = cpu * 1e3 / max(result["requests"], 1)
        results.append(result)
    return results


def grpc_payload(row: list[float], work: Path) -> Path:
    """The gRPC request as h2load sends it: a length-prefixed ``PredictRequest`` frame."""
    from grpc_load import request_bytes

    message = request_bytes(MODEL, row)
    path = work / "predict.grpc"
    # gRPC's message framing: compressed flag (0), 4-byte big-endian length, message.
    path.write_bytes(b"\x00" + len(message).to_bytes(4, "big") + message)
    return path


def grpc_errors(metrics_url: str | None) -> float:
    """Answers other than OK the server counted (h2load sees HTTP 200 even for those:
    a gRPC status travels in the trailers, which h2load does not read)."""
    if metrics_url is None:
        return 0.0
    with urllib.request.urlopen(metrics_url + "/metrics") as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("mlops_serve_requests_total{")
        and 'protocol="grpc"' in line
        and 'code="200"' not in line
    )


def h2load(
    target: str, payload: Path, connections: int, seconds: float, log: Path
) -> dict[str, Any]:
    """One h2load phase of unary Predict calls: one stream at a time per connection."""
    command = [
        "h2load",
        "-D",
        str(int(seconds)),
        "--warm-up-time",
        "1",
        "-c",
        str(connections),
        "-m",
        "1",
        "-t",
        str(min(2, connections)),
        "-d",
        str(payload),
        "-H",
        "content-type: application/grpc",
        "-H",
        "te: trailers",
        "--log-file",
        str(log),
        f"http://{target}/tensorflow.serving.PredictionService/Predict",
    ]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    counts = next(x for x in output.splitlines() if x.startswith("requests:")).split()
    # "requests: N total, N started, N done, N succeeded, F failed, E errored, T timeout"
    failed, errored, timeout = int(counts[9]), int(counts[11]), int(counts[13])
    latencies = sorted(
        int(fields[2]) / 1000
        for fields in (line.split("\t") for line in log.read_text().splitlines())
        if len(fields) == 3 and fields[1] == "200"
    ) or [0.0]
    rps = float(next(x for x in output.splitlines() if x.startswith("finished in")).split()[3])
    return {
        "concurrency": connections,
        "requests": int(counts[7]),
        "rps": rps,
        "p50_ms": latencies[len(latencies) // 2],
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))],
        "errors": failed + errored + timeout,
    }


def grpc_measure(
    target: str,
    seconds: float,
    row: list[float],
    pid: int,
    work: Path,
    metrics_url: str | None = None,
) -> list[dict[str, Any]]:
    """(b-grpc) and (c3): unary Predict at each concurrency, CPU like measure().

    The load comes from h2load (nghttp2's HTTP/2 load generator, written in C like wrk)
    sending gRPC frames, so client and server costs compare with the REST phases; without
    h2load, from grpc_load.py (a Python asyncio client, which needs a core of its own and
    caps the figure well below the server's).
    """
    payload = grpc_payload(row, work)
    use_h2load = shutil.which("h2load") is not None
    command = [sys.executable, str(HERE / "grpc_load.py"), target, MODEL]
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}

    def phase(connections: int, length: float) -> dict[str, Any]:
        if use_h2load:
            return h2load(target, payload, connections, length, work / "h2load.log")
        done = subprocess.run(
            [*command, str(connections), str(length), json.dumps(row)],
            check=True,
            capture_output=True,
            text=True,
            env=env,
            timeout=length + 120,
        )
        result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
        return result

    phase(8, 1)  # warm-up
    results = []
    for connections in CONCURRENCY:
        before, refused = tree_cpu_seconds(pid), grpc_errors(metrics_url)
        result = phase(connections, seconds)
        result["errors"] += int(grpc_errors(metrics_url) - refused)
        # The client's start-up (TensorFlow's protos) is outside the phase, not the server's.
        result["cpu_ms_per_request"] = (
            (tree_cpu_seconds(pid) - before) * 1e3 / max(result["requests"], 1)
        )
        result["load"] = "h2load" if use_h2load else "grpc_load.py"
        results.append(result)
    return results


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


def ours_command(model_dir: Path, port: int, grpc_port: int) -> list[str]:
    return [
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
        "--grpc-port",
        str(grpc_port),
    ]


def batches_of(url: str) -> dict[str, float]:
    with urllib.request.urlopen(url + "/metrics") as response:
        metrics = response.read().decode()
    return {
        line.split("{")[0]: float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith(("mlops_serve_batch_size_count", "mlops_serve_batch_size_sum"))
    }


def run(
    seconds: float,
    model_dir: Path | None,
    work: Path,
    seed_workers: int,
    venvs: Path | None,
    heavy: bool,
) -> dict[str, Any]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    model_dir = model_dir or export_model(work)
    import numpy as np

    row = np.random.default_rng(1).random(64).round(4).tolist()

    def script_for(name: str, body: str) -> Path:
        path = work / f"{name}.json"
        path.write_text(body)
        script = work / f"{name}.lua"
        script.write_text(WRK_SCRIPT.format(body=path))
        return script

    script = script_for("tfserving", json.dumps({"instances": [row]}))
    settings = serve_settings()
    results: dict[str, Any] = {
        "seconds_per_phase": seconds,
        "serve": settings,
        "cpus": os.cpu_count(),
        "peers": {},
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
    seed_env = {**env, "SEED_MODEL_DIR": str(model_dir)}
    with serving(seed, port, work / "seed.log", seed_env) as (url, pid):
        results["seed"] = measure(url, script, seconds, pid)

    port, grpc_port = free_port(), free_port()
    with serving(ours_command(model_dir, port, grpc_port), port, work / "mlops.log", env) as (
        url,
        pid,
    ):
        results["mlops"] = measure(url, script, seconds, pid)
        results["mlops_batches"] = batches_of(url)
        results["mlops_grpc"] = grpc_measure(f"127.0.0.1:{grpc_port}", seconds, row, pid, work, url)

    if venvs is not None:
        wait_ms = float(settings["max_wait"].rstrip("ms"))
        for peer in peers(venvs, work, model_dir, row, int(settings["max_batch_size"]), wait_ms):
            results["peers"][peer.key] = {
                "label": peer.label,
                **measure_peer(peer, work, env, script_for, seconds),
            }

    port = free_port()
    constant = [sys.executable, str(HERE / "constant_server.py"), str(port)]
    with serving(constant, port, work / "constant.log", env) as (url, pid):
        results["constant"] = measure(url, script, seconds, pid)

    port, grpc_port = free_port(), free_port()
    grpc_constant = [
        sys.executable,
        str(HERE / "grpc_constant_server.py"),
        str(port),
        str(grpc_port),
    ]
    with serving(grpc_constant, port, work / "grpc_constant.log", env) as (url, pid):
        results["grpc_constant"] = grpc_measure(f"127.0.0.1:{grpc_port}", seconds, row, pid, work)

    results["in_process"] = in_process_rows_per_second(
        model_dir, int(settings["max_batch_size"]), seconds
    )
    if heavy:
        heavy_dir = export_model(work, (1024, 2048, 1024), "heavy")
        port = free_port()
        with serving(ours_command(heavy_dir, port, 0), port, work / "heavy.log", env) as (
            url,
            pid,
        ):
            results["heavy"] = {
                "parameters": 64 * 1024
                + 1024
                + 1024 * 2048
                + 2048
                + 2048 * 1024
                + 1024
                + 1024 * 10
                + 10,
                "mlops": measure(url, script, seconds, pid),
                "mlops_batches": batches_of(url),
            }
        results["heavy"]["in_process"] = in_process_rows_per_second(
            heavy_dir, int(settings["max_batch_size"]), seconds
        )
        results["heavy"]["in_process_32"] = in_process_rows_per_second(heavy_dir, 32, seconds)
    return results


def measure_peer(
    peer: Peer, work: Path, env: dict[str, str], script_for: Any, seconds: float
) -> dict[str, Any]:
    port, port2, port3 = free_port(), free_port(), free_port()

    def fill(text: str) -> str:
        return (
            text.replace("{port}", str(port))
            .replace("{port2}", str(port2))
            .replace("{port3}", str(port3))
        )

    command = [fill(part) for part in peer.command]
    peer_env = {**env, **{k: fill(v) for k, v in peer.env.items()}}
    script = script_for(peer.key, peer.body)
    started = time.monotonic()
    with serving(command, port, work / f"{peer.key}.log", peer_env, peer.ready_path, peer.cwd) as (
        url,
        pid,
    ):
        ready_s = time.monotonic() - started
        # One request as a check that the peer answers predictions, not errors.
        request = urllib.request.Request(
            url + peer.predict_path,
            data=Path(script.with_suffix(".json")).read_bytes(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            sample = response.read().decode()[:300]
        return {
            "ready_s": ready_s,
            "sample": sample,
            "results": measure(url, script, seconds, pid, peer.predict_path),
        }


def at32(rows: list[dict[str, Any]]) -> dict[str, Any]:
    return next(r for r in rows if r["concurrency"] == 32)


def verdict(results: dict[str, Any]) -> dict[str, Any]:
    ours = at32(results["mlops"])
    grpc = at32(results["mlops_grpc"])
    out: dict[str, Any] = {
        "speedup_vs_seed": ours["rps"] / max(at32(results["seed"])["rps"], 1e-9),
        "grpc_vs_rest": grpc["rps"] / ours["rps"],
        "grpc_ok": grpc["rps"] >= ours["rps"],
        # grpcio's own ceiling on this machine (no model) against REST with the model:
        # below 1, no server on grpcio's Python stack can reach the target.
        "grpc_stack_vs_rest": at32(results["grpc_constant"])["rps"] / ours["rps"],
        "grpc_vs_grpc_stack": grpc["rps"] / at32(results["grpc_constant"])["rps"],
    }
    peer_rows = {k: at32(v["results"]) for k, v in results["peers"].items()}
    if peer_rows:
        best_key = max(peer_rows, key=lambda k: peer_rows[k]["rps"])
        best = peer_rows[best_key]
        out.update(
            best_peer=best_key,
            speedup_vs_best_peer=ours["rps"] / max(best["rps"], 1e-9),
            peers_ok=ours["rps"] >= 4 * best["rps"]
            and all(ours["p99_ms"] < r["p99_ms"] for r in peer_rows.values()),
        )
    if "heavy" in results:
        heavy = at32(results["heavy"]["mlops"])
        ceiling = results["heavy"]["in_process"]["rows_per_s"]
        # At c=32 with one row per request a batch holds at most 32 rows: also against c1
        # on batches of 32, the ceiling those requests can reach.
        reachable = results["heavy"]["in_process_32"]["rows_per_s"]
        out.update(
            heavy_share_of_c1=heavy["rps"] / ceiling,
            heavy_share_of_c1_32=heavy["rps"] / reachable,
            heavy_ok=heavy["rps"] >= 0.8 * ceiling,
        )
    return out


def _row(label: str, r: dict[str, Any]) -> str:
    if r["requests"] == 0:  # nothing answered within the phase: no latency to show
        latency = "> phase | > phase"
    else:
        latency = f"{r['p50_ms']:.2f} | {r['p99_ms']:.2f}"
    cpu = f"{r['cpu_ms_per_request']:.2f}" if "cpu_ms_per_request" in r else "-"
    return f"| {label} | {r['concurrency']} | {r['rps']:.0f} | {latency} | {cpu} | {r['errors']} |"


def table(results: dict[str, Any]) -> str:
    lines = [
        "| server | concurrency | requests/s | p50 ms | p99 ms | server CPU ms/request | errors |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    named = [
        ("(a) Flask + gunicorn", results["seed"]),
        ("(b) mlops serve, REST", results["mlops"]),
        ("(b-grpc) mlops serve, gRPC", results["mlops_grpc"]),
        *((v["label"], v["results"]) for v in results["peers"].values()),
        ("(c2) HTTP stack, constant", results["constant"]),
        ("(c3) gRPC stack, constant", results["grpc_constant"]),
    ]
    for label, rows in named:
        lines.extend(_row(label, r) for r in rows)
    c1 = results["in_process"]
    lines.append(
        f"\n(c1) in-process, batches of {c1['batch']}: {c1['rows_per_s']:.0f} rows/s "
        f"({c1['ms_per_call']:.3f} ms per call)"
    )
    batches = results["mlops_batches"]
    rows = batches["mlops_serve_batch_size_sum"] / max(batches["mlops_serve_batch_size_count"], 1)
    lines.append(f"(b) mean rows per model call over its REST and gRPC phases: {rows:.1f}")
    if "heavy" in results:
        heavy = results["heavy"]
        lines.append(f"\nHeavy model ({heavy['parameters']:,} parameters):\n")
        lines.append(lines[0])
        lines.append(lines[1])
        lines.extend(_row("(b) mlops serve, REST", r) for r in heavy["mlops"])
        for key in ("in_process", "in_process_32"):
            c = heavy[key]
            lines.append(
                f"\n(c1) in-process, batches of {c['batch']}: {c['rows_per_s']:.0f} rows/s "
                f"({c['ms_per_call']:.3f} ms per call)"
            )
        hb = heavy["mlops_batches"]
        mean = hb["mlops_serve_batch_size_sum"] / max(hb["mlops_serve_batch_size_count"], 1)
        lines.append(f"(b) mean rows per model call: {mean:.1f}")
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
    parser.add_argument(
        "--venvs",
        type=Path,
        default=None,
        help="directory with the peers' venvs (kserve/, mlserver/, bentoml/); see README",
    )
    parser.add_argument("--heavy", action="store_true", help="also run the heavy model")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()
    if shutil.which("wrk") is None or shutil.which("gunicorn") is None:
        print("needs wrk (apt-get install wrk) and gunicorn + flask (pip)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="mlops-bench-") as tmp:
        results = run(
            args.seconds, args.model_dir, Path(tmp), args.seed_workers, args.venvs, args.heavy
        )
    results["verdict"] = verdict(results)
    print(table(results))
    print(json.dumps(results["verdict"], indent=2))
    if args.out is not None:
        args.out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
