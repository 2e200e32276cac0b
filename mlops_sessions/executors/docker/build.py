"""Build an image from an :class:`ImagePlan` with the Docker SDK.

Steps: (1) an image already carrying the plan's input-digest label — locally, or under the
planned tag in the registry — is reused and only re-tagged; (2) hermetic builds get their
wheels from ``pip download`` on the host (cached under ``.mlops/wheels/<digest>/`` by
:mod:`mlops_sessions.drivers.imaging`); (3) the build context is written as one tar
straight from the plan's file list (nothing copied); (4) the engine builds it with no
network when the build is hermetic, streaming each step's output; a failed step becomes a
StepError quoting the step and its last output lines.

A serve image installs the lock's serving subset (:mod:`mlops_sessions.planning.serving_deps`),
resolved here from the ``Requires-Dist`` metadata of the very wheels downloaded for the
image (its Python and platform), or of the installed distributions for a non-hermetic
build, and written into the context as ``serve.txt`` and ``serve-over-base.txt``.
"""

from __future__ import annotations

import email.parser
import io
import os
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

from mlops_sessions.errors import StepError
from mlops_sessions.planning import serving_deps
from mlops_sessions.planning.images import INPUT_DIGEST_LABEL, ImagePlan, WheelSpec

TAIL_LINES = 25


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    refs: tuple[str, ...]
    skipped: bool
    reason: str
    seconds: float
    size_bytes: int


# --- hermetic wheels ---------------------------------------------------------------------
def download_wheels(plan: ImagePlan, dest: Path, out: TextIO) -> None:
    """Download the wheels for the plan's requirement files into dest (an empty staging
    directory: the caller keeps the result as its wheel cache, :mod:`drivers.imaging`)."""
    spec = plan.wheels
    assert spec is not None
    reqs = dest / ".requirements"
    reqs.mkdir()
    for name in spec.requirement_files:
        arc = f"deps/requirements/{name}"
        source = plan.files.get(arc)
        text = source.read_text(encoding="utf-8") if source else plan.texts[arc]
        (reqs / name).write_text(text, encoding="utf-8")
    print(f"[build] downloading wheels for Python {spec.python_version}", file=out)
    done = subprocess.run(
        pip_download_command(spec, reqs, dest), capture_output=True, text=True, check=False
    )
    if done.returncode == 0 and spec.no_deps_files:
        # Their declared dependencies are not wanted (a second TensorFlow, for
        # tensorflow-serving-api): fetch the packages alone.
        for name in spec.no_deps_files:
            (reqs / name).write_text(plan.texts[f"deps/requirements/{name}"], encoding="utf-8")
        done = subprocess.run(
            pip_download_command(spec, reqs, dest, spec.no_deps_files, no_deps=True),
            capture_output=True,
            text=True,
            check=False,
        )
    if done.returncode != 0:
        tail = "\n".join(done.stderr.strip().splitlines()[-12:])
        raise StepError(
            f"pip could not download the locked wheels for Python {spec.python_version} "
            f"(manylinux):\n{tail}\nhermetic builds need a binary wheel for every pinned "
            "package: pin versions that publish wheels, or set images.<name>.hermetic: false"
        )
    for name in (*spec.requirement_files, *spec.no_deps_files):
        (reqs / name).unlink()
    reqs.rmdir()


def pip_download_command(
    spec: WheelSpec,
    reqs: Path,
    dest: Path,
    files: tuple[str, ...] | None = None,
    *,
    no_deps: bool = False,
) -> list[str]:
    nodot = spec.python_version.replace(".", "")
    command = [sys.executable, "-m", "pip", "download", "--disable-pip-version-check"]
    if no_deps:
        command.append("--no-deps")
    command += ["--only-binary=:all:", "--python-version", spec.python_version]
    command += ["--implementation", "cp"]
    for abi in (f"cp{nodot}", "abi3", "none"):
        command += ["--abi", abi]
    for platform_tag in spec.platforms:
        command += ["--platform", platform_tag]
    command += ["--dest", str(dest)]
    for name in spec.requirement_files if files is None else files:
        command += ["-r", str(reqs / name)]
    return command


