"""Plan a training run: effective params, resolved inputs and the cache key. Pure, offline.

The cache key works like a DVC stage's: it is the sha256 of everything that can change the
trained weights —

* the content of the declared code (``train.source``, the files git would track there),
* the effective params (after ``--param`` overrides), the seed and op determinism,
* the sha256 of every declared data input (of an ``s3://`` input: the declared one, so
  the key needs no download),
* the sha256 of the requirements lock (``python.requirements``),
* the train-relevant config (entrypoint, inputs, GPU request, container/image),
* with ``train.container: true``, the train image's environment digest (base, Dockerfile,
  requirements; not the code or config baked into it, which the key covers already),
* the key format version (bumped when the way we export models changes).

Settings that cannot change the weights (evaluation thresholds, deploy, rollout) stay out of
the key, so editing them does not retrain; the whole model's config hash is still recorded in
the run's lineage. Data files are hashed through :class:`FileHashCache`, which re-reads a file
only when its size or mtime changed.

Pure of git and the store: the caller passes the checkout's state (``git``, for the run's
lineage) and git's view of the files (``git_files``, for the train image's environment);
``drivers.training.plans`` reads them, and answers "which stored run would ``mlops train``
reuse right now?" — what the evaluate step needs — without importing TensorFlow.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlops_sessions.config import Config, ModelConfig, TrainConfig, units
from mlops_sessions.errors import StepError
from mlops_sessions.hashing import FileHashCache, sha256_json
from mlops_sessions.planning.datainputs import (
    ObjectInput,
    ObjectPlace,
    object_inputs,
    resolve_inputs,
)
from mlops_sessions.planning.sourcefacts import GitFacts, ProjectFiles, UnknownGit

# Bump when the executor's export or the key's composition changes: old runs then miss.
KEY_FORMAT = 1
STEP = "train"


@dataclass(frozen=True)
class TrainPlan:
    """Everything the train executor needs, and the key that identifies its result."""

    model: str
    key: str
    params: Mapping[str, Any]
    seed: int
    inputs: Mapping[str, Path]
    source: Path
    entrypoint: str
    deterministic: bool = True
    gpu: int = 0
    allow_cpu_fallback: bool = False
    timeout_s: float | None = None
    container: bool = False
    image: str | None = None
    environment_digest: str | None = None  # of the train image, when it runs in one
    # train.effective_backend: "local", "container" (then container is true) or "kubernetes".
    backend: str = "local"
    # Lineage parts (also the ingredients of the key).
    code_hash: str = ""
    data_hashes: Mapping[str, str] = field(default_factory=dict)
    requirements_hash: str | None = None
    config_hash: str = ""
    git: GitFacts = field(default_factory=UnknownGit)
    key_parts: Mapping[str, Any] = field(default_factory=dict)
    # data.<name>.description of each input: shown with the plan, never part of the key.
    data_descriptions: Mapping[str, str] = field(default_factory=dict)
    # The s3:// inputs: a step fetches the ones not cached (executors.s3.data) before a
    # local or container run; a Kubernetes pod fetches them itself.
    objects: Mapping[str, ObjectInput] = field(default_factory=dict)

    @property
    def pending_objects(self) -> list[ObjectInput]:
        """The s3:// inputs whose checked copy is not in the store's cache yet."""
        return [obj for obj in self.objects.values() if not obj.cached]

    @property
    def short_key(self) -> str:
        return self.key[:8]

    def run_fields(self) -> dict[str, Any]:
        """What every run.json says about the plan it ran, wherever it ran (here, in a
        container, on the cluster); the steps add status, timings and the outcome."""
        return {
            "model": self.model,
            "key": self.key,
            "params": dict(self.params),
            "seed": self.seed,
            "deterministic": self.deterministic,
            "entrypoint": self.entrypoint,
            "inputs": {
                name: {
                    "path": str(path),
                    "sha256": self.data_hashes[name],
                    **({"uri": self.objects[name].uri} if name in self.objects else {}),
                }
                for name, path in self.inputs.items()
            },
            "model_dir": "model",
        }

    def to_spec(self) -> dict[str, Any]:
        """The JSON spec a train process reads (``python -m mlops_sessions.executors.tf.train``
        in the train image): what running needs, not the lineage, which stays on the host."""
        return {
            "model": self.model,
            "key": self.key,
            "entrypoint": self.entrypoint,
            "source": str(self.source),
            "params": dict(self.params),
            "seed": self.seed,
            "inputs": {name: str(path) for name, path in self.inputs.items()},
            "deterministic": self.deterministic,
            "gpu": self.gpu,
            "allow_cpu_fallback": self.allow_cpu_fallback,
            "timeout_s": self.timeout_s,
        }

    @classmethod
    def from_spec(cls, spec: Mapping[str, Any]) -> TrainPlan:
        """The plan :meth:`to_spec` wrote (paths as the reading process sees them)."""
        return cls(
            model=str(spec["model"]),
            key=str(spec["key"]),
            params=dict(spec["params"]),
            seed=int(spec["seed"]),
            inputs={name: Path(path) for name, path in spec["inputs"].items()},
            source=Path(spec["source"]),
            entrypoint=str(spec["entrypoint"]),
            deterministic=bool(spec["deterministic"]),
            gpu=int(spec["gpu"]),
            allow_cpu_fallback=bool(spec["allow_cpu_fallback"]),
            timeout_s=spec.get("timeout_s"),
        )

    def lineage(self) -> dict[str, Any]:
        """The lineage block of run.json, minus the environment (known only at run time)."""
        return {
            "git": self.git.as_dict(),
            "config_hash": self.config_hash,
            "code_hash": self.code_hash,
            "data_hashes": dict(self.data_hashes),
            "requirements_hash": self.requirements_hash,
            **(
                {"image": {"name": self.image, "environment_digest": self.environment_digest}}
                if self.backend != "local"
                else {}
            ),
        }

    def describe(self) -> dict[str, Any]:
        """JSON-friendly summary for --dry-run and logs."""
        return {
            "model": self.model,
            "key": self.key,
            "entrypoint": self.entrypoint,
            "source": str(self.source),
            "params": dict(self.params),
            "seed": self.seed,
            "deterministic": self.deterministic,
            "gpu": self.gpu,
            "container": self.container,
            "backend": self.backend,
            "image": self.image,
            "inputs": {name: str(path) for name, path in self.inputs.items()},
            "data": dict(self.data_descriptions),
            "objects": {name: obj.describe() for name, obj in self.objects.items()},
            "lineage": self.lineage(),
        }


