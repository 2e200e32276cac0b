"""The image plan: Dockerfile text, build-context file list, tags, labels, input digest.

Pure and offline (no Docker import): everything ``build`` / ``push`` and ``--dry-run``
show comes from :func:`plan_image`. The input digest is a hash of exactly what determines
the image's content — Dockerfile text, every context file, the requirement sets the wheels
come from, the base reference — and not of the volatile parts (creation date, tag). An
image carrying the same digest label is the same build, so the executor skips it.

Build context layout (what the templates COPY)::

    Dockerfile
    deps/requirements/lock.txt     the project's lock, verbatim
    deps/requirements/runtime.txt  mlops-sessions' own runtime dependencies, pinned from
                                   the environment that runs the build (names the lock lacks)
    deps/requirements/extra.txt    images.<name>.packages.pip
    deps/requirements/nodeps.txt   serve: installed with --no-deps (tensorflow-serving-api)
    deps/requirements/serve.txt    serve: the lock's serving subset, written by the build
    deps/requirements/serve-over-base.txt   the same minus TensorFlow's closure (a base
                                   that has the locked TensorFlow; see serving_deps)
    deps/wheels/                   hermetic builds: every wheel, downloaded on the host
    code/lib/mlops_sessions/       this package (the image runs `python -m mlops_sessions`)
    code/app/                      mlops.yaml, the lock, each model's train.source
    model/                         the blessed SavedModel (serve and tfserving images)

Few, coarse layers on purpose: with copy-on-write-less storage drivers every layer costs a
copy of the image's filesystem, so a code change rebuilds two COPY layers, not ten.
"""

from __future__ import annotations

import json
import os
import platform
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from mlops_sessions.config import Config, ImageConfig, ModelConfig
from mlops_sessions.errors import StepError
from mlops_sessions.hashing import FileHashCache, sha256_json, sha256_text
from mlops_sessions.planning import dockerfile as dockerfiles
from mlops_sessions.planning import serving_deps
from mlops_sessions.planning.sourcefacts import ProjectFiles
from mlops_sessions.planning.tags import TagFacts, make_tag
from mlops_sessions.version import PACKAGE_DIR

# Bump when the plan's composition changes: every image then counts as changed.
PLAN_FORMAT = 1
LABEL_PREFIX = "org.mlops-sessions"
INPUT_DIGEST_LABEL = f"{LABEL_PREFIX}.input-digest"
VENV = "/opt/mlops/venv"
DRIFT_REFERENCE = "drift_reference.json"
DEFAULT_PYTHON = "3.11"  # tensorflow/tensorflow images since 2.16 and Debian bookworm
# Newest glibc the wheels may need: Ubuntu 22.04 (TF images) has 2.35, bookworm 2.36.
MAX_GLIBC_MINOR = 35
TF_SERVING_REST_PORT = 8501
_SKIP_DIRS = {"__pycache__", ".git", ".mlops", ".nox", ".venv", ".pytest_cache", ".mypy_cache"}
# What `python -m mlops_sessions <step>` imports inside the image, per kind. A serve image
# installs only the lock's serving subset (serving_deps): it is pulled on every rollout,
# canary, scale-up and rollback, so training-only packages are left out of it.
_SHARED_ROOTS = ("pyyaml", "jsonschema", "aiohttp", "prometheus-client", "numpy", "orjson")
RUNTIME_ROOTS: Mapping[str, tuple[str, ...]] = {
    "serve": (*_SHARED_ROOTS, "grpcio", "grpcio-health-checking"),
    "train": _SHARED_ROOTS,
    "tfserving": (),
}
# A train image of a project with a `tests:` suite also runs `mlops test` in the container.
# (The test runner then makes its dependency stage differ from the serve image's.)
TEST_ROOTS = ("pytest",)
# A serve image with `model_source.type: s3` also runs `mlops fetch-model` (init container).
FETCH_ROOTS = ("boto3", "tenacity")
# ... which verifies the model when it is signed (evaluate.sign, docs/model-signing.md).
# model-signing 1.1 imports pyOpenSSL without declaring it.
SIGN_ROOTS = ("model-signing", "pyopenssl")


