"""``python -m tests.cluster build|up|down|env|status``: the test control plane by hand.

- ``build``  build (or find in the cache) every binary (and the signing tests' cosign and syft),
             print where they are and how long it took
- ``up``     start a control plane in the background (default dir ``.mlops-test-cluster/``);
             it stops by itself after ``--ttl`` (default 2 h) or at ``down``
- ``env``    print ``export KUBECONFIG=...`` for a shell: ``eval "$(python -m tests.cluster env)"``
- ``status`` whether it is up, and its nodes
- ``down``   stop it (the supervisor ends the processes it started, by PID)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from tests.cluster import components, controlplane

DEFAULT_DIR = Path(".mlops-test-cluster")
STATE = "state.json"


def _build(_: argparse.Namespace) -> int:
    started = time.monotonic()
    try:
        binaries = components.ensure_built()
        # The signing tests' tools come from the same cache (see components.py).
        tools = {"cosign": components.build_cosign(), "syft": components.build_syft()}
    except components.ComponentError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for name, path in {**vars(binaries), **tools}.items():
        print(f"{name:24} {path}")
    print(f"ready in {time.monotonic() - started:.1f} s")
    return 0


def _supervise(args: argparse.Namespace) -> int:
    """Runs detached: start, write the state file, wait for SIGTERM or the TTL, stop."""
    directory = Path(args.dir).resolve()
    plane = controlplane.ControlPlane(directory / "plane", components.ensure_built())
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    state = directory / STATE
    try:
        plane.start()
        state.write_text(
            json.dumps(
                {
                    "pid": os.getpid(),
                    **controlplane.environment(plane),
                    "processes": controlplane.pids(plane),
                },
                indent=2,
            )
        )
        deadline = time.monotonic() + args.ttl
        while not stopping and time.monotonic() < deadline:
            time.sleep(0.5)
    finally:
        plane.stop()
        state.unlink(missing_ok=True)
    return 0


def _read_state(directory: Path) -> dict[str, object] | None:
    try:
        state: dict[str, object] = json.loads((directory / STATE).read_text())
    except (OSError, json.JSONDecodeError):
        return None
    pid = state.get("pid")
    try:
        os.kill(int(str(pid)), 0)
    except (OSError, ValueError):
        return None
    return state


def _up(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    if _read_state(directory) is not None:
        print(f"already up in {directory}; `python -m tests.cluster down` to stop it")
        return 0
    directory.mkdir(parents=True, exist_ok=True)
    log = open(directory / "supervisor.log", "ab")  # noqa: SIM115 - handed to the child
    child = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.cluster",
            "_supervise",
            "--dir",
            str(directory),
            "--ttl",
            str(args.ttl),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
    )
    log.close()
    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline:
        if _read_state(directory) is not None:
            print(
                f"up: {directory}\n"
                f'  eval "$(python -m tests.cluster env --dir {args.dir})" to use it'
            )
            return 0
        if child.poll() is not None:
            break
        time.sleep(0.5)
    tail = (directory / "supervisor.log").read_text(errors="replace")[-3000:]
    if child.poll() is None:
        child.terminate()
    print(f"error: the control plane did not come up:\n{tail}", file=sys.stderr)
    return 1


def _down(args: argparse.Namespace) -> int:
    directory = Path(args.dir).resolve()
    state = _read_state(directory)
    if state is None:
        print("not running")
        return 0
    pid = int(str(state["pid"]))
    os.kill(pid, signal.SIGTERM)
    for _ in range(120):
        try:
            os.kill(pid, 0)
        except OSError:
            print("stopped")
            return 0
        time.sleep(0.25)
    print(f"error: supervisor {pid} did not stop in 30 s", file=sys.stderr)
    return 1


def _env(args: argparse.Namespace) -> int:
    state = _read_state(Path(args.dir).resolve())
    if state is None:
        print("error: not running; `python -m tests.cluster up` first", file=sys.stderr)
        return 1
    for key in ("KUBECONFIG", "MLOPS_TEST_KUBE_SERVER", "MLOPS_TEST_KUBE_DIR"):
        print(f"export {key}={state[key]}")
    return 0


def _status(args: argparse.Namespace) -> int:
    state = _read_state(Path(args.dir).resolve())
    if state is None:
        print("not running")
        return 3
    print(json.dumps(state, indent=2))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.cluster",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("build", help="build or find every binary").set_defaults(run=_build)
    for name, run in (
        ("up", _up),
        ("down", _down),
        ("env", _env),
        ("status", _status),
        ("_supervise", _supervise),
    ):
        sub = commands.add_parser(name)
        sub.add_argument("--dir", default=str(DEFAULT_DIR))
        sub.add_argument("--ttl", type=float, default=7200.0)
        sub.add_argument("--timeout", type=float, default=900.0)
        sub.set_defaults(run=run)
    args = parser.parse_args(argv)
    code: int = args.run(args)
    return code


if __name__ == "__main__":
    raise SystemExit(main())
