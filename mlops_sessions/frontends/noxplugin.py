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

import dataclasses
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from mlops_sessions.config import Config
from mlops_sessions.errors import ConfigError, MlopsError
from mlops_sessions.frontends.cli import STEPS

DISTRIBUTION = "mlops-sessions"
STAMP = ".mlops-install-stamp"
# Steps that run in the train image for `train.container: true` models.
CONTAINER_STEPS = ("test", "train")


@dataclass(frozen=True)
class SessionSpec:
    """One pipeline session: the step it runs and what its venv needs."""

    name: str
    step: str | None  # `mlops <step>`; None for a session that only chains others
    description: str
    extras: tuple[str, ...] | None  # None: no venv, run with nox's own interpreter
    requires: tuple[str, ...] = ()
    lock: bool = False  # install the project's locked requirements too
    default: bool = False  # run by a bare `nox`: only the offline, side-effect-free steps


# Order here is the order `nox -l` shows. Only sessions whose step the CLI implements are
# registered (see `specs`), so nothing is listed that does not work.
SESSIONS: tuple[SessionSpec, ...] = (
    SessionSpec(
        "validate",
        "validate",
        "Check mlops.yaml against the schema and cross-field rules.",
        None,
        default=True,
    ),
    SessionSpec(
        "test",
        "test",
        "Run the team's tests in the training environment.",
        ("train", "test"),  # the train environment plus the test runner
        ("validate",),
        lock=True,
        default=True,
    ),
    SessionSpec(
        "train",
        "train",
        "Train each model (skipped when its inputs are unchanged; -- --force retrains).",
        ("train",),
        ("test",),
        lock=True,
        default=True,
    ),
    SessionSpec(
        "evaluate",
        "evaluate",
        "Evaluate the trained model against the gate; bless it when it passes.",
        ("train",),
        ("train",),
        lock=True,
        default=True,
    ),
    SessionSpec(
        "pipeline",
        None,
        "The main job: validate -> train -> evaluate.",
        None,
        ("evaluate",),
        default=True,
    ),
    SessionSpec(
        "lineage",
        "lineage",
        "Show the chain from commit to model: -- <run|model-hash|commit>.",
        None,
    ),
    SessionSpec(
        "serve",
        "serve",
        "Serve the blessed model locally (TF Serving REST API, /metrics).",
        ("serve",),
        lock=True,
    ),
    SessionSpec(
        "build",
        "build",
        "Build the serve image of the blessed model (skipped when its inputs are unchanged).",
        # serve: the image pins the server's runtime dependencies to what this venv has.
        ("build", "serve"),
        ("evaluate",),
    ),
    SessionSpec(
        "scan",
        "scan",
        "Check built images: non-root, no secrets in layers, size budget.",
        ("build",),
        ("build",),
    ),
    SessionSpec(
        "push",
        "push",
        "Push scanned images and record their digests.",
        ("build",),
        ("scan",),
    ),
    SessionSpec(
        "render",
        "render",
        "Render Kubernetes and Istio manifests (offline).",
        ("deploy",),
    ),
    # The chain ends here: `nox -s deploy` runs everything before it. A job that only
    # deploys an image already pushed runs `nox -s deploy --no-dependencies` and needs
    # neither TensorFlow nor Docker.
    SessionSpec(
        "deploy",
        "deploy",
        "Apply the manifests to the cluster and wait for the rollout.",
        ("deploy",),
        ("push",),
    ),
    SessionSpec(
        "rollback",
        "rollback",
        "Return to the previous (or a named) deployed revision.",
        ("deploy",),
    ),
    SessionSpec(
        "status",
        "status",
        "Show what runs on the cluster: image, commit, model, weights.",
        ("deploy",),
    ),
)


def specs(steps: Sequence[str] | None = None) -> list[SessionSpec]:
    """The sessions that can run, given the CLI steps available.

    A missing link in the chain is skipped, not fatal: a session that requires an absent
    session inherits that session's own prerequisites (train -> test -> validate becomes
    train -> validate when there is no `test` step).
    """
    available = set(STEPS if steps is None else steps)
    by_name = {s.name: s for s in SESSIONS}
    present = {s.name for s in SESSIONS if s.step is None or s.step in available}

    def resolve(name: str) -> list[str]:
        if name in present:
            return [name]
        return [found for req in by_name[name].requires for found in resolve(req)]

    chosen = []
    for spec in SESSIONS:
        if spec.name in present:
            requires = tuple(dict.fromkeys(r for req in spec.requires for r in resolve(req)))
            chosen.append(dataclasses.replace(spec, requires=requires))
    return chosen