@dataclass(frozen=True)
class ModelArtifact:
    """The SavedModel that goes into a serve image, and where it came from."""

    model: str
    run_id: str
    model_hash: str
    path: Path
    blessed: bool
    # The run's record; run.json in the image keeps only what the server reports.
    record: Mapping[str, Any] = field(default_factory=dict)
    # The training reference's bins (drift_reference.json of its passing evaluation), so
    # the server counts live inputs for a rollout's input-drift check.
    drift_reference: Path | None = None


@dataclass(frozen=True)
class WheelSpec:
    """What the hermetic wheel download needs; digest names its cache directory."""

    python_version: str
    platforms: tuple[str, ...]
    requirement_files: tuple[str, ...]
    digest: str
    # Downloaded (and installed) without their dependencies: see serving_deps.NO_DEPS_ROOTS.
    no_deps_files: tuple[str, ...] = ()


@dataclass(frozen=True)
class ImagePlan:
    image: str
    kind: str
    model: str | None
    base: str
    repository: str
    tags: tuple[str, ...]
    dockerfile: str
    template: str
    template_origin: str
    labels: Mapping[str, str]
    input_digest: str
    files: Mapping[str, Path]  # context path -> file on this machine
    texts: Mapping[str, str]  # context path -> generated content
    wheels: WheelSpec | None
    artifact: ModelArtifact | None
    uid: int
    size_budget_mb: float | None
    git_commit: str | None
    registry: str | None
    hermetic: bool = True
    extra: Mapping[str, Any] = field(default_factory=dict)
    # Digest of the software environment alone (base, Dockerfile, requirements, wheels),
    # without code, config or model: what a container training run's cache key depends on.
    environment_digest: str = ""

    @property
    def refs(self) -> list[str]:
        return [f"{self.repository}:{tag}" for tag in self.tags]

    def build_dockerfile(self) -> str:
        """The Dockerfile sent to the engine: the template's text plus one LABEL at the end.

        One instruction, last: labels change every build (created, version) and must not
        invalidate any cached layer; one LABEL is one step, not one per label.
        """
        pairs = " \\\n      ".join(
            f"{_label_value(key)}={_label_value(value)}"
            for key, value in sorted(self.labels.items())
        )
        return f"{self.dockerfile.rstrip()}\nLABEL {pairs}\n"

    def describe(self) -> dict[str, Any]:
        """JSON-friendly plan for --dry-run."""
        return {
            "image": self.image,
            "kind": self.kind,
            "model": self.model,
            "base": self.base,
            "refs": self.refs,
            "labels": dict(self.labels),
            "input_digest": self.input_digest,
            "environment_digest": self.environment_digest,
            "template": self.template,
            "template_origin": self.template_origin,
            "dockerfile": self.dockerfile,
            "hermetic": self.hermetic,
            "python": self.wheels.python_version if self.wheels else None,
            "context_files": len(self.files) + len(self.texts),
            "model_run": self.artifact.run_id if self.artifact else None,
            "model_hash": self.artifact.model_hash if self.artifact else None,
        }


def image_models(config: Config, image: str) -> list[ModelConfig]:
    """Models that use the image (to serve it, or to train in it)."""
    return [
        m
        for m in config.models.values()
        if m.image == image or (m.train is not None and m.train.image == image)
    ]


def served_model(config: Config, image: str) -> ModelConfig:
    """The one model a serve/tfserving image carries."""
    users = [m for m in config.models.values() if m.image == image]
    if not users:
        raise StepError(
            f"image '{image}' is a serving image but no model uses it; "
            f"set models.<name>.image: {image}"
        )
    if len(users) > 1:
        raise StepError(
            f"image '{image}' is used by models {', '.join(m.name for m in users)}; a serving "
            "image carries one model: give each model its own entry under 'images'"
        )
    return users[0]


def base_reference(image: ImageConfig) -> str:
    base = image.base
    if image.kind == "tfserving" and base.image is None:
        if base.variant in ("jupyter", "gpu-jupyter"):
            raise StepError(
                f"a tfserving image cannot use the '{base.variant}' variant; "
                "use variant cpu or gpu, or name a base image"
            )
        return f"tensorflow/serving:{base.tensorflow}{'-gpu' if base.variant == 'gpu' else ''}"
    return base.reference


def image_python(config: Config) -> str:
    """major.minor of the image's Python: python.version, else the TF images' 3.11."""
    version = config.python.version or DEFAULT_PYTHON
    return ".".join(version.split(".")[:2])


