"""``s3://`` data inputs: declared sha256 in the key, fetched once into the store, checked.

Against a real S3 API (moto's server, tests/fixtures/moto.py): ``mlops train`` fetches the
object into ``.mlops/data/<sha256>/<file>`` and trains on it; a cached copy is reused with
the endpoint unreachable; a digest mismatch, a missing object, no credentials and an
unreachable endpoint are one line each and leave nothing cached. Planning needs no
download (the key follows the declared sha256). On Kubernetes the pod fetches the object
itself into its scratch directory (``drivers.train_pod.resolve_inputs``), and the
rendered Job still validates against the official schemas.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.config.loader import load
from mlops_sessions.drivers.training.plans import plan_run
from mlops_sessions.errors import StepError
from mlops_sessions.planning import container_run, k8s_validate, train_job
from tests.fixtures.moto import HOST, free_port, isolate_s3_env, moto

boto3 = pytest.importorskip("boto3")

__all__ = ["moto"]  # the module-scoped fixture the tests below use

Factory = Callable[..., Any]
KEY = "datasets/toy/toy.csv"


@dataclasses.dataclass
class Bucket:
    endpoint: str
    name: str
    client: Any

    def put(self, key: str, data: bytes) -> str:
        self.client.put_object(Bucket=self.name, Key=key, Body=data)
        return hashlib.sha256(data).hexdigest()

    def uri(self, key: str = KEY) -> str:
        return f"s3://{self.name}/{key}"


@pytest.fixture
def bucket(
    moto: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, request: pytest.FixtureRequest
) -> Bucket:
    """A fresh bucket; the endpoint reaches the product the way a MinIO user sets it."""
    isolate_s3_env(monkeypatch, tmp_path, "AKIDDATAINPUTS", "data-inputs-secret")
    monkeypatch.setenv("MLOPS_STORE_ENDPOINT", moto)
    monkeypatch.setenv("MLOPS_STORE_RETRIES", "1")
    client = boto3.client("s3", endpoint_url=moto)
    name = f"data-{abs(hash(request.node.nodeid)) % 10**10}"
    client.create_bucket(Bucket=name)
    return Bucket(moto, name, client)


def use_s3_input(project: Any, uri: str, sha256: str) -> None:
    """Point data.toy of a toy project at uri (the local copy is removed)."""
    doc = yaml.safe_load(project.config.read_text())
    doc["data"]["toy"] = {"uri": uri, "sha256": sha256, "description": "toy table"}
    project.config.write_text(yaml.safe_dump(doc, sort_keys=False))
    (project.root / "data" / "toy.csv").unlink(missing_ok=True)


def data_files(project: Any) -> list[str]:
    """Everything under the store's data cache (temp files and locks included)."""
    root = project.store / "data"
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


def unreachable() -> str:
    return f"http://{HOST}:{free_port()}"  # nothing listens there