def _wheel_requires(wheels: Path) -> dict[str, list[str]]:
    """Canonical name -> Requires-Dist, read from each wheel's METADATA."""
    requires: dict[str, list[str]] = {}
    parser = email.parser.HeaderParser()
    for wheel in sorted(wheels.glob("*.whl")):
        with zipfile.ZipFile(wheel) as archive:
            name = next((n for n in archive.namelist() if n.endswith(".dist-info/METADATA")), None)
            if name is None:
                continue
            meta = parser.parsestr(archive.read(name).decode("utf-8", "replace"))
        requires[serving_deps.canonical(meta["Name"] or "")] = meta.get_all("Requires-Dist") or []
    return requires


def _installed_requires() -> dict[str, list[str]]:
    from importlib import metadata

    return {
        serving_deps.canonical(d.metadata["Name"] or ""): list(d.requires or [])
        for d in metadata.distributions()
    }


def serving_split(plan: ImagePlan, wheels: Path | None, out: TextIO) -> dict[str, str]:
    """serve.txt and serve-over-base.txt for a serve image: the lock's serving subset."""
    lock = plan.files["deps/requirements/lock.txt"].read_text(encoding="utf-8")
    requires = _wheel_requires(wheels) if wheels is not None else _installed_requires()
    python = plan.wheels.python_version if plan.wheels else "3.11"
    cut = serving_deps.split(lock, requires, python)
    left = ", ".join(cut.left_out) or "nothing"
    kept = len(cut.serve.splitlines())
    print(
        f"[build] serving subset of the lock: {kept} of {kept + len(cut.left_out)} "
        f"distributions; left out (training only): {left}",
        file=out,
    )
    return {
        "deps/requirements/serve.txt": cut.serve,
        "deps/requirements/serve-over-base.txt": cut.over_base,
    }


# --- build context -----------------------------------------------------------------------
def write_context(
    plan: ImagePlan, wheels: Path | None, target: Path, generated: dict[str, str] | None = None
) -> None:
    """The build context as a tar: generated texts, plan files and wheels, sorted.

    Owner and times are normalised: the context is content-addressed like the plan.
    """

    def normal(info: tarfile.TarInfo) -> tarfile.TarInfo:
        info.uid = info.gid = 0
        info.uname = info.gname = "root"
        info.mtime = 0
        info.mode = 0o755 if info.isdir() or info.mode & 0o111 else 0o644
        return info

    # dereference: a symlink in the project becomes the file it points to in the image.
    with tarfile.open(target, "w", dereference=True) as tar:
        for directory in ("deps", "deps/requirements", "deps/wheels", "code", "model"):
            info = tarfile.TarInfo(directory)
            info.type = tarfile.DIRTYPE
            tar.addfile(normal(info))
        texts = {**plan.texts, **(generated or {}), "Dockerfile": plan.build_dockerfile()}
        for arc, text in sorted(texts.items()):
            data = text.encode()
            info = tarfile.TarInfo(arc)
            info.size = len(data)
            tar.addfile(normal(info), io.BytesIO(data))
        for arc, path in sorted(plan.files.items()):
            tar.add(path, arcname=arc, recursive=False, filter=normal)
        if wheels is not None:
            for wheel in sorted(wheels.glob("*.whl")):
                tar.add(wheel, arcname=f"deps/wheels/{wheel.name}", filter=normal)


# --- build -------------------------------------------------------------------------------
def find_existing(client: Any, plan: ImagePlan) -> Any | None:
    """A local image with the plan's input digest, or the planned tag pulled if it has it."""
    found = client.images.list(filters={"label": f"{INPUT_DIGEST_LABEL}={plan.input_digest}"})
    if found:
        return found[0]
    if plan.registry is None:
        return None
    from docker.errors import APIError

    try:
        pulled = client.images.pull(plan.refs[0])
    except APIError:
        return None  # not in the registry (or unreachable): build
    if pulled.labels.get(INPUT_DIGEST_LABEL) == plan.input_digest:
        return pulled
    return None


def ensure_base(client: Any, plan: ImagePlan, out: TextIO) -> None:
    """The base image must be local or pullable; say how to get it otherwise."""
    from docker.errors import APIError, ImageNotFound

    try:
        client.images.get(plan.base)
        return
    except ImageNotFound:
        pass
    print(f"[build] pulling base image {plan.base}", file=out)
    try:
        client.images.pull(plan.base)
    except APIError as exc:
        raise StepError(
            f"base image '{plan.base}' is not on this Docker engine and cannot be pulled "
            f"({_explain(exc)}); `docker pull` or `docker import` it first, or point "
            f"images.{plan.image}.base at an image you have"
        ) from None


