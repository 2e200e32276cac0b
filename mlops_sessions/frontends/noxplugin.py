"""Register the pipeline steps of an ``mlops.yaml`` as nox sessions.

A front end, as thin as the ``mlops`` CLI: every session installs what its step needs into
the session's venv (once — an install stamp makes unchanged re-runs skip it) and runs
``mlops <step>`` there, so a laptop and CI execute the same command in the same locked
environment. Steps chain through nox's ``requires=``: ``validate -> test -> train ->
evaluate -> build -> scan -> push -> deploy`` (``pipeline`` ends after evaluate); run one
step alone with ``nox --no-dependencies -s <step>``.

Arguments after ``--`` go to the step: leading bare words are model names and reach every
session in the chain (``nox -s evaluate -- digits``); options (``--force``) reach only the
session(s) named on the command line, so a required session never sees an option that is
not its own.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mlops_sessions import pipeline
from mlops_sessions.cachefile import read_text_entry
from mlops_sessions.config import Config
from mlops_sessions.errors import ConfigError, MlopsError
from mlops_sessions.pipeline import Step

DISTRIBUTION = "mlops-sessions"
STAMP = ".mlops-install-stamp"


@dataclass(frozen=True)
class SessionArgs:
    """The arguments of one ``nox.session(...)`` call: what a test registry receives."""

    func: Callable[[Any], None]
    name: str
    python: str | bool | None
    venv_backend: str
    requires: list[str]
    tags: list[str]
    default: bool
    reuse_venv: bool = True

    @property
    def description(self) -> str | None:
        """What `nox -l` shows: the session function's docstring."""
        return self.func.__doc__


def venv_backend(config: Config) -> str:
    choice = config.python.venv_backend
    return "uv|virtualenv" if choice == "auto" else choice


# Installed with --no-deps after an extra: tensorflow-serving-api (the gRPC protos and
# stubs of `mlops serve`) declares a dependency on the `tensorflow` distribution, which
# would install a second TensorFlow beside tensorflow-cpu; what it needs (grpcio, protobuf,
# TensorFlow's protos) is already there.
NO_DEPS: dict[str, tuple[str, ...]] = {"serve": ("tensorflow-serving-api>=2.16",)}


def install_source(extras: Sequence[str]) -> list[str]:
    """pip arguments that install this very mlops-sessions into a session venv.

    An editable or local install (a checkout) is installed from its directory, so a team
    hacking on the plugin runs its own code; otherwise the same released version.
    """
    suffix = f"[{','.join(extras)}]" if extras else ""
    try:
        dist = metadata.distribution(DISTRIBUTION)
        direct = dist.read_text("direct_url.json")
    except metadata.PackageNotFoundError:
        direct = None
        dist = None
    if direct:
        info = json.loads(direct)
        url = info.get("url", "")
        if url.startswith("file://"):
            path = url[len("file://") :]
            if info.get("dir_info", {}).get("editable"):
                return ["-e", f"{path}{suffix}"]
            return [f"{path}{suffix}"]
    version = dist.version if dist is not None else None
    return [f"{DISTRIBUTION}{suffix}" + (f"=={version}" if version else "")]


def session_extras(spec: Step, config: Config) -> tuple[str, ...]:
    """The extras a session installs: a step that runs in a train image needs the Docker SDK."""
    extras = tuple(spec.extras or ())
    backends = {m.train.effective_backend for m in config.models.values() if m.train is not None}
    if "container" in backends and spec.containerised and "build" not in extras:
        extras += ("build",)
    # train.backend: kubernetes: the train session drives a Job with the Kubernetes client.
    if "kubernetes" in backends and spec.name == "train" and "deploy" not in extras:
        extras += ("deploy",)
    # A shared store is read and written by every step that has a venv: the S3 client.
    if config.store_remote is not None and spec.extras is not None and "fetch" not in extras:
        extras += ("fetch",)
    # s3:// data inputs are downloaded by the steps that read the data.
    if (
        any(entry.uri is not None for entry in config.data.values())
        and spec.name in ("train", "evaluate")
        and spec.extras is not None
        and "fetch" not in extras
    ):
        extras += ("fetch",)
    if config.tracking.mlflow is not None and spec.name in ("train", "evaluate"):
        extras += ("mlflow",)
    # evaluate.sign: evaluate signs the model it blesses, serve verifies it (model-signing).
    signs = any(m.evaluate is not None and m.evaluate.sign for m in config.models.values())
    if signs and spec.name in ("evaluate", "serve") and spec.extras is not None:
        extras += ("sign",)
    return extras


