"""Fixtures for the image-signing tests: the real cosign and syft on PATH, key pairs made at
run time (never committed), and a project whose one small image is built by the session's
dockerd, pushed to its registry and signed by ``mlops push`` — built once per module and
shared by the module's tests (dockerd work is the slow part).

The Docker engine and the registry are the suite's one ``docker_env``
(tests/fixtures/docker.py). The deploy.verify tests, which need the real control plane,
live in tests/kube/test_deploy_verify_real.py and use ``signed`` and ``signing_tools`` from
here.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import subprocess
import tarfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.cluster import components
from tests.conftest import require_real
from tests.fixtures.docker import BASE_IMAGE, DockerEnv
from tests.images.conftest import SMALL_LOCK, Project, git

MODEL = "tiny"
RUN_ID = "20260101T000000Z-5a5a5a5a"
EVAL_ID = "20260101T000100Z-abcdef"
MODEL_HASH = "cd" * 32
DATA_HASH = "sha256:" + "11" * 32


# Module scope, not session: tests/kube/test_deploy_verify_real.py imports this fixture, and
# a session fixture imported into a second place would be set up twice.
@pytest.fixture(scope="module")
def signing_tools() -> Iterator[None]:
    """cosign and syft, as the test components build them (`python -m tests.cluster
    build`), first on PATH for the module."""
    missing = [
        f"{tool} ({directory})"
        for tool, directory in (
            ("cosign", components.cosign_bin_dir()),
            ("syft", components.syft_bin_dir()),
        )
        if not (directory / tool).is_file()
    ]
    if missing:
        require_real(f"not built: {', '.join(missing)}; run `python -m tests.cluster build`")
    previous = os.environ.get("PATH", "")
    extra = f"{components.cosign_bin_dir()}{os.pathsep}{components.syft_bin_dir()}"
    os.environ["PATH"] = f"{extra}{os.pathsep}{previous}"
    # The generated keys have an empty password; cosign reads it from here.
    had_password = os.environ.get("COSIGN_PASSWORD")
    os.environ["COSIGN_PASSWORD"] = ""
    try:
        yield
    finally:
        os.environ["PATH"] = previous
        if had_password is None:
            os.environ.pop("COSIGN_PASSWORD", None)
        else:
            os.environ["COSIGN_PASSWORD"] = had_password


@dataclass(frozen=True)
class KeyPair:
    private: Path
    public: Path


def make_key_pair(directory: Path) -> KeyPair:
    """`cosign generate-key-pair` (empty password) in directory."""
    directory.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["cosign", "generate-key-pair"],
        cwd=directory,
        env={**os.environ, "COSIGN_PASSWORD": ""},
        capture_output=True,
        check=True,
        timeout=60,
    )
    return KeyPair(directory / "cosign.key", directory / "cosign.pub")


@dataclass
class SignedProject:
    """A project with a signed, pushed image; ``pushed`` is its push record."""

    project: Project
    env: DockerEnv
    keys: KeyPair
    other_keys: KeyPair
    pushed: dict[str, Any]
    # Where deploy.namespace points: the tests on the real control plane set a namespace
    # of their own per test.
    namespace: str = "ml"
    # The registry path its image is pushed under: one per test module, because the session
    # shares one registry and every module builds the same digest (a second module's
    # signatures would otherwise pile onto the first's .sig and .att tags).
    registry_path: str = "ml"

    @property
    def root(self) -> Path:
        return self.project.root

    def mlops(self, *argv: str) -> tuple[int, dict[str, Any] | None, str]:
        return self.project.mlops(*argv)

    def write_config(self, **changes: Any) -> None:
        """Rewrite mlops.yaml: image sign / deploy verify settings (None removes one)."""
        write_config(
            self.root,
            self.env,
            namespace=self.namespace,
            registry_path=self.registry_path,
            **changes,
        )


def write_config(
    root: Path,
    env: DockerEnv,
    *,
    sign: dict[str, Any] | None = None,
    verify: dict[str, Any] | None = None,
    rollout: bool = False,
    namespace: str = "ml",
    registry_path: str = "ml",
) -> None:
    """mlops.yaml of the signing project; rollout adds progressive rollout steps."""
    image: dict[str, Any] = {
        "kind": "serve",
        "registry": f"{env.registry}/{registry_path}",
        "repository": "tiny-serve",
        "base": {"image": BASE_IMAGE},
        "size_budget_mb": 2000,
    }
    if sign is not None:
        image["sign"] = sign
    deploy: dict[str, Any] = {"namespace": namespace, "replicas": 1, "rollout_timeout": "20s"}
    if verify is not None:
        deploy["verify"] = verify
    doc = {
        "apiVersion": "mlops/v1alpha1",
        "project": {"name": "tiny", "description": "signing tests"},
        "python": {"requirements": "requirements.lock"},
        "images": {"serve": image},
        "models": {
            MODEL: {
                "image": "serve",
                "train": {"source": "src", "entrypoint": "tiny_model:train"},
                "deploy": deploy,
            }
        },
    }
    if rollout:
        doc["models"][MODEL]["rollout"] = {
            "hosts": ["tiny.ml.example.com"],
            "canary": {"replicas": 1},
            "steps": [50, 100],
            "analysis": {
                "prometheus": "http://127.0.0.1:9",  # never asked: the rollout is refused first
                "interval": "1s",
                "min_requests": 20,
                "failure_limit": 1,
                "thresholds": {"error_rate": {"max": 0.01}},
            },
        }
    (root / "mlops.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))


def make_signed_project(root: Path, env: DockerEnv, registry_path: str = "ml") -> Project:
    """A git project with a trained, evaluated (pass) and blessed run, and key pairs."""
    from mlops_sessions.records import evaluations
    from mlops_sessions.records.store import Store

    (root / "src").mkdir(parents=True)
    (root / "src" / "tiny_model.py").write_text('"""Model code."""\n\nVERSION = 1\n')
    (root / "requirements.lock").write_text(SMALL_LOCK)
    (root / ".gitignore").write_text("keys/\n.mlops/\n")
    write_config(
        root,
        env,
        sign={"key": "keys/cosign.key"},
        verify={"key": "keys/cosign.pub"},
        registry_path=registry_path,
    )
    store = Store(root / ".mlops")
    with store.staging(store.run_dir(RUN_ID)) as stage:
        (stage / "model" / "variables").mkdir(parents=True)
        (stage / "model" / "saved_model.pb").write_bytes(b"\x08\x01stand-in graph")
        (stage / "model" / "variables" / "variables.index").write_bytes(b"index")
        record = {
            "run_id": RUN_ID,
            "model": MODEL,
            "status": "complete",
            "model_dir": "model",
            "model_hash": MODEL_HASH,
            "finished_at": "2026-01-01T00:00:00Z",
            "lineage": {
                "git": {"commit": None, "dirty": None, "branch": None},
                "data_hashes": {"train": DATA_HASH},
            },
        }
        (stage / "run.json").write_text(json.dumps(record))
    eval_dir = evaluations.eval_dir(store.root, RUN_ID) / EVAL_ID
    eval_dir.parent.mkdir(parents=True, exist_ok=True)
    with store.staging(eval_dir) as stage:
        check = {"metric": "accuracy", "value": 0.93, "passed": True, "failures": []}
        evaluations.write_evaluation(
            stage,
            metrics={"values": {"accuracy": 0.93, "loss": 0.2}},
            verdict={"passed": True, "result": "pass", "metrics": {"accuracy": check}},
            report_md="# pass\n",
            report_html="<p>pass</p>\n",
        )
    store.bless(MODEL, {"run_id": RUN_ID, "model_hash": MODEL_HASH, "eval_id": EVAL_ID})
    git(root, "init", "-q")
    git(root, "remote", "add", "origin", "https://user:secret@git.example.com/team/tiny.git")
    git(root, "add", "-A")
    git(root, "commit", "-q", "-m", "initial")
    return Project(root, root / "mlops.yaml", RUN_ID)


@pytest.fixture(scope="module")
def signed(
    docker_env: DockerEnv,
    signing_tools: None,
    tmp_path_factory: pytest.TempPathFactory,
    request: pytest.FixtureRequest,
) -> SignedProject:
    """The module's one image: built, scanned, pushed and signed by `mlops push`, under a
    registry path of the module's own (e.g. 127.0.0.1:<port>/test-push-signing)."""
    registry_path = request.module.__name__.rsplit(".", 1)[-1].replace("_", "-")
    root = tmp_path_factory.mktemp("signed") / "proj"
    project = make_signed_project(root, docker_env, registry_path)
    keys = make_key_pair(root / "keys")
    other = make_key_pair(root.parent / "other-keys")
    code, _, log = project.mlops("build")
    assert code == 0, log[-3000:]
    code, result, log = project.mlops("push")
    assert code == 0, log[-3000:]
    assert result is not None
    (pushed,) = result["images"]
    return SignedProject(project, docker_env, keys, other, pushed, registry_path=registry_path)