def wheel_platforms(machine: str | None = None) -> tuple[str, ...]:
    """pip --platform tags a wheel for this architecture may carry (manylinux, glibc <= max)."""
    arch = machine or platform.machine() or "x86_64"
    arch = {"amd64": "x86_64", "arm64": "aarch64"}.get(arch.lower(), arch)
    legacy = ("manylinux2014",) if arch != "x86_64" else ("manylinux1", "manylinux2010")
    tags = [f"{name}_{arch}" for name in (*legacy, "manylinux2014")]
    tags += [f"manylinux_2_{minor}_{arch}" for minor in range(MAX_GLIBC_MINOR, 4, -1)]
    return tuple(dict.fromkeys(tags))


def runtime_requirements(
    kind: str, python_version: str, locked: Iterable[str], extra_roots: Iterable[str] = ()
) -> str:
    """Pins for mlops-sessions' own imports in the image, from this environment's versions.

    Names the lock already pins are left to the lock. A dependency not installed here (its
    marker is false for this interpreter but true for the image's) is listed unpinned.
    """
    from importlib import metadata

    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    locked_names = {canonicalize_name(n) for n in locked}
    env = serving_deps.marker_env(python_version)
    pins: dict[str, str] = {}
    queue = [canonicalize_name(n) for n in (*RUNTIME_ROOTS.get(kind, ()), *extra_roots)]
    while queue:
        name = queue.pop()
        if name in pins or name in locked_names:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            pins[name] = name
            continue
        pins[name] = f"{name}=={dist.version}"
        for spec in dist.requires or []:
            req = Requirement(spec)
            if req.marker is None or req.marker.evaluate(env):
                queue.append(canonicalize_name(req.name))
    return "".join(f"{pins[n]}\n" for n in sorted(pins))


def installed_pins(names: Iterable[str]) -> str:
    """``name==version`` of each name as installed here (unpinned when it is not)."""
    from importlib import metadata

    pins = []
    for name in names:
        try:
            pins.append(f"{name}=={metadata.version(name)}")
        except metadata.PackageNotFoundError:
            pins.append(name)
    return "".join(f"{p}\n" for p in pins)


def _locked_tensorflow(lock_text: str) -> str:
    """The TensorFlow version the lock pins ('' when it pins none)."""
    pinned = serving_deps.split(lock_text, {}, DEFAULT_PYTHON).tensorflow
    return pinned[1] if pinned else ""


def image_tools(config: Config, name: str, image: ImageConfig) -> tuple[str, ...]:
    """Extra runtime roots of one image, from what runs in it besides the main step.

    A train image of a project with tests runs pytest, and one whose Kubernetes pods read
    ``s3://`` data inputs downloads them (boto3); a serve image whose model is downloaded
    from object storage also runs the ``fetch-model`` init container, which verifies the
    model when it is signed.
    """
    if image.kind == "train":
        tests = TEST_ROOTS if config.declares("tests") else ()
        return tests + (FETCH_ROOTS if _pods_fetch_data(config, name) else ())
    if image.kind != "serve":
        return ()
    fetched = [m for m in image_models(config, name) if m.deploy.model_source.type == "s3"]
    if not fetched:
        return ()
    signed = any(m.evaluate is not None and m.evaluate.sign for m in fetched)
    return FETCH_ROOTS + (SIGN_ROOTS if signed else ())


def _pods_fetch_data(config: Config, image: str) -> bool:
    """A model trains in this image on Kubernetes and reads an ``s3://`` data input."""
    for model in config.models.values():
        train = model.train
        if train is None or train.effective_backend != "kubernetes":
            continue
        if (train.image or model.image) != image:
            continue
        if any(config.data[n].uri is not None for n in train.inputs if n in config.data):
            return True
    return False


def locked_names(lock_text: str) -> list[str]:
    """Distribution names pinned by a requirements lock (comments and options skipped)."""
    names = []
    for raw in lock_text.splitlines():
        line = raw.split("#", 1)[0].strip()
        if not line or line.startswith("-"):
            continue
        for sep in ("==", ">=", "<=", "~=", "!=", "<", ">", "[", ";", " ", "@"):
            line = line.split(sep, 1)[0]
        if line:
            names.append(line)
    return names


