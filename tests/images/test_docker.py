"""Build, scan and push with a real Docker engine and a real registry.

Every test here uses the session's dockerd + docker-registry (see conftest.py). Builds use
a small lock (numpy) so they take seconds once the shared dependency layer is cached;
one test builds the real TensorFlow serve image from hermetic wheels.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from docker.errors import ImageNotFound

from tests.images.conftest import DockerEnv, Project, ProjectFactory, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def client(docker_client: Any) -> Any:
    return docker_client


def registry_image(env: DockerEnv, **extra: object) -> dict[str, object]:
    return {"registry": f"{env.registry}/ml", **extra}


def build(project: Project, *args: str) -> tuple[dict[str, Any], str]:
    code, result, log = project.mlops("build", *args)
    assert code == 0, log[-3000:]
    assert result is not None
    (entry,) = result["images"]
    return entry, log


def test_build_push_and_pull_by_digest(
    docker_env: DockerEnv, make_project: ProjectFactory, client: Any
) -> None:
    project = make_project(image=registry_image(docker_env))
    built, _ = build(project)
    image = client.images.get(built["image_id"])
    # Non-root by the image's own config, with the lineage labels.
    assert image.attrs["Config"]["User"] == "10001:10001"
    assert image.labels["org.mlops-sessions.run-id"] == project.run_id
    assert image.labels["org.opencontainers.image.revision"] == built["git_commit"]
    assert image.attrs["Config"]["Healthcheck"]["Test"][0] == "CMD"
    # The code inside runs, as that user, without network.
    output = client.containers.run(
        image.id,
        ["sh", "-c", "id -u && python -m mlops_sessions validate && cat /opt/mlops/run.json"],
        network_mode="none",
        remove=True,
    ).decode()
    assert output.startswith("10001\n") and "valid" in output
    assert json.loads(output.split("\n", 2)[2])["run_id"] == project.run_id

    code, result, log = project.mlops("push")
    assert code == 0, log[-2000:]
    assert result is not None
    (pushed,) = result["images"]
    assert re.fullmatch(
        rf"{docker_env.registry}/ml/tiny-serve@sha256:[0-9a-f]{{64}}", pushed["image"]
    )
    latest = json.loads((project.root / ".mlops/builds/serve/latest.json").read_text())
    assert latest["image"] == pushed["image"]
    assert latest["model_hash"] == "ab" * 32 and latest["run_id"] == project.run_id
    assert latest["git_commit"] == built["git_commit"]
    history = (project.root / ".mlops/builds/serve/history.jsonl").read_text().splitlines()
    assert json.loads(history[-1])["image"] == pushed["image"]
    scan = json.loads((project.root / ".mlops/builds/serve/scan.json").read_text())
    assert scan["passed"] is True and scan["image_id"] == built["image_id"]
    # The run's lineage now ends at the pushed image.
    code, trace, log = project.mlops("lineage", project.run_id)
    assert code == 0 and trace is not None, log
    (traced,) = trace["runs"][0]["images"]
    assert traced["image_id"] == built["image_id"] and traced["pushed"] == [pushed["image"]]

    # Pull by digest into a clean engine state: the registry really holds the image.
    for ref in built["refs"]:
        client.images.remove(ref, force=True)
    with contextlib.suppress(ImageNotFound):
        client.images.remove(built["image_id"], force=True)
    with pytest.raises(ImageNotFound):
        client.images.get(built["image_id"])
    pulled = client.images.pull(pushed["image"])
    assert pulled.labels["org.mlops-sessions.input-digest"] == built["input_digest"]


def test_unchanged_tree_builds_nothing_and_code_change_rebuilds_only_code(
    docker_env: DockerEnv, make_project: ProjectFactory
) -> None:
    project = make_project()
    first, _ = build(project)
    started = time.monotonic()
    again, _ = build(project)
    assert again["skipped"] is True and again["image_id"] == first["image_id"]
    assert time.monotonic() - started < 10

    project.write("src/tiny_model.py", '"""Model code."""\n\nVERSION = 2\n')
    project.commit("code change")
    changed, log = build(project)
    assert changed["skipped"] is False and changed["image_id"] != first["image_id"]
    steps = re.split(r"^Step \d+/\d+ : ", log, flags=re.M)[1:]
    cached = [s.splitlines()[0] for s in steps if "Using cache" in s]
    rebuilt = [
        s.splitlines()[0] for s in steps if "Using cache" not in s and not s.startswith("FROM ")
    ]
    # Everything up to the venv copy came from the cache; the code layer and later did not.
    assert any(s.startswith("RUN export PIP_") for s in cached)
    assert any(s.startswith("COPY --from=deps") for s in cached)
    assert rebuilt[0].startswith("COPY code/")
    assert all(s.startswith(("COPY code/", "COPY model/", "LABEL ")) for s in rebuilt)


def test_planted_secret_is_caught_and_blocks_push(
    docker_env: DockerEnv, make_project: ProjectFactory
) -> None:
    project = make_project(image=registry_image(docker_env))
    key = (
        "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA\n"
        "-----END OPENSSH PRIVATE KEY-----\n"
    )
    project.write("src/deploy_helper.txt", key)  # a secret string in an innocent name
    project.write("src/.env", "AWS_ACCESS_KEY_ID=AKIAABCDEFGHIJKLMNOP\n")
    project.commit("oops")
    build(project)
    code, result, _ = project.mlops("scan")
    assert code == 1 and result is not None
    (report,) = result["images"]
    secrets = next(c for c in report["checks"] if c["name"] == "secrets")
    assert not secrets["passed"]
    found = "\n".join(secrets["findings"])
    assert "/opt/mlops/app/src/.env (file name)" in found
    assert "/opt/mlops/app/src/deploy_helper.txt (private key)" in found
    code, _, err = project.mlops("push")
    assert code == 1
    assert "push of 'serve' blocked" in err and "deploy.secrets" in err
    assert not (project.root / ".mlops/builds/serve/latest.json").exists()


def test_size_budget_and_missing_trivy_fail_the_scan(
    docker_env: DockerEnv, make_project: ProjectFactory
) -> None:
    project = make_project(image={"size_budget_mb": 10, "scan": {"trivy": True}})
    build(project)
    code, result, _ = project.mlops("scan")
    assert code == 1 and result is not None
    checks = {c["name"]: c for c in result["images"][0]["checks"]}
    assert checks["non-root"]["passed"]
    assert not checks["size"]["passed"] and "size_budget_mb" in checks["size"]["detail"]
    assert not checks["trivy"]["passed"] and "trivy not installed" in checks["trivy"]["detail"]


def test_bad_inputs_name_the_fix(
    docker_env: DockerEnv, make_project: ProjectFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    unknown = make_project(image={"base": {"image": "no-such-base:1.0"}}, name="unknown")
    code, _, err = unknown.mlops("build")
    assert code == 1
    assert "base image 'no-such-base:1.0' is not on this Docker engine" in err
    assert "images.serve.base" in err

    failing = make_project(image={"dockerfile": "Dockerfile.j2"}, name="failing")
    failing.write(
        "Dockerfile.j2",
        "FROM {{ base }}\nRUN echo preparing && exit 3\nUSER {{ uid }}\n",
    )
    failing.commit("template")
    code, _, err = failing.mlops("build")
    assert code == 1
    assert "failed at Step 2/" in err and "returned a non-zero code: 3" in err
    assert "preparing" in err and "Dockerfile.j2" in err

    unreachable = make_project(image={"registry": f"127.0.0.1:{free_port()}/ml"}, name="nowhere")
    build(unreachable)
    code, _, err = unreachable.mlops("push")
    assert code == 1
    assert "cannot push" in err and "images.serve.registry" in err

    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    code, _, err = unreachable.mlops("build", "--no-cache")
    assert code == 1
    assert "cannot reach the Docker engine at unix:///nonexistent/docker.sock" in err
    assert "start dockerd" in err


REPO_LOCK = Path(__file__).resolve().parents[2] / "requirements.lock"


def test_real_serve_image_with_tensorflow_answers_predictions(
    make_project: ProjectFactory, real_model: Path, client: Any
) -> None:
    """The example-style image: TensorFlow from hermetic wheels, the built-in server inside."""
    project = make_project(lock=REPO_LOCK.read_text(), model_dir=real_model, name="real")
    built, _ = build(project)
    port = free_port()
    container = client.containers.run(
        built["image_id"],
        [
            "python",
            "-m",
            "mlops_sessions",
            "serve",
            "tiny",
            "--model-dir",
            "/opt/mlops/model",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        network_mode="host",
        detach=True,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/ready", timeout=2):
                    break
            except OSError:
                container.reload()
                assert container.status == "running", container.logs().decode()[-2000:]
                assert time.monotonic() < deadline, container.logs().decode()[-2000:]
                time.sleep(1)
        body = json.dumps({"instances": [[0.1, 0.2, 0.3, 0.4]]}).encode()
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/models/tiny:predict",
            data=body,
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=30) as reply:
            predictions = json.loads(reply.read())["predictions"]
        assert len(predictions) == 1 and len(predictions[0]) == 2
        assert abs(sum(predictions[0]) - 1.0) < 1e-5
    finally:
        container.remove(force=True)
