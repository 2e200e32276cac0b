"""Plan a step that runs inside a project image: mounts, paths, user, GPUs. Pure, offline.

Training and the test suite run in the train image the same way: the project tree is
mounted read-only at ``/workspace`` (the working directory), files the step needs from
outside the tree (a data file shipped inside an installed package, say) get read-only
mounts of their own under ``/mlops/mounts``, and one host directory is mounted writable at
``/mlops/out`` for what the step produces. Host paths in the step's arguments are rewritten
to the paths the container sees, so the executor inside runs exactly what it would run in
the venv.

The container runs with the invoking user's UID:GID, so the files it writes on the host
belong to that user (not to the image's service user), and with no network: a step that
needs the internet at run time is not reproducible. Training gets the CPU and memory of
``train.resources``: limits as hard caps, requests as Docker's soft shares/reservation.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from mlops_sessions.config import Resources, units
from mlops_sessions.planning.training import TrainPlan

WORKSPACE = PurePosixPath("/workspace")
OUTPUT = PurePosixPath("/mlops/out")
EXTRA_MOUNTS = PurePosixPath("/mlops/mounts")
# The image's own package (code/lib in the build context) comes first on the path.
IMAGE_LIB = "/opt/mlops/lib"


@dataclass(frozen=True)
class Mount:
    """One bind mount: a host path at a container path."""

    source: Path
    target: str
    read_only: bool = True


@dataclass(frozen=True)
class ContainerRun:
    """What the container executor starts: argv, mounts, environment, user, GPUs."""

    command: tuple[str, ...]
    mounts: tuple[Mount, ...]
    environment: Mapping[str, str]
    user: str
    working_dir: str = str(WORKSPACE)
    gpus: int = 0
    network: str = "none"
    labels: Mapping[str, str] = field(default_factory=dict)
    # train.resources in Docker's terms: limits are hard (nano_cpus, mem_limit), requests
    # soft (cpu_shares weighs CPU time under contention, mem_reservation under pressure).
    nano_cpus: int | None = None
    mem_limit: int | None = None
    cpu_shares: int | None = None
    mem_reservation: int | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "command": list(self.command),
            "mounts": [
                {"source": str(m.source), "target": m.target, "read_only": m.read_only}
                for m in self.mounts
            ],
            "environment": dict(self.environment),
            "user": self.user,
            "working_dir": self.working_dir,
            "gpus": self.gpus,
            "network": self.network,
            **{
                key: value
                for key, value in (
                    ("nano_cpus", self.nano_cpus),
                    ("mem_limit", self.mem_limit),
                    ("cpu_shares", self.cpu_shares),
                    ("mem_reservation", self.mem_reservation),
                )
                if value is not None
            },
        }


# Docker's default CPU weight: one core's worth of shares.
CPU_SHARES_PER_CORE = 1024


def resource_limits(resources: Resources | None) -> dict[str, int]:
    """ContainerRun's resource fields from a config resources block (quantities via units)."""
    if resources is None:
        return {}
    out: dict[str, int] = {}
    limits = resources.limits
    if limits is not None and limits.cpu is not None:
        out["nano_cpus"] = max(1, round(units.cpu_cores(limits.cpu) * 1e9))
    if limits is not None and limits.memory is not None:
        out["mem_limit"] = math.ceil(units.memory_bytes(limits.memory))
    if resources.cpu is not None:
        # Docker refuses shares below 2.
        out["cpu_shares"] = max(2, round(units.cpu_cores(resources.cpu) * CPU_SHARES_PER_CORE))
    if resources.memory is not None:
        out["mem_reservation"] = math.ceil(units.memory_bytes(resources.memory))
    return out