def tree_files(directory: Path, git_files: ProjectFiles | None = None) -> list[Path]:
    """Files under directory that belong in a build (git's view of code in a checkout,
    given as git_files; without it, or outside a checkout, the directory is walked).

    Artifacts (a SavedModel in the store) are git-ignored by design: walk those.
    """
    listed = git_files.list_files(directory) if git_files is not None else None
    if listed is None:
        listed = []
        for base, dirs, files in os.walk(directory):
            dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
            listed.extend(Path(base) / name for name in files)
    return sorted(
        p
        for p in listed
        if not (_SKIP_DIRS & set(p.relative_to(directory).parts)) and p.suffix != ".pyc"
    )


def _package_files() -> list[Path]:
    package = PACKAGE_DIR
    out: list[Path] = []
    # followlinks: package data may be symlinked from the repository (schemas/).
    for base, dirs, files in os.walk(package, followlinks=True):
        dirs[:] = sorted(d for d in dirs if d not in _SKIP_DIRS)
        out.extend(Path(base) / n for n in files if not n.endswith((".pyc", ".pyo")))
    return sorted(out)


def _relative_in_root(config: Config, path: Path, what: str) -> str:
    try:
        return path.resolve().relative_to(config.root.resolve()).as_posix()
    except ValueError:
        raise StepError(
            f"{what} {path} is outside the project root {config.root}; the build context "
            "holds only project files: move it inside the project"
        ) from None


