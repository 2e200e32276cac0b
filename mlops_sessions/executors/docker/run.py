"""Run one planned step in a container through the Docker SDK, streaming its output.

The executor behind ``train.container: true`` (and ``mlops test`` for such models): start
the :class:`~mlops_sessions.planning.container_run.ContainerRun` on the given image, copy
its output to the caller's stream as it comes, wait for the exit code, and always remove
the container — also when the caller is interrupted, so a Ctrl-C never leaves a training
container running behind the user's back.

GPUs are requested with device requests (what ``docker run --gpus N`` sends). An engine
that cannot provide them (no NVIDIA Container Toolkit) refuses the container at start;
that comes back as :class:`GpusUnavailable` so the caller can fall back to the CPU when
the config allows it.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any, TextIO

from mlops_sessions.errors import StepError
from mlops_sessions.planning.container_run import ContainerRun

TAIL_LINES = 40
STOP_TIMEOUT_S = 10


class GpusUnavailable(StepError):
    """The engine refused the GPU device request."""


@dataclass(frozen=True)
class ContainerExit:
    """How a container ended, with the last lines it printed."""

    code: int
    oom_killed: bool
    tail: tuple[str, ...]


def device_requests(gpus: int) -> list[Any]:
    """Docker device requests for gpus NVIDIA GPUs (none for 0)."""
    if gpus <= 0:
        return []
    from docker.types import DeviceRequest

    return [DeviceRequest(count=gpus, capabilities=[["gpu"]])]


def resource_options(spec: ContainerRun) -> dict[str, int]:
    """The planned CPU/memory limits and reservations as docker-py create() options."""
    options = {
        "nano_cpus": spec.nano_cpus,
        "mem_limit": spec.mem_limit,
        "cpu_shares": spec.cpu_shares,
        "mem_reservation": spec.mem_reservation,
    }
    return {key: value for key, value in options.items() if value is not None}


def run(client: Any, image_id: str, spec: ContainerRun, *, out: TextIO, what: str) -> ContainerExit:
    """Run spec on image_id to completion; what names the step in messages."""
    from docker.errors import APIError, ImageNotFound
    from docker.types import Mount as DockerMount

    mounts = [
        DockerMount(target=m.target, source=str(m.source), type="bind", read_only=m.read_only)
        for m in spec.mounts
    ]
    try:
        container = client.containers.create(
            image_id,
            list(spec.command),
            environment=dict(spec.environment),
            mounts=mounts,
            user=spec.user or None,  # None: the image's own USER
            working_dir=spec.working_dir,
            network_mode=spec.network,
            device_requests=device_requests(spec.gpus),
            labels=dict(spec.labels),
            **resource_options(spec),
        )
    except ImageNotFound:
        raise StepError(
            f"{what}: image {image_id[:19]} is gone from the Docker engine; run it again to "
            "rebuild it"
        ) from None
    except APIError as exc:
        raise _refused(spec, what, "create", exc) from None
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    try:
        try:
            container.start()
        except APIError as exc:
            raise _refused(spec, what, "start", exc) from None
        _follow(container, out, tail)
        state = container.wait()
        container.reload()
        oom = bool(container.attrs.get("State", {}).get("OOMKilled"))
        return ContainerExit(int(state.get("StatusCode", 1)), oom, tuple(tail))
    finally:
        _remove(container)


def _refused(spec: ContainerRun, what: str, verb: str, exc: Any) -> StepError:
    """The engine's refusal as an error; a refused GPU request gets its own type."""
    message = _explain(exc)
    lowered = message.lower()
    if spec.gpus and ("gpu" in lowered or "device driver" in lowered):
        return GpusUnavailable(
            f"{what}: the Docker engine cannot give the container {spec.gpus} GPU(s) ({message})"
        )
    return StepError(f"{what}: Docker could not {verb} the container: {message}")


def _follow(container: Any, out: TextIO, tail: deque[str]) -> None:
    """Copy the container's stdout and stderr to out line by line, keeping the last lines."""
    pending = ""
    for chunk in container.logs(stream=True, follow=True, stdout=True, stderr=True):
        pending += chunk.decode("utf-8", errors="replace")
        *lines, pending = pending.split("\n")
        for line in lines:
            tail.append(line)
            print(line, file=out, flush=True)
    if pending:
        tail.append(pending)
        print(pending, file=out, flush=True)


def _remove(container: Any) -> None:
    from docker.errors import APIError, NotFound

    try:
        container.reload()
        if container.status == "running":
            container.stop(timeout=STOP_TIMEOUT_S)
        container.remove(force=True)
    except NotFound:
        pass
    except APIError:
        # Removal is best effort: the container carries labels naming the run, and a
        # failure here must not hide the step's own result or error.
        pass


def _explain(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip()
