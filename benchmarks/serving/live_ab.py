"""What the rollout's live metrics cost the server: `mlops serve` with them against without.

Two `mlops serve` processes on the same SavedModel run side by side, and wrk alternates
between them (``--seconds`` each, ``--rounds`` times, one concurrency):

- **with**: the server as it ships, with a track label and a drift reference of the
  model's 64 input features, so every batch counts its predicted classes and input bins;
- **without**: the same server with the per-batch counting switched off by this harness
  (``LiveStats.observe`` replaced by a no-op in that process only; the product has no
  such switch).

Prints requests/s and p99 of each per round and the median ratio with/without; the issue's
goal is at least 0.95. Usage (from the repository root; needs wrk):

    python benchmarks/serving/live_ab.py [--rounds 5] [--seconds 3] [-c 32]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
from run import MODEL, REPO, WRK_SCRIPT, export_model, free_port, serving, wrk

from mlops_sessions.planning import drift

WITHOUT_LIVE = (
    "import sys\n"
    "from mlops_sessions.server import live\n"
    "live.LiveStats.observe = lambda self, features, output: None\n"
    "from mlops_sessions.frontends.cli import main\n"
    "sys.exit(main(sys.argv[1:]))\n"
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=int, default=3)
    parser.add_argument("-c", "--concurrency", type=int, default=32)
    args = parser.parse_args()
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "PYTHONUNBUFFERED": "1"}
    with tempfile.TemporaryDirectory(prefix="mlops-live-ab-") as tmp:
        work = Path(tmp)
        model_dir = export_model(work)
        reference = work / "drift_reference.json"
        rows = np.random.default_rng(0).random((2000, 64))
        reference.write_text(json.dumps(drift.reference_table(rows, bins=10)))
        body = work / "body.json"
        body.write_text('{"instances": [[' + ", ".join(["0.5"] * 64) + "]]}")
        script = work / "post.lua"
        script.write_text(WRK_SCRIPT.format(body=body))
        common = [
            "serve", "-c", str(REPO / "mlops.yaml"), MODEL, "--model-dir", str(model_dir),
            "--grpc-port", "0", "--track", "canary", "--drift-reference", str(reference),
        ]  # fmt: skip
        with_port, without_port = free_port(), free_port()
        with_live = [sys.executable, "-m", "mlops_sessions", *common, "--port", str(with_port)]
        without_live = [sys.executable, "-c", WITHOUT_LIVE, *common, "--port", str(without_port)]
        with (
            serving(with_live, with_port, work / "with.log", env) as (with_url, _),
            serving(without_live, without_port, work / "without.log", env) as (without_url, _),
        ):
            for url in (with_url, without_url):
                wrk(url, script, 8, 1)  # warm-up
            ratios = []
            for index in range(args.rounds):
                rps: dict[str, float] = {}
                line = []
                for name, url in (("with", with_url), ("without", without_url)):
                    result = wrk(url, script, args.concurrency, args.seconds)
                    rps[name] = result["rps"]
                    line.append(f"{name} {result['rps']:6.0f} req/s p99 {result['p99_ms']:6.2f} ms")
                ratios.append(rps["with"] / rps["without"])
                print(
                    f"round {index + 1}: " + " | ".join(line) + f" | with/without {ratios[-1]:.3f}"
                )
            ratios.sort()
            print(f"median with/without: {ratios[len(ratios) // 2]:.3f} (goal >= 0.95)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
