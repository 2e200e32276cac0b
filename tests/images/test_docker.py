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


# Locked distributions that only training needs: none may be in a serve image.
TRAINING_ONLY = ("scikit-learn", "scipy", "joblib", "threadpoolctl")
LIST_DISTRIBUTIONS = (
    "import importlib.metadata as m, json, sys; "
    "print(json.dumps([[d.metadata['Name'], d.version, str(d.locate_file(''))] "
    "for d in m.distributions()]))"
)


def test_real_serve_image_with_tensorflow_answers_predictions(
    make_project: ProjectFactory, real_model: Path, client: Any
) -> None:
    """The example-style image on a slim base (Debian's python3, no TensorFlow): TensorFlow
    once, from the locked wheel; the lock's serving subset only; REST and gRPC answer."""
    project = make_project(lock=REPO_LOCK.read_text(), model_dir=real_model, name="real")
    built, log = build(project)
    assert "base has no TensorFlow: installing the locked 2.21.0" in log, log[-3000:]
    assert "left out (training only):" in log and "scikit-learn" in log
    image = client.images.get(built["image_id"])
    size_mb = image.attrs["Size"] / 1e6
    # What is installed, seen by the image's own Python (the venv and the base's).
    listed = client.containers.run(
        built["image_id"], ["python", "-c", LIST_DISTRIBUTIONS], remove=True
    )
    installed = json.loads(listed)
    names = [str(name).lower().replace("_", "-") for name, _, _ in installed]
    tensorflows = [n for n in names if n in ("tensorflow", "tensorflow-cpu", "tensorflow-intel")]
    assert tensorflows == ["tensorflow-cpu"], installed
    assert not set(TRAINING_ONLY) & set(names), sorted(set(TRAINING_ONLY) & set(names))
    assert "tensorflow-serving-api" in names and "grpcio-health-checking" in names
    # And nowhere on disk a second TensorFlow (a venv may hide the base's from Python).
    found = client.containers.run(
        built["image_id"],
        ["sh", "-c", "find / -xdev -type d -name 'tensorflow*.dist-info' 2>/dev/null"],
        remove=True,
        user="0",
    ).decode()
    copies = [line for line in found.split() if "serving_api" not in line]
    assert len(copies) == 1, found
    port, grpc_port = free_port(), free_port()
    started = time.monotonic()
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
            "--grpc-port",
            str(grpc_port),
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
                time.sleep(0.1)
        ready_s = time.monotonic() - started
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
        (answer,) = _grpc_predict(grpc_port, [[0.1, 0.2, 0.3, 0.4]])
        assert answer == pytest.approx(predictions[0], rel=1e-6)
    finally:
        container.remove(force=True)
    # The figures benchmarks/README.md reports (pytest -s shows them).
    print(f"\n[serve image] size {size_mb:.0f} MB, container start -> /ready {ready_s:.1f} s")


def _grpc_predict(port: int, rows: list[list[float]]) -> list[list[float]]:
    """Predict through TF Serving's own client stubs."""
    grpc = pytest.importorskip("grpc")
    import numpy as np
    from tensorflow.core.framework import tensor_pb2, types_pb2
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    values = np.asarray(rows, np.float32)
    request = predict_pb2.PredictRequest()
    request.model_spec.name = "tiny"
    proto = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, tensor_content=values.tobytes())
    for size in values.shape:
        proto.tensor_shape.dim.add(size=size)
    request.inputs["features"].CopyFrom(proto)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        reply = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(
            request, timeout=30
        )
    (output,) = reply.outputs.values()
    shape = [d.size for d in output.tensor_shape.dim]
    result: list[list[float]] = (
        np.frombuffer(output.tensor_content, np.float32).reshape(shape).tolist()
    )
    return result
