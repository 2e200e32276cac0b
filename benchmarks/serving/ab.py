"""Short A/B runs: (b) ``mlops serve`` and (c2) the constant server, alternated.

The full benchmark (run.py) measures each server in its own minute, so on shared cores a
busy minute during one phase skews the (b)/(c2) ratio. Here both servers run side by side
and wrk alternates between them (``--seconds`` each, ``--rounds`` times, one concurrency),
reporting per round the requests/s of each, their ratio, and the CPU time per request of
each server's main (event loop) thread with how busy that thread was.

Usage (from the repository root; needs wrk):

    python benchmarks/serving/ab.py --model-dir PATH [--rounds 5] [--seconds 3] [-c 32]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

from run import HERE, MODEL, REPO, WRK_SCRIPT, export_model, free_port, serving, wrk

TICKS = os.sysconf("SC_CLK_TCK")


def main_thread_cpu(pid: int) -> float:
    """Seconds of CPU (user + system) used so far by the process's main thread."""
    fields = Path(f"/proc/{pid}/task/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", type=Path, default=None, help="SavedModel (Keras export)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("-c", "--concurrency", type=int, default=32)
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="mlops-ab-") as tmp:
        work = Path(tmp)
        model_dir = args.model_dir or export_model(work)
        body = work / "body.json"
        body.write_text('{"instances": [[' + ", ".join(["0.5"] * 64) + "]]}")
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT.format(body=body))
        ours_port, constant_port = free_port(), free_port()
        ours = [
            sys.executable, "-m", "mlops_sessions", "serve", "-c", str(REPO / "mlops.yaml"),
            MODEL, "--model-dir", str(model_dir), "--port", str(ours_port),
        ]  # fmt: skip
        constant = [sys.executable, str(HERE / "constant_server.py"), str(constant_port)]
        with (
            serving(ours, ours_port, work / "mlops.log", env) as (b_url, b_pid),
            serving(constant, constant_port, work / "constant.log", env) as (c_url, c_pid),
        ):
            for url in (b_url, c_url):
                wrk(url, script, 8, 1)  # warm-up
            ratios = []
            for index in range(args.rounds):
                line: list[str] = []
                rps: dict[str, float] = {}
                for name, url, pid in (("b", b_url, b_pid), ("c2", c_url, c_pid)):
                    before = main_thread_cpu(pid)
                    result = wrk(url, script, args.concurrency, args.seconds)
                    cpu = main_thread_cpu(pid) - before
                    rps[name] = result["rps"]
                    per_request = cpu / max(result["requests"], 1) * 1e6
                    line.append(
                        f"{name} {result['rps']:6.0f} req/s p99 {result['p99_ms']:6.2f} ms "
                        f"main {per_request:4.0f} us/req busy {cpu / args.seconds:4.0%}"
                    )
                ratios.append(rps["b"] / rps["c2"])
                print(f"round {index + 1}: " + " | ".join(line) + f" | b/c2 {ratios[-1]:.2f}")
            ratios.sort()
            print(f"median b/c2: {ratios[len(ratios) // 2]:.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