def build(
    client: Any,
    plan: ImagePlan,
    *,
    wheels: Callable[[], Path],
    scratch: Path,
    out: TextIO,
    no_cache: bool = False,
    reuse: bool = True,
) -> BuildResult:
    """Build (or reuse) the planned image and tag it with every planned ref.

    wheels gives the directory of the plan's downloaded wheels (a hermetic build; called
    only when something is built); the build context's tar is written under scratch.
    """
    import time

    started = time.monotonic()
    if reuse and not no_cache:
        existing = find_existing(client, plan)
        if existing is not None:
            for ref in plan.refs:
                repository, tag = ref.rsplit(":", 1)
                existing.tag(repository, tag)
            return BuildResult(
                existing.id,
                tuple(plan.refs),
                True,
                f"an image with input digest {plan.input_digest[:12]} exists",
                time.monotonic() - started,
                int(existing.attrs.get("Size", 0)),
            )
    ensure_base(client, plan, out)
    wheel_dir = wheels() if plan.wheels is not None else None
    scratch.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f"context-{plan.image}.", suffix=".tar", dir=scratch)
    os.close(fd)
    context = Path(name)
    try:
        generated = serving_split(plan, wheel_dir, out) if plan.extra.get("serving_split") else None
        write_context(plan, wheel_dir, context, generated)
        image_id = _stream_build(client, plan, context, out, no_cache)
    finally:
        context.unlink(missing_ok=True)
    image = client.images.get(image_id)
    for ref in plan.refs[1:]:
        repository, tag = ref.rsplit(":", 1)
        image.tag(repository, tag)
    return BuildResult(
        image.id,
        tuple(plan.refs),
        False,
        "built",
        time.monotonic() - started,
        int(image.attrs.get("Size", 0)),
    )


def _stream_build(client: Any, plan: ImagePlan, context: Path, out: TextIO, no_cache: bool) -> str:
    from docker.errors import APIError

    # Hermetic builds get no network at all: a RUN that tries to download fails loudly.
    # Non-hermetic ones (and apt packages) use the host's network.
    offline = plan.hermetic and "apt-get" not in plan.dockerfile
    tail: deque[str] = deque(maxlen=TAIL_LINES)
    step = ""
    image_id: str | None = None
    error: str | None = None
    with open(context, "rb") as handle:
        try:
            stream = client.api.build(
                fileobj=handle,
                custom_context=True,
                tag=plan.refs[0],
                rm=True,
                forcerm=True,
                nocache=no_cache,
                pull=False,
                network_mode="none" if offline else "host",
                decode=True,
            )
            for chunk in stream:
                if "stream" in chunk:
                    text = str(chunk["stream"])
                    out.write(text)
                    out.flush()
                    for line in text.splitlines():
                        if line.startswith("Step "):
                            step = line.strip()
                        elif line.strip():
                            tail.append(line)
                if "error" in chunk:
                    # Keep reading to the end: a half-read stream leaves its socket open.
                    error = error or str(chunk["error"])
                aux = chunk.get("aux")
                if isinstance(aux, dict) and "ID" in aux:
                    image_id = str(aux["ID"])
        except APIError as exc:
            raise _failed(plan, step, _explain(exc), tail) from None
    if error is not None:
        raise _failed(plan, step, error, tail)
    if image_id is None:
        raise StepError(f"the Docker engine finished building {plan.refs[0]} without an image id")
    return image_id


def _failed(plan: ImagePlan, step: str, error: str, tail: deque[str]) -> StepError:
    output = "\n".join(f"    {line}" for line in tail)
    where = f" at {step}" if step else ""
    if "pip" in error or "pip" in output:
        hint = (
            "a Python package could not be installed: check that requirements.lock pins "
            "wheels for the image's Python (python.version) and rebuild"
        )
    else:
        hint = f"fix that instruction in {plan.template} (or what it installs) and rebuild"
    return StepError(
        f"building image '{plan.image}' failed{where}:\n    {error.strip()}\n"
        f"last output:\n{output}\n{hint}"
    )


def _explain(exc: Any) -> str:
    explanation = getattr(exc, "explanation", None)
    return str(explanation or exc).strip()[:400]