@pytest.mark.slow
def test_training_fetches_the_object_once_then_needs_no_s3(
    toy_project: Factory,
    bucket: Bucket,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project = toy_project()
    data = (project.root / "data" / "toy.csv").read_bytes()
    sha = bucket.put(KEY, data)
    use_s3_input(project, bucket.uri(), sha)

    code, result, err = project.train(capsys=capsys)
    assert code == 0, err
    assert f"[toy] data input 'toy': fetching {bucket.uri()}" in err
    cached = project.store / "data" / sha / "toy.csv"
    assert cached.read_bytes() == data
    (run,) = project.runs()
    # The training function got the cached copy, as for a path input.
    assert run["inputs"]["toy"] == {
        "path": str(cached.resolve()),
        "sha256": sha,
        "uri": bucket.uri(),
    }
    assert run["lineage"]["data_hashes"] == {"toy": sha}
    assert data_files(project) == [f".{sha}.lock", sha, f"{sha}/toy.csv"]
    config = load(str(project.config))
    assert plan_run(config, config.models["toy"]).pending_objects == []  # planned: cached

    # Evaluation reads the same copy; one that went missing is fetched again first.
    from mlops_sessions.frontends.cli import main

    cached.unlink()
    capsys.readouterr()
    assert main(["evaluate", "-c", str(project.config), "--json"]) == 0
    err = capsys.readouterr().err
    assert f"[toy] data input 'toy': fetching {bucket.uri()}" in err
    assert cached.read_bytes() == data

    # A cache hit needs no S3 at all: no endpoint that answers, no credentials.
    monkeypatch.setenv("MLOPS_STORE_ENDPOINT", unreachable())
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, result, err = project.train("--force", capsys=capsys)
    assert code == 0, err
    assert result["runs"][0]["reused"] is False  # trained again, on the cached copy
    assert "fetching" not in err
    assert len(project.runs()) == 2
    assert {r["key"] for r in project.runs()} == {run["key"]}

    # A damaged copy is not trusted: it is fetched again (here: without credentials, so
    # the error says so, and the damaged file is not used for training).
    cached.write_bytes(data[:-10])
    code, _, err = project.train("--force", capsys=capsys)
    assert code == 1
    assert f"data input 'toy': fetching {bucket.uri()}" in err
    assert "no S3 credentials" in err and "Traceback" not in err
    assert len(project.runs()) == 2


def test_a_digest_mismatch_is_one_line_and_nothing_is_cached(
    toy_project: Factory, bucket: Bucket, capsys: pytest.CaptureFixture[str]
) -> None:
    project = toy_project()
    bucket.put(KEY, b"1,2,3,4,0\n")
    declared = hashlib.sha256(b"what the team meant to upload").hexdigest()
    use_s3_input(project, bucket.uri(), declared)
    actual = hashlib.sha256(b"1,2,3,4,0\n").hexdigest()

    code, result, err = project.train(capsys=capsys)
    assert code == 1 and result is None
    (line,) = [ln for ln in err.splitlines() if ln.startswith("mlops train: ")]
    assert f"sha256 mismatch for {bucket.uri()}: expected {declared}, got {actual}" in line
    assert "data input 'toy'" in line and "data.toy.sha256" in line
    assert "Traceback" not in err
    # Nothing a later run could trust: no copy, no temp file, not even its directory.
    assert data_files(project) == [f".{declared}.lock"]
    assert project.runs() == []


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("missing-object", r"no object 'datasets/toy/none.csv' in bucket .* fix data\.toy\.uri"),
        ("no-credentials", r"no S3 credentials to fetch s3://.*AWS_ACCESS_KEY_ID"),
        ("unreachable", r"cannot reach http://127\.0\.0\.1:\d+ for s3://.*MLOPS_STORE_ENDPOINT"),
    ],
)
def test_store_failures_are_one_clear_line(
    toy_project: Factory,
    bucket: Bucket,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    case: str,
    expected: str,
) -> None:
    project = toy_project()
    sha = bucket.put(KEY, b"1,2,3,4,0\n")
    key = "datasets/toy/none.csv" if case == "missing-object" else KEY
    use_s3_input(project, bucket.uri(key), sha)
    if case == "no-credentials":
        monkeypatch.delenv("AWS_ACCESS_KEY_ID")
        monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    if case == "unreachable":
        monkeypatch.setenv("MLOPS_STORE_RETRIES", "0")
        monkeypatch.setenv("MLOPS_STORE_ENDPOINT", unreachable())

    code, _, err = project.train(capsys=capsys)
    assert code == 1
    lines = [ln for ln in err.splitlines() if ln.startswith("mlops train: ")]
    assert len(lines) == 1 and re.search(expected, lines[0]), err
    assert "Traceback" not in err
    assert [f for f in data_files(project) if not f.endswith(".lock")] == []


# --- planning: offline, the declared sha256 is the key's ------------------------------------