def parse_duration(text: str) -> float:
    """Seconds in a schema duration such as '500ms', '30s', '5m' or '1h' (see config.units)."""
    try:
        return units.duration_seconds(text)
    except units.UnitError:
        raise StepError(
            f"cannot read duration '{text}'; write it like '500ms', '30s' or '5m'"
        ) from None


def apply_overrides(params: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """params with overrides applied; 'a.b' keys reach into nested mappings.

    An override for a key the config does not declare is refused: it is almost always a
    typo, and a silently ignored hyper-parameter would still change the cache key.
    """
    merged: dict[str, Any] = copy.deepcopy(dict(params))
    for dotted, value in overrides.items():
        parts = dotted.split(".")
        target: dict[str, Any] = merged
        for depth, part in enumerate(parts):
            if part not in target:
                known = ", ".join(sorted(target)) or "none"
                where = ".".join(parts[:depth]) or "train.params"
                raise StepError(
                    f"--param {dotted}: '{part}' is not a param of {where} (declared: {known}); "
                    "add it to train.params in mlops.yaml first"
                )
            if depth == len(parts) - 1:
                target[part] = value
            elif isinstance(target[part], dict):
                target = target[part]
            else:
                parent = ".".join(parts[: depth + 1])
                raise StepError(f"--param {dotted}: '{parent}' is not a mapping")
    return merged


def train_config(model: ModelConfig) -> TrainConfig:
    if model.train is None:
        raise StepError(f"model '{model.name}' has no 'train' section; add one to train it")
    return model.train


def plan_training(
    config: Config,
    model: ModelConfig,
    *,
    params_override: Mapping[str, Any] | None = None,
    hash_cache: FileHashCache | None = None,
    git: GitFacts | None = None,
    git_files: ProjectFiles | None = None,
    data_place: ObjectPlace | None = None,
) -> TrainPlan:
    """Resolve inputs, hash everything that can change the result, and compute the key.

    git is the checkout's state for the lineage (unknown when not given); git_files git's
    view of the files, for the train image's environment digest; data_place the data
    cache's layout (needed for ``s3://`` inputs). hash_cache is the
    store's file-hash memo (a fresh one in memory when not given; the caller saves it).
    """
    train = train_config(model)
    cache = hash_cache if hash_cache is not None else FileHashCache(None)
    params = apply_overrides(train.params, params_override or {})
    source = config.resolve(train.source)
    if not source.is_dir():
        raise StepError(
            f"model '{model.name}': train.source {source} is not a directory; point it at the "
            "folder that holds the training code (relative to mlops.yaml)"
        )
    inputs = resolve_inputs(config, train.inputs, data_place)
    objects = object_inputs(config, train.inputs, data_place, cache)
    data_hashes = {
        name: objects[name].sha256 if name in objects else hash_data(cache, path)
        for name, path in inputs.items()
    }
    code_hash = cache.tree(source)
    lock_hash = requirements_hash(config, cache)
    image = (train.image or model.image) if train.in_image else None
    environment = environment_digest(config, image, cache, git_files) if image else None
    relevant = {
        "entrypoint": train.entrypoint,
        "seed": train.seed,
        "deterministic": train.deterministic,
        "inputs": list(train.inputs),
        "gpu": train.resources.gpu,
        # True for both image backends: a Kubernetes Job runs the container run's image
        # and code, so the two share keys (and runs), as backend: container and
        # container: true do.
        "container": train.in_image,
        "image": image,
    }
    from mlops_sessions.version import __version__

    key_parts: dict[str, Any] = {
        "format": KEY_FORMAT,
        "mlops_sessions": __version__,
        "model": model.name,
        "config": relevant,
        "params": params,
        "code": code_hash,
        "data": data_hashes,
        "requirements": lock_hash,
        # Only container runs have one; venv runs keep the keys they always had.
        **({"environment": environment} if environment else {}),
    }
    return TrainPlan(
        model=model.name,
        key=sha256_json(key_parts),
        params=params,
        seed=train.seed,
        inputs=inputs,
        source=source,
        entrypoint=train.entrypoint,
        deterministic=train.deterministic,
        gpu=train.resources.gpu,
        allow_cpu_fallback=train.allow_cpu_fallback,
        timeout_s=parse_duration(train.timeout) if train.timeout else None,
        container=train.effective_backend == "container",
        backend=train.effective_backend,
        image=image,
        environment_digest=environment,
        code_hash=code_hash,
        data_hashes=data_hashes,
        requirements_hash=lock_hash,
        config_hash=config.model_hash(model.name),
        git=git if git is not None else UnknownGit(),
        key_parts=key_parts,
        data_descriptions={
            name: config.data[name].description
            for name in inputs
            if name in config.data and config.data[name].description
        },
        objects=objects,
    )


def environment_digest(
    config: Config, image: str, cache: FileHashCache, git_files: ProjectFiles | None = None
) -> str:
    """The environment digest of the image a model trains in (planned, not built)."""
    from mlops_sessions.planning.images import plan_image

    planned = plan_image(
        config, image, facts=None, artifact=None, hash_cache=cache, git_files=git_files
    )
    return planned.environment_digest


def requirements_hash(config: Config, cache: FileHashCache) -> str | None:
    if config.python.requirements is None:
        return None
    path = config.resolve(config.python.requirements)
    if not path.is_file():
        raise StepError(
            f"python.requirements names {path}, which does not exist; lock the requirements "
            "(e.g. `uv pip compile requirements.in -o requirements.lock`) or fix the path"
        )
    return cache.file(path)


def hash_data(cache: FileHashCache, path: Path) -> str:
    """sha256 of a data file, or of every file under a data directory.

    Directories are walked directly rather than through git: data folders are usually
    git-ignored, and an ignored file must still count.
    """
    return cache.tree(path, git_aware=False) if path.is_dir() else cache.file(path)