def _install_stamp(config: Config, spec: Step, args: list[str]) -> str:
    digest = hashlib.sha256(json.dumps(args).encode())
    if spec.lock and config.python.requirements:
        digest.update(config.resolve(config.python.requirements).read_bytes())
    for arg in args:  # an editable checkout: its metadata changes when pyproject does
        candidate = Path(arg.split("[")[0])
        if (candidate / "pyproject.toml").is_file():
            digest.update((candidate / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def read_stamp(stamp: Path) -> str | None:
    """The install stamp a session left in its venv (None: install). A cache entry: a
    damaged one (not a sha256 hex digest, a directory) is warned about and reinstalled."""
    return read_text_entry(stamp, what="nox install stamp", valid=_is_sha256_hex)


def _is_sha256_hex(text: str) -> bool:
    return len(text) == 64 and all(c in "0123456789abcdef" for c in text)


def _split_posargs(posargs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Leading bare words are model names; the rest are step options."""
    models: list[str] = []
    for index, arg in enumerate(posargs):
        if arg.startswith("-"):
            return models, list(posargs[index:])
        models.append(arg)
    return models, []


def requested_sessions(argv: Sequence[str]) -> set[str] | None:
    """The sessions named on nox's command line (``-s``/``-e``/``--session(s)``), if any.

    Read from nox's documented command-line interface rather than its runner's internals:
    nox's public API has no "was this session requested or only required". None when no
    session was named (a bare ``nox``, or a selection by ``-k``/``-t``), so every session
    then gets the options.
    """
    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    parser.add_argument("-s", "-e", "--session", "--sessions", nargs="*", action="extend")
    # Everything after `--` belongs to the sessions, not to nox.
    cut = list(argv).index("--") if "--" in argv else len(argv)
    known, _ = parser.parse_known_args(list(argv)[:cut])
    names: list[str] | None = known.session
    return set(names) if names else None


def _make_session(
    spec: Step, config_path: Path, profile: str | None, config: Config
) -> Callable[[Any], None]:
    def run_session(session: Any) -> None:
        models, options = _split_posargs(session.posargs)
        requested = requested_sessions(sys.argv[1:])
        if requested is not None and spec.name not in requested:
            options = []
        if spec.module is None:
            session.log(f"{spec.name}: done ({', '.join(requested or [spec.name])})")
            return
        if spec.extras is not None:
            args = install_source(session_extras(spec, config))
            if spec.lock and config.python.requirements:
                args = ["-r", str(config.resolve(config.python.requirements)), *args]
            no_deps = [p for e in session_extras(spec, config) for p in NO_DEPS.get(e, ())]
            stamp_value = _install_stamp(config, spec, [*args, *no_deps])
            stamp = Path(session.virtualenv.location) / STAMP
            if read_stamp(stamp) == stamp_value:
                session.log("dependencies unchanged since the last install; skipping it")
            else:
                session.install(*args)
                if no_deps:
                    session.install("--no-deps", *no_deps)
                stamp.write_text(stamp_value)
            command = ["mlops"]
        else:
            command = [sys.executable, "-m", "mlops_sessions"]
        common = ["--config", str(config_path)]
        if profile:
            common += ["--profile", profile]
        session.run(
            *command,
            spec.name,
            *common,
            *spec.session_args,
            *models,
            *options,
            external=spec.extras is None,
        )

    run_session.__doc__ = spec.help
    run_session.__name__ = spec.name.replace("-", "_")
    return run_session


def register(
    path: str | os.PathLike[str] = "mlops.yaml",
    *,
    profile: str | None = None,
    prefix: str = "",
    registry: MutableMapping[str, Any] | None = None,
    steps: Sequence[str] | None = None,
) -> list[str]:
    """Create nox sessions from the config at path; returns their names.

    Sessions are made with nox's public ``nox.session(...)`` decorator; a name already taken
    by one of the user's sessions (``nox.registry.get()``) is refused (pass prefix="mlops-"
    to keep both). Tests pass ``registry``, a dict: it then receives each session's
    :class:`SessionArgs` instead of nox, and collisions are checked against it.
    """
    import nox

    existing: Mapping[str, Any] = nox.registry.get() if registry is None else registry
    config_path = Path(path)
    if not config_path.is_absolute():
        config_path = (Path.cwd() / config_path).resolve()
    profile = profile or os.environ.get("MLOPS_PROFILE") or None
    try:
        from mlops_sessions.config.loader import load

        config = load(config_path, profile=profile)
    except ConfigError as exc:
        # nox would print a traceback for an exception while loading the noxfile; say it plainly.
        print(f"mlops-sessions: {config_path.name} is not valid:\n{exc}", file=sys.stderr)
        raise SystemExit(2) from None

    chosen = pipeline.sessions(steps)
    taken = [prefix + s.name for s in chosen if prefix + s.name in existing]
    if taken:
        raise MlopsError(
            f"mlops-sessions: session name(s) {', '.join(taken)} already defined in your "
            "noxfile; rename yours, or register with a prefix: "
            f"mlops_sessions.register({str(path)!r}, prefix='mlops-')"
        )
    backend = venv_backend(config)
    if backend == "uv|virtualenv" and shutil.which("uv") is None:
        backend = "virtualenv"
    names = []
    for spec in chosen:
        name = prefix + spec.name
        args = SessionArgs(
            func=_make_session(spec, config_path, profile, config),
            name=name,
            python=(config.python.version if spec.extras is not None else False),
            venv_backend=(backend if spec.extras is not None else "none"),
            requires=[prefix + r for r in spec.requires],
            tags=["mlops"],
            default=spec.default,
        )
        if registry is None:
            nox.session(
                python=args.python,
                reuse_venv=args.reuse_venv,
                name=args.name,
                venv_backend=args.venv_backend,
                requires=args.requires,
                tags=args.tags,
                default=args.default,
            )(args.func)
        else:
            registry[name] = args
        names.append(name)
    return names