class PathMap:
    """Host paths -> container paths; remembers the mounts that makes necessary.

    Paths inside the project root map under /workspace (one mount for the whole tree);
    anything else gets its own read-only mount, named after its position and base name so
    two files called ``data.csv`` from different places do not collide.
    """

    def __init__(self, root: Path, output: Path) -> None:
        self.root = root.resolve()
        self.output = output.resolve()
        self._extra: dict[Path, str] = {}

    def __call__(self, host: Path) -> str:
        path = host.resolve()
        for base, target in ((self.output, OUTPUT), (self.root, WORKSPACE)):
            if path == base or base in path.parents:
                return str(target / path.relative_to(base).as_posix())
        if path not in self._extra:
            self._extra[path] = str(EXTRA_MOUNTS / f"{len(self._extra)}-{path.name}")
        return self._extra[path]

    def mounts(self) -> tuple[Mount, ...]:
        return (
            Mount(self.root, str(WORKSPACE), read_only=True),
            Mount(self.output, str(OUTPUT), read_only=False),
            *(Mount(host, target, read_only=True) for host, target in self._extra.items()),
        )


def container_environment(python_path: list[str]) -> dict[str, str]:
    """Environment of a step in the image: quiet TF, unbuffered output, a writable HOME.

    The container's user is the host user, who has no home in the image; Keras and
    matplotlib write their caches under HOME, so it points at /tmp.
    """
    return {
        "HOME": "/tmp",
        "PYTHONUNBUFFERED": "1",
        "PYTHONDONTWRITEBYTECODE": "1",
        "TF_CPP_MIN_LOG_LEVEL": "2",
        "MPLCONFIGDIR": "/tmp/matplotlib",
        "PYTHONPATH": ":".join(dict.fromkeys([*python_path, IMAGE_LIB])),
    }


def train_run(
    plan: TrainPlan,
    *,
    root: Path,
    output: Path,
    user: str,
    labels: Mapping[str, str],
    resources: Resources | None = None,
) -> tuple[ContainerRun, dict[str, Any]]:
    """The run of one training plan in the train image.

    Returns the run and the plan's spec (:meth:`TrainPlan.to_spec`) rewritten to container
    paths; the executor writes that spec to ``output/train-spec.json`` before starting the
    container.
    """
    paths = PathMap(root, output)
    spec = plan.to_spec()
    inside = dict(spec)
    inside["source"] = paths(Path(spec["source"]))
    inside["inputs"] = {name: paths(Path(p)) for name, p in spec["inputs"].items()}
    command = (
        "python",
        "-m",
        "mlops_sessions.executors.tf.train",
        str(OUTPUT / "train-spec.json"),
        str(OUTPUT),
    )
    limits = resource_limits(resources)
    run = ContainerRun(
        command=command,
        mounts=paths.mounts(),
        environment=container_environment([]),
        user=user,
        gpus=plan.gpu,
        labels=labels,
        nano_cpus=limits.get("nano_cpus"),
        mem_limit=limits.get("mem_limit"),
        cpu_shares=limits.get("cpu_shares"),
        mem_reservation=limits.get("mem_reservation"),
    )
    return run, inside


def suite_run(
    pytest_args: list[str],
    *,
    sources: list[Path],
    root: Path,
    output: Path,
    user: str,
    labels: Mapping[str, str],
) -> ContainerRun:
    """pytest with pytest_args (host paths inside are rewritten) in the train image.

    The JUnit report goes to ``/mlops/out/junit.xml``; the models' train.source
    directories go on PYTHONPATH, as in the venv.
    """
    paths = PathMap(root, output)
    rewritten = [_rewrite(arg, paths, root) for arg in pytest_args]
    python_path = [paths(source) for source in sources]
    command = (
        "python",
        "-m",
        "pytest",
        *rewritten,
        f"--junitxml={OUTPUT / 'junit.xml'}",
        # The tree is mounted read-only: pytest's cache would only warn about it.
        "-p",
        "no:cacheprovider",
    )
    return ContainerRun(
        command=command,
        mounts=paths.mounts(),
        environment=container_environment(python_path),
        user=user,
        labels=labels,
    )


def _rewrite(arg: str, paths: PathMap, root: Path) -> str:
    """An argument that is an absolute host path under the root becomes its container path."""
    if arg.startswith("/") and Path(arg).resolve().is_relative_to(root.resolve()):
        return paths(Path(arg))
    return arg