# --- images made without Docker: distinct digests for the refusal cases -----------------------


def push_small_image(registry: str, repository: str, tag: str, content: str) -> str:
    """Push a one-file OCI image through the registry's HTTP API; its manifest digest.

    The refusal cases need many distinct digests and no runnable content; dockerd builds
    only the module's one real image."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as tar:
        data = content.encode()
        info = tarfile.TarInfo("content.txt")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    layer_digest, layer_size = _upload(registry, repository, layer.getvalue())
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
            "config": {},
        }
    ).encode()
    config_digest, config_size = _upload(registry, repository, config)
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": config_digest,
                "size": config_size,
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": layer_size,
                }
            ],
        }
    ).encode()
    request = urllib.request.Request(
        f"http://{registry}/v2/{repository}/manifests/{tag}",
        data=manifest,
        method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"},
    )
    with contextlib.closing(urllib.request.urlopen(request, timeout=30)) as reply:
        return str(reply.headers["Docker-Content-Digest"])


def _upload(registry: str, repository: str, data: bytes) -> tuple[str, int]:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = urllib.request.Request(
        f"http://{registry}/v2/{repository}/blobs/uploads/", method="POST"
    )
    with contextlib.closing(urllib.request.urlopen(start, timeout=30)) as reply:
        location = reply.headers["Location"]
    if location.startswith("/"):
        location = f"http://{registry}{location}"
    joiner = "&" if "?" in location else "?"
    put = urllib.request.Request(
        f"{location}{joiner}digest={digest}",
        data=data,
        method="PUT",
        headers={"Content-Type": "application/octet-stream"},
    )
    with contextlib.closing(urllib.request.urlopen(put, timeout=30)):
        pass
    return digest, len(data)