def test_the_key_follows_the_declared_sha256_without_a_download(
    toy_project: Factory, capsys: pytest.CaptureFixture[str]
) -> None:
    project = toy_project()
    keys = []
    for sha in ("ab" * 32, "cd" * 32, "ab" * 32):
        use_s3_input(project, "s3://nowhere-reachable/toy.csv", sha)
        config = load(str(project.config))
        plan = plan_run(config, config.models["toy"])
        assert plan.data_hashes == {"toy": sha}
        assert plan.inputs["toy"] == project.store.resolve() / "data" / sha / "toy.csv"
        assert [o.name for o in plan.pending_objects] == ["toy"]
        keys.append(plan.key)
    assert keys[0] != keys[1] and keys[0] == keys[2]

    code, _, err = project.train("--dry-run", capsys=capsys)
    assert code == 0, err
    from mlops_sessions.frontends.cli import main

    capsys.readouterr()
    assert main(["train", "-c", str(project.config), "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert f"toy: s3://nowhere-reachable/toy.csv (sha256 {'ab' * 32})" in text
    assert f"to fetch: {project.store / 'data' / ('ab' * 32) / 'toy.csv'}" in text or (
        f"to fetch: .mlops/data/{'ab' * 32}/toy.csv" in text
    )


def test_the_endpoint_and_region_come_from_the_store_settings(tmp_path: Path) -> None:
    path = tmp_path / "mlops.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "mlops/v1alpha1",
                "project": {"name": "p"},
                "store": {
                    "remote": "s3://runs/p",
                    "endpoint": "http://minio.local:9000",
                    "region": "eu-west-3",
                },
                "data": {"d": {"uri": "s3://data/d.csv", "sha256": "ab" * 32}},
                "models": {"m": {"train": {"entrypoint": "m:train", "inputs": ["d"]}}},
            }
        )
    )
    (tmp_path / "m.py").write_text("def train(ctx):\n    return None\n")
    config = load(str(path))
    plan = plan_run(config, config.models["m"])
    obj = plan.objects["d"]
    assert (obj.endpoint, obj.region, obj.cached) == ("http://minio.local:9000", "eu-west-3", False)


def test_a_container_run_sees_the_cached_copy(toy_project: Factory, tmp_path: Path) -> None:
    project = toy_project()
    use_s3_input(project, "s3://data/toy.csv", "ab" * 32)
    for store, inside in ((".mlops", True), (str(tmp_path / "shared-store"), False)):
        doc = yaml.safe_load(project.config.read_text())
        doc["store"] = store
        project.config.write_text(yaml.safe_dump(doc, sort_keys=False))
        config = load(str(project.config))
        plan = plan_run(config, config.models["toy"])
        output = tmp_path / "out"
        run, spec = container_run.train_run(
            plan, root=config.root, output=output, user="1000:1000", labels={}
        )
        copy = plan.inputs["toy"]
        mounts = {m.target: m for m in run.mounts}
        if inside:  # the project is mounted; the store's copy is under it
            assert spec["inputs"]["toy"] == f"/workspace/.mlops/data/{'ab' * 32}/toy.csv"
        else:  # a store outside the project: the copy gets a read-only mount of its own
            target = spec["inputs"]["toy"]
            assert target.startswith("/mlops/mounts/") and target.endswith("toy.csv")
            assert mounts[target].source == copy and mounts[target].read_only


# --- Kubernetes: the pod fetches the object itself ------------------------------------------

JOB_CONFIG = """\
apiVersion: mlops/v1alpha1
project: {{name: shop}}
store: {{remote: "s3://models/shop", endpoint: "http://minio.storage:9000"}}
data:
  points: {{uri: "s3://datasets/shop/points.csv", sha256: "{sha}"}}
images:
  trainer:
    kind: train
    repository: shop-train
    base: {{variant: cpu, tensorflow: "2.21.0"}}
models:
  shop:
    deploy: {{namespace: ml}}
    train:
      source: src
      entrypoint: model:train
      inputs: [points]
      backend: kubernetes
      image: trainer
      workers: 2
      credentials_secret: store-creds
"""


def job_project(tmp_path: Path, sha: str = "ab" * 32) -> Path:
    root = tmp_path / "job"
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "model.py").write_text("def train(ctx):\n    return None\n")
    (root / "mlops.yaml").write_text(JOB_CONFIG.format(sha=sha))
    return root / "mlops.yaml"


def test_the_job_carries_the_uri_and_every_pod_the_credentials(tmp_path: Path) -> None:
    from mlops_sessions.planning.images import FETCH_ROOTS, image_tools

    config = load(str(job_project(tmp_path)))
    model = config.models["shop"]
    plan = plan_run(config, model)
    run_id = "20261201T120000Z-abc123-" + plan.key[:8]
    spec = train_job.pod_spec(config, model, plan, run_id)
    assert spec["inputs"] == {
        "points": {"uri": "s3://datasets/shop/points.csv", "sha256": "ab" * 32}
    }
    target = train_job.JobTarget(train_job.job_name("shop", run_id), "r/t@sha256:" + "c" * 64)
    objects = train_job.objects(config, model, target, spec)
    for version in k8s_validate.supported_versions():
        deploy = dataclasses.replace(model.deploy, kubernetes_version=version)
        versioned = dataclasses.replace(model, deploy=deploy)
        k8s_validate.validate_objects(train_job.objects(config, versioned, target, spec), version)
    job = objects[-1]
    assert job["spec"]["completionMode"] == "Indexed"  # one template for every worker
    env = {e["name"]: e for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}
    for key in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        assert env[key]["valueFrom"]["secretKeyRef"] == {"name": "store-creds", "key": key}
    assert env["MLOPS_STORE_ENDPOINT"]["value"] == "http://minio.storage:9000"
    # The train image those pods run can download: boto3 and tenacity are in it.
    assert set(FETCH_ROOTS) <= set(image_tools(config, "trainer", config.images["trainer"]))


