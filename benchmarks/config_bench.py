"""Config layer speed, measured side by side in one run.

(a) `mlops validate` on the example mlops.yaml as a fresh subprocess (median of N runs),
    next to a bare `python -c pass` so the interpreter's own start-up is visible; the
    difference is what the config layer costs. Measured with full JSON Schema validation
    (MLOPS_NO_CACHE=1) and with the verdict remembered from an earlier run, plus `load()`
    alone without the CLI. Target: validate < 0.3 s wall time.
(b) In-process load + validate (parse, profile, defaults, schema, cross-field checks,
    typed Config) of a generated config with 50 models and 50 images. Target: < 0.5 s.

Wall time depends on what else the machine runs; CPU time (user + system, of the child
process for subprocesses) is printed next to it because it does not.

Run: python benchmarks/config_bench.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
VALIDATE_TARGET_S = 0.3
LARGE_TARGET_S = 0.5


@dataclass
class Timing:
    wall: list[float]
    cpu: list[float]  # user + system CPU seconds: what the work costs on an idle machine

    @property
    def wall_s(self) -> float:
        return statistics.median(self.wall)

    @property
    def cpu_s(self) -> float:
        return statistics.median(self.cpu)


def _in_process(run: Callable[[], object], runs: int) -> Timing:
    timing = Timing([], [])
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        timing.cpu.append(time.process_time() - cpu)
        timing.wall.append(time.perf_counter() - wall)
    return timing


def _subprocess(argv: list[str], runs: int, env: dict[str, str]) -> Timing:
    timing = Timing([], [])
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        wall = time.perf_counter()
        done = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        timing.wall.append(time.perf_counter() - wall)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        timing.cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(argv)} failed:\n{done.stderr}")
    return timing


def large_config(models: int = 50, images: int = 50) -> str:
    """A realistic big file: every model trains, is gated, deployed and rolled out."""
    lines = [
        "apiVersion: mlops/v1alpha1",
        "project: {name: big}",
        "data:",
        "  digits: {package: sklearn, resource: datasets/data/digits.csv.gz}",
        "images:",
    ]
    for i in range(images):
        lines += [
            f"  img-{i}:",
            f"    repository: big/img-{i}",
            "    kind: serve",
            f"    base: {{variant: {'gpu' if i % 2 else 'cpu'}, tensorflow: '2.21.0'}}",
            "    packages: {apt: [curl], pip: [rich==13.9.4]}",
            f"    tag: {{policy: template, template: 'v-{{short}}-{i}'}}",
            "    labels: {team: ml}",
        ]
    lines += [
        "defaults:",
        "  deploy: {namespace: ml, replicas: 2, resources: {cpu: 500m, memory: 1Gi,"
        " limits: {cpu: '2', memory: 2Gi}}}",
        "  serve: {port: 8501}",
        "models:",
    ]
    for i in range(models):
        lines += [
            f"  model-{i}:",
            f"    image: img-{i % images}",
            "    train:",
            "      entrypoint: pkg.model:train",
            "      inputs: [digits]",
            "      params: {epochs: 5, hidden_units: 64, learning_rate: 0.001}",
            f"      container: true\n      image: img-{(2 * i + 1) % images}",
            "      resources: {cpu: '4', memory: 8Gi, gpu: 1, limits: {gpu: 1}}",
            "    evaluate:",
            "      dataset: pkg.model:heldout",
            "      metrics: [accuracy, f1, loss, {name: brier, function: 'pkg.m:brier'}]",
            "      latency: {batch_sizes: [1, 32]}",
            "      thresholds:",
            "        accuracy: {min: 0.9, vs_baseline: {max_regression: 0.01}}",
            "        latency_b1_p95_ms: {max: 50}",
            "    deploy:",
            "      autoscaling: {min_replicas: 2, max_replicas: 6}",
            "      secrets: [{env: API_TOKEN, secret: api, key: token}]",
            "    rollout:",
            f"      hosts: [model-{i}.example.com]",
            "      stable: {weight: 90}",
            "      canary: {weight: 10}",
            "      steps: [10, 50, 100]",
        ]
    lines += [
        "profiles:",
        "  prod:",
        "    defaults: {deploy: {replicas: 3}}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15, help="runs per measurement")
    args = parser.parse_args(argv)
    python = sys.executable

    with tempfile.TemporaryDirectory() as cache:
        warm_env = {**os.environ, "MLOPS_CACHE_DIR": cache}
        warm_env.pop("MLOPS_NO_CACHE", None)
        cold_env = {**os.environ, "MLOPS_NO_CACHE": "1"}
        validate = [python, "-m", "mlops_sessions", "validate"]
        loader_only = [
            python,
            "-c",
            "from mlops_sessions.config.loader import load; load('mlops.yaml')",
        ]
        bare = _subprocess([python, "-c", "pass"], args.runs, cold_env)
        cold = _subprocess(validate, args.runs, cold_env)
        _subprocess(validate, 1, warm_env)  # remember the verdict once
        warm = _subprocess(validate, args.runs, warm_env)
        loader = _subprocess(loader_only, args.runs, cold_env)
        loader_warm = _subprocess(loader_only, args.runs, warm_env)
        parser_only = [python, "-c", "from mlops_sessions.frontends import cli; cli.build_parser()"]
        cli_parser = _subprocess(parser_only, args.runs, cold_env)

    os.environ["MLOPS_NO_CACHE"] = "1"  # in-process runs validate in full every time
    sys.path.insert(0, str(REPO))
    from mlops_sessions.config.loader import loads

    text = large_config()
    first = _in_process(lambda: loads(text, root=REPO, profile="prod", env={}), 1)
    config = loads(text, root=REPO, profile="prod", env={})
    assert len(config.models) == 50 and len(config.images) == 50
    large = _in_process(lambda: loads(text, root=REPO, profile="prod", env={}), args.runs)

    rows: list[tuple[str, Timing, float | None]] = [
        ("python -c pass (interpreter start)", bare, None),
        ("mlops validate, full validation", cold, VALIDATE_TARGET_S),
        ("mlops validate, verdict remembered", warm, VALIDATE_TARGET_S),
        ("load() only, no CLI, full validation", loader, None),
        ("load() only, no CLI, verdict remembered", loader_warm, None),
        ("cli.build_parser() only, no config", cli_parser, None),
        ("50 models + 50 images, first call", first, LARGE_TARGET_S),
        ("50 models + 50 images, median", large, LARGE_TARGET_S),
    ]
    print(
        f"config layer benchmark: median of {args.runs} runs, python {sys.version.split()[0]}, "
        f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
    )
    print(f"{'measurement':<40} {'wall s':>7} {'cpu s':>7} {'target':>7}  result (wall)")
    failed = False
    for name, timing, target in rows:
        verdict, shown = "", ""
        if target is not None:
            verdict = "PASS" if timing.wall_s < target else "FAIL"
            failed |= verdict == "FAIL"
            shown = f"< {target:.1f}"
        print(f"{name:<40} {timing.wall_s:>7.3f} {timing.cpu_s:>7.3f} {shown:>7}  {verdict}")
    print(
        f"validate overhead over the bare interpreter: {cold.wall_s - bare.wall_s:.3f} s wall, "
        f"{cold.cpu_s - bare.cpu_s:.3f} s cpu (remembered verdict: "
        f"{warm.cpu_s - bare.cpu_s:.3f} s cpu); ratio {cold.wall_s / bare.wall_s:.1f}x"
    )
    print(f"generated config: {len(text.splitlines())} lines")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
