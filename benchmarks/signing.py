"""Signing benchmark: what images.<name>.sign adds to `mlops push`, side by side with an
unsigned push of the same image, in one run.

Starts its own dockerd and Debian's docker-registry on loopback (the image tests' helpers,
tests/images/conftest.py), builds one small serve image (numpy-only lock, a stand-in
model) and pushes it repeatedly, interleaving three configurations of the same build:

- unsigned: images.serve.sign absent;
- signed + provenance: cosign signs the digest and attests the SLSA provenance;
- signed + provenance + SBOM: the default, syft's CycloneDX SBOM attested as well.

Every push after the first finds the layers in the registry, so what differs between the
rows is signing alone (the first push, which uploads the layers, is printed for scale).
Wall time is the `mlops push` call; "tools cpu" is the CPU time of its child processes
(cosign, syft; dockerd's work is not a child). cosign and syft are the
pinned test builds (`python -m tests.cluster build`).

    python benchmarks/signing.py [--repeat 5]

Target: signing and attesting (with the SBOM) adds < 10 s to a push of this image.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# tests/conftest.py first, as pytest loads it: it imports the Docker fixtures module, which
# imports it back.
import tests.conftest  # noqa: E402, F401
from tests.cluster import components  # noqa: E402
from tests.fixtures import docker as images  # noqa: E402
from tests.signing.conftest import make_key_pair, make_signed_project, write_config  # noqa: E402

TARGET_ADDED_S = 10.0
ROWS = {
    "unsigned": None,
    "signed + provenance": {"key": "keys/cosign.key", "sbom": False},
    "signed + provenance + SBOM": {"key": "keys/cosign.key"},
}


@contextlib.contextmanager
def engine_and_registry() -> Iterator[images.DockerEnv]:
    root = Path(tempfile.mkdtemp(prefix="mlops-bench-", dir="/tmp"))
    driver = os.environ.get("MLOPS_TEST_DOCKER_DRIVER", "overlay2")
    process, host = images._start_dockerd(root, driver)
    port = images.free_port()
    config = root / "registry.yml"
    config.write_text(
        yaml.safe_dump(
            {
                "version": 0.1,
                "log": {"level": "error"},
                "storage": {"filesystem": {"rootdirectory": str(root / "registry")}},
                "http": {"addr": f"127.0.0.1:{port}", "secret": "bench-only"},
            }
        )
    )
    registry = subprocess.Popen(["docker-registry", "serve", str(config)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        images._wait_registry(port, registry)
        env = images.DockerEnv(host, f"127.0.0.1:{port}", images.BASE_IMAGE, driver)
        repository, tag = images.BASE_IMAGE.split(":")
        with contextlib.closing(env.client()) as client:
            client.api.import_image_from_file(
                str(images._base_tarball()), repository=repository, tag=tag
            )
        os.environ["DOCKER_HOST"] = host
        yield env
    finally:
        images._stop(registry)
        images._stop(process)
        images._unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)


def mlops(config: Path, *argv: str) -> tuple[float, float, dict[str, Any]]:
    """`mlops <argv> --json` in-process: (wall s, children's cpu s, JSON)."""
    from mlops_sessions.frontends.cli import main

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    out, err = io.StringIO(), io.StringIO()
    started = time.perf_counter()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*argv, "-c", str(config), "--json"])
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if code != 0:
        raise SystemExit(f"mlops {' '.join(argv)} failed:\n{err.getvalue()[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, json.loads(out.getvalue())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="pushes per configuration")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    args = parser.parse_args()
    os.environ["PATH"] = os.pathsep.join(
        [str(components.cosign_bin_dir()), str(components.syft_bin_dir()), os.environ["PATH"]]
    )
    os.environ.setdefault("COSIGN_PASSWORD", "")
    for tool in ("cosign", "syft"):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not built; run `python -m tests.cluster build`")
    figures: dict[str, dict[str, list[float]]] = {row: {"wall": [], "cpu": []} for row in ROWS}
    with engine_and_registry() as env, tempfile.TemporaryDirectory() as work:
        root = Path(work) / "proj"
        project = make_signed_project(root, env)
        make_key_pair(root / "keys")
        build_s, _, _ = mlops(project.config, "build")
        write_config(root, env, sign=None)
        first_s, _, _ = mlops(project.config, "push")  # the layers' first upload, not compared
        for _ in range(args.repeat):
            for row, sign in ROWS.items():  # interleaved: drift in load hits every row alike
                write_config(root, env, sign=sign)
                wall, cpu, result = mlops(project.config, "push")
                (pushed,) = result["images"]
                assert ("signing" in pushed) == (sign is not None)
                figures[row]["wall"].append(wall)
                figures[row]["cpu"].append(cpu)
    base = statistics.median(figures["unsigned"]["wall"])
    load = os.getloadavg()[0]
    print(f"\nmlops push of one numpy-only serve image, {args.repeat} pushes per row, "
          f"median; load average {load:.1f} on {os.cpu_count()} CPUs")  # fmt: skip
    print(f"(for scale: build {build_s:.1f} s, first push uploading the layers {first_s:.1f} s)")
    print(f"{'configuration':<28} {'wall s':>7} {'tools cpu s':>11} {'added s':>8} {'ratio':>6}")
    summary: dict[str, Any] = {"build_s": build_s, "first_push_s": first_s}
    for row, values in figures.items():
        wall = statistics.median(values["wall"])
        cpu = statistics.median(values["cpu"])
        summary[row] = {"wall_s": wall, "tools_cpu_s": cpu, "added_s": wall - base,
                        "ratio": wall / base, "runs": values["wall"]}  # fmt: skip
        print(f"{row:<28} {wall:>7.2f} {cpu:>11.2f} {wall - base:>8.2f} {wall / base:>5.1f}x")
    added = summary["signed + provenance + SBOM"]["added_s"]
    verdict = "PASS" if added < TARGET_ADDED_S else "FAIL"
    print(f"\ntarget: signing + attesting adds < {TARGET_ADDED_S:.0f} s: {added:.2f} s {verdict}")
    if args.json:
        print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