def plan_image(
    config: Config,
    name: str,
    *,
    facts: TagFacts | None,
    artifact: ModelArtifact | None,
    hash_cache: FileHashCache | None = None,
    runtime_text: str | None = None,
    local: bool = False,
    git_files: ProjectFiles | None = None,
) -> ImagePlan:
    """Plan one image build. artifact is the SavedModel for serve/tfserving images.

    facts=None plans the content alone — digests, Dockerfile, context — without tags or
    labels (which need git); such a plan is for comparing digests, not for building.
    git_files is git's view of the project (``gitinfo``, asked by the caller): which code files
    go into the context, and which of them git does not track (a clean tree with untracked
    files in the image is not the commit alone). Without it the code is walked.
    runtime_text overrides the computed runtime pins (tests pin them explicitly). local
    marks an image built only to run here (see :func:`make_tag`).
    """
    if name not in config.images:
        known = ", ".join(config.images) or "none"
        raise StepError(f"unknown image '{name}'; this config declares: {known}")
    image = config.images[name]
    cache = hash_cache or FileHashCache(None)
    serving = image.kind in ("serve", "tfserving")
    model = served_model(config, name) if serving else None
    if serving and artifact is None:
        raise StepError(f"image '{name}' serves a model, but no trained model was given")
    python = image_python(config)

    files: dict[str, Path] = {}
    texts: dict[str, str] = {}
    requirement_files: list[str] = []
    no_deps_files: list[str] = []
    lock_text = ""
    if image.kind != "tfserving":
        files[f"code/app/{config.source_file.name}"] = config.source_file.resolve()
        if config.python.requirements:
            lock = config.resolve(config.python.requirements)
            if not lock.is_file():
                raise StepError(
                    f"python.requirements names {lock}, which does not exist; create the lock "
                    "(e.g. `uv pip compile requirements.in -o requirements.lock`)"
                )
            lock_text = lock.read_text(encoding="utf-8")
            files["deps/requirements/lock.txt"] = lock
            files[f"code/app/{_relative_in_root(config, lock, 'the lock')}"] = lock
            requirement_files.append("lock.txt")
        runtime = (
            runtime_text
            if runtime_text is not None
            else runtime_requirements(
                image.kind,
                python,
                locked_names(lock_text),
                extra_roots=image_tools(config, name, image),
            )
        )
        if runtime.strip():
            texts["deps/requirements/runtime.txt"] = runtime
            requirement_files.append("runtime.txt")
        if image.packages.pip:
            texts["deps/requirements/extra.txt"] = "".join(f"{p}\n" for p in image.packages.pip)
            requirement_files.append("extra.txt")
        if image.kind == "serve":
            texts["deps/requirements/nodeps.txt"] = installed_pins(serving_deps.NO_DEPS_ROOTS)
            no_deps_files.append("nodeps.txt")
        for path in _package_files():
            inside = path.relative_to(PACKAGE_DIR.parent)
            files[f"code/lib/{inside.as_posix()}"] = path
        for user in image_models(config, name):
            if user.train is None:
                continue
            source = config.resolve(user.train.source)
            if not source.is_dir():
                raise StepError(
                    f"models.{user.name}.train.source {source} is not a directory; fix the path"
                )
            prefix = _relative_in_root(config, source, f"models.{user.name}.train.source")
            for path in tree_files(source, git_files):
                rel = path.relative_to(source).as_posix()
                files[f"code/app/{rel}" if prefix == "." else f"code/app/{prefix}/{rel}"] = path
    if artifact is not None and serving:
        if not artifact.path.is_dir():
            raise StepError(
                f"the SavedModel of run {artifact.run_id} is missing at {artifact.path}; "
                f"retrain with `mlops train {artifact.model} --force`"
            )
        for path in tree_files(artifact.path):
            files[f"model/model/{path.relative_to(artifact.path).as_posix()}"] = path
        texts["model/run.json"] = _image_run_json(artifact)
        if artifact.drift_reference is not None:
            files[f"model/{DRIFT_REFERENCE}"] = artifact.drift_reference

    base = base_reference(image)
    template = dockerfiles.choose_template(config.root, image.kind, image.dockerfile)
    port = (
        TF_SERVING_REST_PORT
        if image.kind == "tfserving"
        else (model.serve.port if model is not None else 8501)
    )
    # A serve image installs the lock's serving subset (serve.txt, written at build time from
    # the wheels' metadata) instead of the whole lock; over a base that already has the
    # locked TensorFlow, the subset without TensorFlow's closure (serve-over-base.txt).
    split = image.kind == "serve" and "lock.txt" in requirement_files
    installed = ["serve.txt" if r == "lock.txt" and split else r for r in requirement_files]
    over_base = ["serve-over-base.txt" if r == "serve.txt" else r for r in installed]
    variables: dict[str, Any] = {
        "base": base,
        "kind": image.kind,
        "model": model.name if model else "",
        "python": "python3",
        "venv": VENV,
        "hermetic": image.hermetic,
        "requirement_files": requirement_files,
        "pip_requirements": " ".join(f"-r /tmp/mlops/requirements/{r}" for r in installed),
        "pip_requirements_over_base": " ".join(
            f"-r /tmp/mlops/requirements/{r}" for r in over_base
        ),
        "pip_no_deps": " ".join(f"-r /tmp/mlops/requirements/{r}" for r in no_deps_files),
        # The locked TensorFlow version a base may already carry ("" when not split).
        "base_tensorflow": _locked_tensorflow(lock_text) if split else "",
        "tensorflow_distributions": " ".join(sorted(serving_deps.TF_DISTRIBUTIONS)),
        "apt_packages": list(image.packages.apt),
        "user": image.user.name,
        "uid": image.user.uid,
        "port": port,
        "template": template.name,
        # Where `mlops serve` finds the drift reference inside the image ("" when none).
        "drift_reference": (
            f"/opt/mlops/{DRIFT_REFERENCE}"
            if artifact is not None and serving and artifact.drift_reference is not None
            else ""
        ),
    }
    text = dockerfiles.render(template, variables)
    texts["Dockerfile"] = text

    wheels = None
    if image.hermetic and requirement_files:
        reqs = {
            req: (lock_text if req == "lock.txt" else texts[f"deps/requirements/{req}"])
            for req in (*requirement_files, *no_deps_files)
        }
        platforms = wheel_platforms()
        wheels = WheelSpec(
            python,
            platforms,
            tuple(requirement_files),
            sha256_json({"reqs": reqs, "python": python, "platforms": platforms}),
            tuple(no_deps_files),
        )

    file_hashes = {arc: cache.file(path) for arc, path in sorted(files.items())}
    text_hashes = {arc: sha256_text(t) for arc, t in sorted(texts.items())}
    wheel_digest = wheels.digest if wheels else None
    digest = sha256_json(
        {
            "format": PLAN_FORMAT,
            "base": base,
            "files": file_hashes,
            "texts": text_hashes,
            "wheels": wheel_digest,
        }
    )
    environment = sha256_json(
        {
            "format": PLAN_FORMAT,
            "base": base,
            "dockerfile": text_hashes["Dockerfile"],
            "files": {arc: h for arc, h in file_hashes.items() if arc.startswith("deps/")},
            "texts": {arc: h for arc, h in text_hashes.items() if arc.startswith("deps/")},
            "wheels": wheel_digest,
        }
    )
    repository = f"{image.registry}/{image.repository}" if image.registry else image.repository
    tags: tuple[str, ...] = ()
    labels: dict[str, str] = {}
    if facts is not None and facts.commit and not facts.dirty:
        facts = _with_untracked(config, facts, files, git_files)
    if facts is not None:
        tag = make_tag(image.tag, facts, digest, model=model.name if model else name, local=local)
        tags = (tag,)
        labels = _labels(config, name, image, model, artifact, facts, digest, tag, base)
    return ImagePlan(
        image=name,
        kind=image.kind,
        model=model.name if model else None,
        base=base,
        repository=repository,
        tags=tags,
        dockerfile=text,
        template=str(template.path),
        template_origin=template.origin,
        labels=labels,
        input_digest=digest,
        files=files,
        texts=texts,
        wheels=wheels,
        artifact=artifact,
        uid=image.user.uid,
        size_budget_mb=image.size_budget_mb,
        git_commit=facts.commit if facts else None,
        registry=image.registry,
        hermetic=image.hermetic,
        environment_digest=environment,
        extra={"serving_split": True} if split else {},
    )


