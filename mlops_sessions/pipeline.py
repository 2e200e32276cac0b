"""The one table of pipeline steps that every front end reads.

A row says everything a front end needs to know about a step: the command's name, the step
module under :mod:`mlops_sessions.steps` that runs it, its one-line help, the nox session
(what it requires, which extras its venv installs, whether a bare ``nox`` runs it) and the
CI stage it belongs to. The ``mlops`` CLI, the nox plugin, ``mlops make`` and ``mlops ci``
all read this table and nothing else, so the front ends cannot disagree; adding a step is
one row here plus one module in ``steps/``.

Pure data: importing this module imports nothing but the standard library.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Step:
    """One row: a command of the CLI and/or a session of the nox plugin."""

    name: str  # `mlops <name>`, `nox -s <name>`, `make <name>`
    module: str | None  # module under mlops_sessions.steps; None: a session that only chains
    help: str  # one line, shown by `mlops --help`, `nox -l` and `make mlops-help`
    session: bool = False  # registered as a nox session (and so a Make target)
    # What the session's venv installs: extras of this package; None runs the step with
    # nox's own interpreter, no venv (cheap steps that need no third-party library).
    extras: tuple[str, ...] | None = None
    requires: tuple[str, ...] = ()  # nox `requires=`: the chain before this session
    lock: bool = False  # the session installs the project's locked requirements too
    default: bool = False  # a bare `nox` runs it: only offline, side-effect-free steps
    ci_stage: str | None = None  # the CI job that runs this session (`mlops ci`)
    # Steps that run inside the train image for `train.container: true` models: their
    # session needs the Docker SDK as well.
    containerised: bool = False
    # Arguments the nox session always passes to its step.
    session_args: tuple[str, ...] = ()


# Order is the order of `mlops --help`, `nox -l`, the Make targets and the CI jobs.
STEPS: tuple[Step, ...] = (
    Step(
        "validate",
        "validate",
        "Check mlops.yaml against the schema and cross-field rules (every profile).",
        session=True,
        default=True,
        # A plugin registered with a profile still validates every profile, as CI does.
        session_args=("--all-profiles",),
    ),
    Step(
        "config",
        "config_cmd",
        "Print the effective config (profile, defaults and ${VAR} applied).",
    ),
    Step("schema", "schema_cmd", "Print the JSON Schema of mlops.yaml."),
    Step(
        "test",
        "test_cmd",
        "Run the team's tests (pytest) in the training environment.",
        session=True,
        extras=("train", "test"),  # the train environment plus the test runner
        requires=("validate",),
        lock=True,
        default=True,
        ci_stage="test",
        containerised=True,
    ),
    Step(
        "train",
        "train",
        "Train models; unchanged inputs reuse the stored run (--force retrains).",
        session=True,
        extras=("train",),
        requires=("test",),
        lock=True,
        default=True,
        ci_stage="train",
        containerised=True,
    ),
    Step(
        "evaluate",
        "evaluate",
        "Gate the trained model on its metrics; bless it when it passes.",
        session=True,
        extras=("train",),
        requires=("train",),
        lock=True,
        default=True,
        ci_stage="evaluate",
    ),
    Step(
        "pipeline",
        None,
        "The main job: validate -> test -> train -> evaluate.",
        session=True,
        requires=("evaluate",),
        default=True,
    ),
    Step(
        "lineage",
        "lineage",
        "Trace a run, model hash or commit from commit to blessed model.",
        session=True,
    ),
    Step(
        "store",
        "store_cmd",
        "The artifact store: status, pull, push, gc (with store.remote, the shared one).",
    ),
    Step(
        "serve",
        "serve",
        "Serve the blessed (or a named) SavedModel: TF Serving REST API, /metrics.",
        session=True,
        extras=("serve",),
        lock=True,
    ),
    Step(
        "build",
        "build",
        "Build images with Docker (one per commit); unchanged inputs build nothing.",
        session=True,
        # serve: the image pins the server's runtime dependencies to what this venv has.
        extras=("build", "serve"),
        requires=("evaluate",),
        ci_stage="build",
    ),
    Step(
        "scan",
        "scan",
        "Check built images: non-root, no secrets in layers, size budget, Trivy.",
        session=True,
        extras=("build",),
        requires=("build",),
        ci_stage="build",
    ),
    Step(
        "push",
        "push",
        "Push scanned images; record repo@sha256 digests for render and deploy.",
        session=True,
        extras=("build",),
        requires=("scan",),
        ci_stage="build",
    ),
    Step(
        "eject",
        "eject",
        "Copy the built-in Dockerfile templates into ./dockerfiles to edit them.",
    ),
    Step(
        "ci",
        "ci",
        "Write a GitHub Actions or GitLab CI workflow that runs the same nox sessions.",
    ),
    Step("make", "make", "Write mlops.mk: one Make target per pipeline session."),
    Step(
        "render",
        "render",
        "Render Kubernetes and Istio manifests to k8s/rendered/ (offline, deterministic).",
        session=True,
        extras=("deploy",),
    ),
    Step(
        "dashboard",
        "dashboard",
        "Print the project's Grafana dashboard JSON (render ships it in a ConfigMap).",
        extras=("deploy",),
    ),
    Step(
        "fetch-model",
        "fetch_model",
        "Download a model from S3, check its sha256, unpack it.",
    ),
    # The chain ends here: `nox -s deploy` runs everything before it. A job that only
    # deploys an image already pushed runs `nox -s deploy --no-dependencies` and needs
    # neither TensorFlow nor Docker.
    Step(
        "deploy",
        "deploy",
        "Apply manifests to Kubernetes; step a new build through rollout.steps, judged live.",
        session=True,
        extras=("deploy",),
        requires=("push",),
        ci_stage="deploy",
    ),
    Step(
        "promote",
        "promote",
        "Skip a progressive rollout's remaining steps: stable takes the canary's build now.",
        session=True,
        extras=("deploy",),
    ),
    Step(
        "abort",
        "abort",
        "End a progressive rollout: all traffic back to stable at once, the canary to 0.",
        session=True,
        extras=("deploy",),
    ),
    Step(
        "rollback",
        "rollback",
        "Return a model to its previous (or a named) revision, no rebuild.",
        session=True,
        extras=("deploy",),
    ),
    Step(
        "status",
        "status",
        "Show what runs: image, digest, commit, model hash, weights, replicas, rollout.",
        session=True,
        extras=("deploy",),
    ),
    Step(
        "init",
        "init",
        "Scaffold a new project that runs `nox -s test train evaluate` as is.",
    ),
)

BY_NAME: dict[str, Step] = {step.name: step for step in STEPS}


def commands() -> list[Step]:
    """The steps the ``mlops`` CLI offers (every row with a module)."""
    return [step for step in STEPS if step.module is not None]


def sessions(available: Sequence[str] | None = None) -> list[Step]:
    """The nox sessions, with each ``requires`` resolved against the sessions present.

    ``available`` narrows the commands that exist (the plugin's tests use it). A missing link
    in the chain is skipped, not fatal: a session that requires an absent one inherits that
    session's own prerequisites (train -> test -> validate becomes train -> validate when
    there is no ``test``).
    """
    names = {step.name for step in STEPS} if available is None else set(available)
    rows = [step for step in STEPS if step.session]
    present = {s.name for s in rows if s.module is None or s.name in names}

    def resolve(name: str) -> list[str]:
        if name in present:
            return [name]
        return [found for req in BY_NAME[name].requires for found in resolve(req)]

    chosen = []
    for step in rows:
        if step.name in present:
            requires = tuple(dict.fromkeys(r for req in step.requires for r in resolve(req)))
            chosen.append(dataclasses.replace(step, requires=requires))
    return chosen


def ci_stages() -> list[tuple[str, tuple[str, ...]]]:
    """CI jobs in order, each with the sessions it runs: ``[("build", ("build", "scan",
    "push")), ...]``."""
    stages: dict[str, list[str]] = {}
    for step in sessions():
        if step.ci_stage is not None:
            stages.setdefault(step.ci_stage, []).append(step.name)
    return [(stage, tuple(names)) for stage, names in stages.items()]