def venv_backend(config: Config) -> str:
    choice = config.python.venv_backend
    return "uv|virtualenv" if choice == "auto" else choice


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


def session_extras(spec: SessionSpec, config: Config) -> tuple[str, ...]:
    """The extras a session installs: a step that runs in a train image needs the Docker SDK."""
    extras = tuple(spec.extras or ())
    containerised = any(m.train is not None and m.train.container for m in config.models.values())
    if containerised and spec.step in CONTAINER_STEPS and "build" not in extras:
        extras += ("build",)
    return extras


def _install_stamp(config: Config, spec: SessionSpec, args: list[str]) -> str:
    digest = hashlib.sha256(json.dumps(args).encode())
    if spec.lock and config.python.requirements:
        digest.update(config.resolve(config.python.requirements).read_bytes())
    for arg in args:  # an editable checkout: its metadata changes when pyproject does
        candidate = Path(arg.split("[")[0])
        if (candidate / "pyproject.toml").is_file():
            digest.update((candidate / "pyproject.toml").read_bytes())
    return digest.hexdigest()


def _split_posargs(posargs: Sequence[str]) -> tuple[list[str], list[str]]:
    """Leading bare words are model names; the rest are step options."""
    models: list[str] = []
    for index, arg in enumerate(posargs):
        if arg.startswith("-"):
            return models, list(posargs[index:])
        models.append(arg)
    return models, []


def _requested_sessions(session: Any) -> set[str] | None:
    # nox keeps the sessions named with -s in its global config; nox has no public API for
    # "was I required or requested", and we only need it to keep options off required steps.
    runner = getattr(session, "_runner", None)
    names = getattr(getattr(runner, "global_config", None), "sessions", None)
    return set(names) if names else None


def _make_session(
    spec: SessionSpec, config_path: Path, profile: str | None, config: Config
) -> Callable[[Any], None]:
    def run_session(session: Any) -> None:
        models, options = _split_posargs(session.posargs)
        requested = _requested_sessions(session)
        if requested is not None and spec.name not in requested:
            options = []
        if spec.step is None:
            session.log(f"{spec.name}: done ({', '.join(requested or [spec.name])})")
            return
        if spec.extras is not None:
            args = install_source(session_extras(spec, config))
            if spec.lock and config.python.requirements:
                args = ["-r", str(config.resolve(config.python.requirements)), *args]
            stamp_value = _install_stamp(config, spec, args)
            stamp = Path(session.virtualenv.location) / STAMP
            if stamp.is_file() and stamp.read_text() == stamp_value:
                session.log("dependencies unchanged since the last install; skipping it")
            else:
                session.install(*args)
                stamp.write_text(stamp_value)
            command = ["mlops"]
        else:
            command = [sys.executable, "-m", "mlops_sessions"]
        common = ["--config", str(config_path)]
        if profile:
            common += ["--profile", profile]
        session.run(*command, spec.step, *common, *models, *options, external=spec.extras is None)

    run_session.__doc__ = spec.description
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

    registry defaults to nox's global registry; tests pass a dict. A name already taken by
    one of the user's sessions is refused (pass prefix="mlops-" to keep both).
    """
    from nox._decorators import Func

    if registry is None:
        import nox.registry

        registry = nox.registry._REGISTRY
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

    chosen = specs(steps)
    taken = [prefix + s.name for s in chosen if prefix + s.name in registry]
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
        func = _make_session(spec, config_path, profile, config)
        registry[name] = Func(
            func,
            python=(config.python.version if spec.extras is not None else False),
            reuse_venv=True,
            name=name,
            venv_backend=(backend if spec.extras is not None else "none"),
            requires=[prefix + r for r in spec.requires],
            tags=["mlops"],
            default=spec.default,
        )
        names.append(name)
    return names