def pod_spec_for(bucket: Bucket, uri: str, sha: str) -> dict[str, Any]:
    return {
        "format": train_job.SPEC_FORMAT,
        "inputs": {"points": {"uri": uri, "sha256": sha}},
        "store": {"url": "s3://models/shop", "endpoint": bucket.endpoint, "region": None},
    }


def test_the_pod_fetches_an_s3_input_into_its_scratch_dir(
    bucket: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mlops_sessions.drivers.train_pod import resolve_inputs

    # In the pod the endpoint comes from the spec (and MLOPS_STORE_ENDPOINT, set by the Job).
    monkeypatch.delenv("MLOPS_STORE_ENDPOINT")
    data = b"1,2\n3,4\n"
    sha = bucket.put("shop/points.csv", data)
    scratch = tmp_path / "scratch"
    got = resolve_inputs(
        pod_spec_for(bucket, bucket.uri("shop/points.csv"), sha), tmp_path, scratch
    )
    assert got["points"] == scratch / "data" / sha / "points.csv"
    assert got["points"].read_bytes() == data


def test_the_pod_refuses_a_mismatch_with_the_input_error_exit(
    bucket: Bucket,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlops_sessions.drivers import train_pod

    monkeypatch.delenv("MLOPS_STORE_ENDPOINT")
    bucket.put("shop/points.csv", b"replaced\n")
    declared = hashlib.sha256(b"original\n").hexdigest()
    spec = pod_spec_for(bucket, bucket.uri("shop/points.csv"), declared)
    with pytest.raises(StepError, match=rf"sha256 mismatch .* expected {declared}"):
        train_pod.resolve_inputs(spec, tmp_path, tmp_path / "scratch")
    assert not (tmp_path / "scratch" / "data" / declared).exists()

    monkeypatch.setenv(train_job.SPEC_ENV, json.dumps(spec))
    monkeypatch.chdir(tmp_path)
    assert train_pod.main() == train_job.INPUT_ERROR_EXIT
    err = capsys.readouterr().err
    assert "train: data input 'points': sha256 mismatch" in err and "Traceback" not in err

    # An object store that does not answer is not the input's fault: the Job may retry.
    spec["store"]["endpoint"] = unreachable()
    monkeypatch.setenv(train_job.SPEC_ENV, json.dumps(spec))
    monkeypatch.setenv("MLOPS_STORE_RETRIES", "0")
    assert train_pod.main() == 1
    assert "cannot reach" in capsys.readouterr().err


def test_the_sessions_that_read_data_install_the_s3_client(example_config: Path) -> None:
    from mlops_sessions import pipeline
    from mlops_sessions.config import DataInput
    from mlops_sessions.frontends import noxplugin

    config = load(str(example_config))
    by_step = {spec.name: spec for spec in pipeline.sessions()}
    assert "fetch" not in noxplugin.session_extras(by_step["train"], config)
    remote_data = dataclasses.replace(
        config, data={"digits": DataInput(uri="s3://datasets/digits.csv", sha256="ab" * 32)}
    )
    for step in ("train", "evaluate"):
        assert "fetch" in noxplugin.session_extras(by_step[step], remote_data)
    assert "fetch" not in noxplugin.session_extras(by_step["build"], remote_data)


# --- --offline: a cached copy or one clear line, never a download ----------------------------


def store_files(project: Any) -> dict[str, bytes]:
    """Every file of the store with its content (the hash memo aside): 'nothing written'."""
    found = {}
    for path in sorted(project.store.rglob("*")):
        if path.is_file() and "hash" not in path.name:
            found[str(path.relative_to(project.store))] = path.read_bytes()
    return found


@pytest.mark.slow
def test_offline_uses_the_cached_copy_and_refuses_to_download(
    toy_project: Factory,
    bucket: Bucket,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mlops_sessions.frontends.cli import main

    project = toy_project()
    data = (project.root / "data" / "toy.csv").read_bytes()
    sha = bucket.put(KEY, data)
    use_s3_input(project, bucket.uri(), sha)
    cached = project.store / "data" / sha / "toy.csv"

    # Not cached: one line naming the input, the uri, where the copy goes and the fix;
    # S3 is reachable and has the object, yet nothing is downloaded and nothing written.
    before = store_files(project)
    code, result, err = project.train("--offline", capsys=capsys)
    assert code == 1 and result is None
    (line,) = [ln for ln in err.splitlines() if ln.startswith("mlops train: ")]
    assert f"data input 'toy': {bucket.uri()} (sha256 {sha[:12]}" in line
    assert str(cached) in line and "--offline does not download" in line
    assert "run `mlops train` once without --offline to fetch it" in line
    assert "fetching" not in err and "Traceback" not in err
    assert data_files(project) == [] and project.runs() == [] and project.tmp_entries() == []
    assert store_files(project) == before

    # Fetched online once, a copy is what --offline trains on: no endpoint, no credentials.
    assert project.train(capsys=capsys)[0] == 0
    monkeypatch.setenv("MLOPS_STORE_ENDPOINT", unreachable())
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    code, result, err = project.train("--offline", "--force", capsys=capsys)
    assert code == 0, err
    assert result["runs"][0]["reused"] is False and "fetching" not in err
    assert len(project.runs()) == 2

    # A cached run needs no data at all: reused offline even without the copy.
    cached.unlink()
    code, result, err = project.train("--offline", capsys=capsys)
    assert code == 0, err
    assert result["runs"][0]["reused"] is True

    # evaluate --offline: the same refusal before measuring; no verdict, no download.
    before = store_files(project)
    capsys.readouterr()
    assert main(["evaluate", "-c", str(project.config), "--json", "--offline"]) == 1
    err = capsys.readouterr().err
    (line,) = [ln for ln in err.splitlines() if ln.startswith("mlops evaluate: ")]
    assert f"data input 'toy': {bucket.uri()}" in line and str(cached) in line
    assert "run `mlops evaluate` once without --offline to fetch it" in line
    assert "fetching" not in err and "Traceback" not in err
    assert store_files(project) == before

    # A copy placed by hand at that path (the right bytes) is used offline.
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(data)
    capsys.readouterr()
    assert main(["evaluate", "-c", str(project.config), "--json", "--offline"]) in (0, 1)
    err = capsys.readouterr().err
    assert "not in the local cache" not in err and "fetching" not in err, err


# --- `mlops test`: its key covers only data the suite can open --------------------------------


def test_the_test_key_does_not_claim_s3_inputs_the_suite_never_gets(toy_project: Factory) -> None:
    """`mlops test` gives the suite no data (no ctx, only PYTHONPATH, nothing fetched): a new
    s3:// object must not look like a reason to re-run it; a path input it can open is."""
    from mlops_sessions.hashing import FileHashCache
    from mlops_sessions.planning.testing import test_cache_key
    from mlops_sessions.steps.test_cmd import test_environment

    project = toy_project()
    (project.root / "tests").mkdir()
    (project.root / "tests" / "test_a.py").write_text("def test_a():\n    assert True\n")
    keys = []
    for sha in ("ab" * 32, "cd" * 32):
        use_s3_input(project, "s3://nowhere-reachable/toy.csv", sha)
        config = load(str(project.config))
        keys.append(test_cache_key(config, [], FileHashCache(None)))
        env = test_environment(config)
        assert not any(sha in value for value in env.values())  # the suite never sees it
    assert keys[0] == keys[1]

    doc = yaml.safe_load(project.config.read_text())
    doc["data"]["extra"] = {"path": "data/extra.csv"}
    project.config.write_text(yaml.safe_dump(doc, sort_keys=False))
    extra = project.root / "data" / "extra.csv"
    extra.parent.mkdir(exist_ok=True)
    with_path = []
    for content in ("1,2\n", "3,4\n"):
        extra.write_text(content)
        with_path.append(test_cache_key(load(str(project.config)), [], FileHashCache(None)))
    assert with_path[0] != with_path[1]