def _with_untracked(
    config: Config, facts: TagFacts, context: Mapping[str, Path], git_files: ProjectFiles | None
) -> TagFacts:
    """facts, plus the project files in the context that git does not track."""
    from dataclasses import replace

    if git_files is None:
        return facts
    root = config.root.resolve()
    project_files = [
        path.resolve().relative_to(root)
        for arc, path in context.items()
        if arc.startswith("code/app/") and path.resolve().is_relative_to(root)
    ]
    found = git_files.untracked(root, project_files)
    return (
        replace(facts, untracked=tuple(str(p.relative_to(root)) for p in found)) if found else facts
    )


def _labels(
    config: Config,
    name: str,
    image: ImageConfig,
    model: ModelConfig | None,
    artifact: ModelArtifact | None,
    facts: TagFacts,
    digest: str,
    tag: str,
    base: str,
) -> dict[str, str]:
    """OCI annotations plus the labels lineage and the build cache read back."""
    labels = {
        "org.opencontainers.image.created": _iso(facts.date),
        "org.opencontainers.image.title": image.repository,
        "org.opencontainers.image.description": config.project.description or config.project.name,
        "org.opencontainers.image.version": tag,
        "org.opencontainers.image.base.name": base,
        f"{LABEL_PREFIX}.image": name,
        f"{LABEL_PREFIX}.kind": image.kind,
        # Whether the base has CUDA (a TF -gpu variant, or base.gpu for a named image):
        # what a runtime or a reviewer checks before giving the image GPUs.
        f"{LABEL_PREFIX}.cuda": "true" if image.base.has_gpu else "false",
        f"{LABEL_PREFIX}.config-hash": (
            config.model_hash(model.name) if model else config.document_hash()
        ),
        INPUT_DIGEST_LABEL: digest,
    }
    if facts.commit:
        labels["org.opencontainers.image.revision"] = facts.commit
    if facts.source:
        labels["org.opencontainers.image.source"] = facts.source
    if model is not None:
        labels[f"{LABEL_PREFIX}.model"] = model.name
        if model.description:
            labels[f"{LABEL_PREFIX}.model-description"] = model.description
    if artifact is not None:
        labels[f"{LABEL_PREFIX}.model-hash"] = artifact.model_hash
        labels[f"{LABEL_PREFIX}.run-id"] = artifact.run_id
    labels.update(image.labels)  # the team's own labels win
    return labels


def _image_run_json(artifact: ModelArtifact) -> str:
    """The run record the server reads beside the model, without host paths or history."""
    git = (artifact.record.get("lineage") or {}).get("git") or {}
    record = {
        "run_id": artifact.run_id,
        "model": artifact.model,
        "model_dir": "model",
        "model_hash": artifact.model_hash,
        "signature": artifact.record.get("signature"),
        "lineage": {"git": {k: git.get(k) for k in ("commit", "dirty", "branch")}},
    }
    return json.dumps(record, indent=2, sort_keys=True) + "\n"


def _label_value(value: str) -> str:
    """A double-quoted Dockerfile value: JSON escapes, and '$' kept literal."""
    return json.dumps(value, ensure_ascii=False).replace("$", "\\$")


def _iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
