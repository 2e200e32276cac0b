"""The image planner, offline: Dockerfile text, template overrides, tags, labels, digest.

No Docker here: these run everywhere, fast.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from mlops_sessions import gitinfo
from mlops_sessions.config import TagPolicy
from mlops_sessions.config.loader import load
from mlops_sessions.drivers.imaging import model_artifact
from mlops_sessions.errors import StepError
from mlops_sessions.planning import images, serving_deps, tags
from mlops_sessions.planning.dockerfile import check_no_secrets
from mlops_sessions.records.store import Store
from tests.images.conftest import Project, ProjectFactory, git

NOW = datetime(2026, 3, 4, 5, 6, 7, tzinfo=timezone.utc)
COMMIT = "0123456789abcdef0123456789abcdef01234567"


def facts_of(root: Path, now: datetime) -> tags.TagFacts:
    """Tag facts as the build step gathers them: git is read here, planning stays pure."""
    return tags.tag_facts(
        gitinfo.state(root), gitinfo.head_tags(root), gitinfo.origin_url(root), now
    )


def plan_of(project: Project, now: datetime = NOW, image: str = "serve") -> images.ImagePlan:
    config = load(project.config)
    store = Store(config.store_path)
    return images.plan_image(
        config,
        image,
        facts=facts_of(config.root, now),
        artifact=model_artifact(config, store, image, force=False),
        runtime_text="pyyaml==6.0.3\n",
        git_files=gitinfo,
    )


def instructions(dockerfile: str) -> list[str]:
    return [line for line in dockerfile.splitlines() if re.match(r"^[A-Z]+ ", line)]


def test_serve_dockerfile_orders_layers_for_caching(make_project: ProjectFactory) -> None:
    project = make_project()
    plan = plan_of(project)
    final = instructions(plan.dockerfile)
    final = final[max(i for i, line in enumerate(final) if line.startswith("FROM ")) :]
    order = [line.split()[0] + " " + line.split()[1] for line in final]
    venv = order.index("COPY --from=deps")
    code = order.index("COPY code/")
    model = order.index("COPY model/")
    assert order.index("RUN groupadd") < venv < code < model == len(order) - 1
    # Run settings precede every COPY, so they never invalidate a cached layer.
    for setting in ("USER", "EXPOSE", "HEALTHCHECK", "CMD", "WORKDIR"):
        assert max(i for i, o in enumerate(order) if o.startswith(setting)) < venv
    assert "USER 10001:10001" in final
    assert re.search(r"^HEALTHCHECK .*\\\n\s+CMD .*/healthz", plan.dockerfile, re.M)
    assert "--no-index --find-links /tmp/mlops/wheels" in plan.dockerfile
    assert not any(line.startswith("ARG ") for line in final)
    assert plan.refs == [f"tiny-serve:{git(project.root, 'rev-parse', 'HEAD').strip()}"]


def test_context_holds_code_lock_package_and_model(make_project: ProjectFactory) -> None:
    plan = plan_of(make_project())
    assert "code/app/src/tiny_model.py" in plan.files
    assert "code/app/requirements.lock" in plan.files
    assert "deps/requirements/lock.txt" in plan.files
    assert "code/lib/mlops_sessions/frontends/cli.py" in plan.files
    assert "code/lib/mlops_sessions/_schemas/mlops.schema.json" in plan.files
    assert "model/model/saved_model.pb" in plan.files
    assert '"run_id": "20260101T000000Z-0123abcd"' in plan.texts["model/run.json"]
    assert plan.wheels is not None and plan.wheels.python_version == "3.11"
    assert plan.wheels.requirement_files == ("lock.txt", "runtime.txt")


@pytest.mark.parametrize(
    ("base", "kind", "expected"),
    [
        ({"variant": "cpu", "tensorflow": "2.16.1"}, "serve", "tensorflow/tensorflow:2.16.1"),
        ({"variant": "gpu", "tensorflow": "2.16.1"}, "serve", "tensorflow/tensorflow:2.16.1-gpu"),
        (
            {"variant": "jupyter", "tensorflow": "2.16.1"},
            "train",
            "tensorflow/tensorflow:2.16.1-jupyter",
        ),
        ({"image": "python:3.11-slim"}, "serve", "python:3.11-slim"),
        ({"variant": "cpu", "tensorflow": "2.16.1"}, "tfserving", "tensorflow/serving:2.16.1"),
        ({"variant": "gpu", "tensorflow": "2.16.1"}, "tfserving", "tensorflow/serving:2.16.1-gpu"),
    ],
)
def test_base_image_follows_the_variant(
    make_project: ProjectFactory, base: dict[str, str], kind: str, expected: str
) -> None:
    plan = plan_of(make_project(image={"base": base, "kind": kind}))
    assert plan.base == expected
    assert plan.dockerfile.count(f"FROM {expected}") >= 1


def test_tfserving_image_carries_only_the_model(make_project: ProjectFactory) -> None:
    plan = plan_of(make_project(image={"kind": "tfserving"}))
    assert "COPY model/model/ /models/tiny/1/" in plan.dockerfile
    assert not any(arc.startswith("code/") for arc in plan.files)
    assert plan.wheels is None
    assert "HEALTHCHECK" in plan.dockerfile and "USER 10001:10001" in plan.dockerfile


def test_configured_uid_is_the_user(make_project: ProjectFactory) -> None:
    plan = plan_of(make_project(image={"user": {"name": "svc", "uid": 4242}}))
    assert "USER 4242:4242" in plan.dockerfile
    assert "useradd --uid 4242" in plan.dockerfile
    assert plan.uid == 4242


def test_labels_carry_lineage(make_project: ProjectFactory) -> None:
    project = make_project()
    git(
        project.root,
        "remote",
        "add",
        "origin",
        "https://ci-bot:s3cr3t-token@git.example.com/t/x.git",
    )
    plan = plan_of(project)
    head = git(project.root, "rev-parse", "HEAD").strip()
    assert plan.labels["org.opencontainers.image.revision"] == head
    assert plan.labels["org.opencontainers.image.created"] == "2026-03-04T05:06:07Z"
    # Credentials in a remote URL never reach a label.
    assert plan.labels["org.opencontainers.image.source"] == "https://git.example.com/t/x.git"
    assert plan.labels["org.mlops-sessions.model-hash"] == "ab" * 32
    assert plan.labels["org.mlops-sessions.run-id"] == project.run_id
    assert len(plan.labels["org.mlops-sessions.config-hash"]) == 64
    assert plan.labels[images.INPUT_DIGEST_LABEL] == plan.input_digest
    last = plan.build_dockerfile().rstrip().split("\nLABEL ", 1)[1]
    assert '"org.opencontainers.image.created"="2026-03-04T05:06:07Z"' in last


def test_input_digest_ignores_time_but_not_code_or_model(make_project: ProjectFactory) -> None:
    project = make_project()
    first = plan_of(project)
    later = plan_of(project, now=datetime(2027, 1, 1, tzinfo=timezone.utc))
    assert later.input_digest == first.input_digest
    project.write("src/tiny_model.py", '"""Model code."""\n\nVERSION = 2\n')
    assert plan_of(project).input_digest != first.input_digest
    project.write("src/tiny_model.py", '"""Model code."""\n\nVERSION = 1\n')
    assert plan_of(project).input_digest == first.input_digest
    weights = Store(project.root / ".mlops").run_dir(project.run_id) / "model" / "saved_model.pb"
    weights.write_bytes(b"other graph")
    assert plan_of(project).input_digest != first.input_digest


def test_dirty_tree_gets_a_digest_suffix_or_is_refused(make_project: ProjectFactory) -> None:
    project = make_project()
    project.write("src/tiny_model.py", '"""Model code."""\n\nVERSION = 3\n')  # tracked: dirty
    plan = plan_of(project)
    head = git(project.root, "rev-parse", "HEAD").strip()
    assert plan.tags == (f"{head}-dirty-{plan.input_digest[:12]}",)
    refusing = make_project(image={"tag": {"dirty": "refuse"}}, name="refusing")
    refusing.write("src/tiny_model.py", "VERSION = 4\n")
    with pytest.raises(StepError, match="uncommitted changes"):
        plan_of(refusing)


def test_untracked_file_in_the_context_counts_as_dirty(make_project: ProjectFactory) -> None:
    project = make_project()
    clean = plan_of(project)
    head = git(project.root, "rev-parse", "HEAD").strip()
    assert clean.tags == (head,)
    project.write("notes/scratch.txt", "not part of any image\n")  # untracked, not in context
    assert plan_of(project).tags == (head,)
    project.write("src/helper.py", "X = 1\n")  # untracked and copied into the image
    plan = plan_of(project)
    assert plan.tags == (f"{head}-dirty-{plan.input_digest[:12]}",)
    refusing = make_project(image={"tag": {"dirty": "refuse"}}, name="refusing-untracked")
    refusing.write("src/helper.py", "X = 1\n")
    with pytest.raises(StepError, match=r"untracked files that go into the image \(src/helper"):
        plan_of(refusing)
    # An image built only to run here (a train image for `mlops train`) is never refused.
    config = load(refusing.config)
    local = images.plan_image(
        config,
        "serve",
        facts=facts_of(config.root, NOW),
        artifact=model_artifact(config, Store(config.store_path), "serve", force=False),
        local=True,
        git_files=gitinfo,
    )
    assert local.tags[0].endswith(f"-dirty-{local.input_digest[:12]}")


def facts(**kw: object) -> tags.TagFacts:
    base: dict[str, object] = {"commit": COMMIT, "dirty": False, "version": None, "date": NOW}
    base.update(kw)
    return tags.TagFacts(**base)  # type: ignore[arg-type]


def test_tag_policies() -> None:
    digest = "f" * 64
    assert tags.make_tag(TagPolicy(), facts(), digest) == COMMIT
    assert tags.make_tag(TagPolicy("semver"), facts(version="1.2.3"), digest) == "1.2.3"
    assert tags.make_tag(TagPolicy("date"), facts(), digest) == "20260304-050607-0123456789ab"
    template = TagPolicy("template", template="prod-{date}-{short}")
    assert tags.make_tag(template, facts(), digest) == "prod-20260304-0123456789ab"
    model = TagPolicy("template", template="{model}-{version}")
    assert tags.make_tag(model, facts(version="2.0.0"), digest, model="tiny") == "tiny-2.0.0"


def test_tag_policies_that_cannot_be_met_name_the_fix() -> None:
    digest = "f" * 64
    with pytest.raises(StepError, match=r"git tag v1\.2\.3"):
        tags.make_tag(TagPolicy("semver"), facts(), digest)
    with pytest.raises(StepError, match="git init"):
        tags.make_tag(TagPolicy(), facts(commit=None), digest)
    with pytest.raises(StepError, match="never produced"):
        tags.check_tag("latest")
    with pytest.raises(StepError, match="not a valid image tag"):
        tags.make_tag(TagPolicy("template", template="-{commit}"), facts(), digest)


def test_semver_tag_is_read_from_git(make_project: ProjectFactory) -> None:
    project = make_project(image={"tag": {"policy": "semver"}})
    git(project.root, "tag", "v0.9.0")
    git(project.root, "tag", "v1.10.0")
    git(project.root, "tag", "v1.10.0-rc1")
    git(project.root, "tag", "not-a-version")
    plan = plan_of(project)
    assert plan.tags == ("1.10.0",)


def test_template_override_in_config_wins(make_project: ProjectFactory) -> None:
    project = make_project(image={"dockerfile": "ops/Dockerfile.j2"})
    project.write(
        "ops/Dockerfile.j2",
        "FROM {{ base }}\nUSER {{ uid }}\nCOPY code/ /srv/\nCOPY model/ /srv/\n",
    )
    plan = plan_of(project)
    assert plan.template_origin == "config"
    assert plan.dockerfile.startswith("FROM mlops-test-base:bookworm\nUSER 10001\n")


def test_ejected_project_template_wins_over_builtin(make_project: ProjectFactory) -> None:
    project = make_project()
    project.write(
        "dockerfiles/serve.Dockerfile.j2",
        '# team copy\n{% include "_deps.Dockerfile.j2" %}\nFROM {{ base }}\nUSER {{ uid }}\n',
    )
    plan = plan_of(project)
    assert plan.template_origin == "project"
    assert plan.dockerfile.startswith("# team copy\n")
    assert "AS deps" in plan.dockerfile  # includes still resolve to the built-in parts


def test_bad_templates_fail_with_the_fix(make_project: ProjectFactory) -> None:
    missing = make_project(image={"dockerfile": "nope.j2"}, name="missing")
    with pytest.raises(StepError, match="mlops eject"):
        plan_of(missing)
    typo = make_project(image={"dockerfile": "t.j2"}, name="typo")
    typo.write("t.j2", "FROM {{ bsae }}\n")
    with pytest.raises(StepError, match="'bsae' is undefined; the variables a template may use"):
        plan_of(typo)
    secret = make_project(image={"dockerfile": "s.j2"}, name="secret")
    secret.write("s.j2", "FROM {{ base }}\nENV AWS_SECRET_ACCESS_KEY=abc \\\n    OTHER=1\n")
    with pytest.raises(StepError, match=r"looks like a secret.*deploy\.secrets"):
        plan_of(secret)


def test_secret_guard_reads_args_and_multi_line_env() -> None:
    check_no_secrets("FROM x\nENV PATH=/bin \\\n  HOME=/root\nARG VERSION=1\n", "t")
    with pytest.raises(StepError, match="ARG GITHUB_TOKEN"):
        check_no_secrets("FROM x\nARG GITHUB_TOKEN\n", "t")
    with pytest.raises(StepError, match="ENV DB_PASSWORD"):
        check_no_secrets("FROM x\nENV A=1 \\\n    DB_PASSWORD=x\n", "t")


def test_unblessed_model_is_refused_unless_forced(make_project: ProjectFactory) -> None:
    project = make_project(blessed=False)
    code, _, err = project.mlops("build", "--dry-run")
    assert code == 1 and "no blessed run" in err and "--force" in err
    code, result, _ = project.mlops("build", "--dry-run", "--force")
    assert code == 0 and result is not None
    (described,) = result["images"]
    assert described["model_run"] == project.run_id


def test_dry_run_prints_the_plan_and_touches_nothing(make_project: ProjectFactory) -> None:
    project = make_project()
    before = sorted(p.relative_to(project.root) for p in project.root.rglob("*"))
    code, result, _ = project.mlops("build", "--dry-run")
    assert code == 0 and result is not None and result["dry_run"] is True
    (described,) = result["images"]
    assert described["dockerfile"].startswith("# Serve image for model 'tiny'")
    assert described["refs"][0].startswith("tiny-serve:")
    assert "org.opencontainers.image.revision" in described["labels"]
    # No build record, no wheels, no context, not even the file-hash memo.
    assert sorted(p.relative_to(project.root) for p in project.root.rglob("*")) == before
    code, _, err = project.mlops("push", "--dry-run")
    assert code == 1 and "mlops build serve" in err


def test_runtime_pins_leave_locked_names_to_the_lock() -> None:
    text = images.runtime_requirements("serve", "3.11", ["numpy", "PyYAML"])
    names = {line.split("==")[0] for line in text.splitlines()}
    assert {"aiohttp", "jsonschema", "prometheus-client"} <= names
    assert "numpy" not in names and "pyyaml" not in names
    assert all("==" in line for line in text.splitlines())
    assert images.runtime_requirements("tfserving", "3.11", []) == ""


def test_serve_image_installs_the_serving_subset_and_train_the_whole_lock(
    make_project: ProjectFactory,
) -> None:
    """The train image installs the lock; the serve image its serving subset (serve.txt,
    written at build time), plus tensorflow-serving-api without its dependencies."""
    project = make_project()
    doc = yaml.safe_load(project.config.read_text())
    doc["images"]["trainer"] = {**doc["images"]["serve"], "kind": "train", "repository": "t"}
    project.config.write_text(yaml.safe_dump(doc))
    config = load(project.config)
    store = Store(config.store_path)
    serve = images.plan_image(
        config, "serve", facts=None, artifact=model_artifact(config, store, "serve", False)
    )
    train = images.plan_image(config, "trainer", facts=None, artifact=None)
    assert "-r /tmp/mlops/requirements/serve.txt" in serve.dockerfile
    assert "requirements/lock.txt" not in serve.dockerfile
    assert "install --no-deps" in serve.dockerfile and "requirements/nodeps.txt" in serve.dockerfile
    assert serve.texts["deps/requirements/nodeps.txt"].startswith("tensorflow-serving-api")
    assert serve.extra == {"serving_split": True}
    assert serve.wheels is not None and serve.wheels.no_deps_files == ("nodeps.txt",)
    assert "-r /tmp/mlops/requirements/lock.txt" in train.dockerfile
    assert "serve.txt" not in train.dockerfile and "--no-deps" not in train.dockerfile
    assert "grpcio-health-checking==" in serve.texts["deps/requirements/runtime.txt"]
    assert serve.tags == () and serve.labels == {}  # facts=None: content only
    # Declaring a test suite adds the test runner to the train image alone.
    doc["tests"] = {"path": "tests"}
    project.config.write_text(yaml.safe_dump(doc))
    config = load(project.config)
    with_tests = images.plan_image(config, "trainer", facts=None, artifact=None)
    runner = with_tests.texts["deps/requirements/runtime.txt"]
    assert "pytest==" in runner and "pytest==" not in serve.texts["deps/requirements/runtime.txt"]
    assert with_tests.environment_digest != train.environment_digest


def test_serve_image_with_a_tensorflow_lock_checks_the_base_at_build_time(
    make_project: ProjectFactory,
) -> None:
    lock = "numpy==2.4.6\ntensorflow-cpu==2.21.0\nscikit-learn==1.9.1\n"
    config = load(make_project(lock=lock).config)
    store = Store(config.store_path)
    plan = images.plan_image(
        config, "serve", facts=None, artifact=model_artifact(config, store, "serve", False)
    )
    text = plan.dockerfile
    assert 'if [ "$found" = "2.21.0" ]' in text
    assert "--system-site-packages" in text and "serve-over-base.txt" in text
    assert "lock pins 2.21.0" in text and "exit 1" in text


def test_serving_subset_is_the_closure_of_the_server_and_tensorflow() -> None:
    lock = (
        "# a lock\n"
        "numpy==2.4.6\n"
        "tensorflow-cpu==2.21.0 \\\n    --hash=sha256:abc\n"
        "keras==3.15.1  # via tensorflow-cpu\n"
        "rich==15.0.0\n"
        "scikit-learn==1.9.1\n"
        "scipy==1.17.1\n"
        "aiohttp==3.14.5\n"
        "colorama==0.4.6\n"
    )
    requires = {
        "tensorflow-cpu": ["numpy>=1.26", "keras>=3.10", "tensorboard; extra == 'and-cuda'"],
        "keras": ["numpy", "rich", "colorama; sys_platform == 'win32'"],
        "scikit-learn": ["numpy", "scipy"],
        "aiohttp": [],
    }
    cut = serving_deps.split(lock, requires, "3.11")
    assert cut.serve.splitlines() == [
        "numpy==2.4.6",
        "tensorflow-cpu==2.21.0 --hash=sha256:abc",
        "keras==3.15.1",
        "rich==15.0.0",
        "aiohttp==3.14.5",
    ]
    assert cut.over_base.splitlines() == ["aiohttp==3.14.5"]
    assert cut.tensorflow == ("tensorflow-cpu", "2.21.0")
    assert cut.left_out == ("scikit-learn", "scipy", "colorama")
    assert cut.unresolved == ("numpy", "rich")


def test_serve_image_of_an_s3_model_can_run_the_fetch_init_container(
    make_project: ProjectFactory,
) -> None:
    project = make_project()
    config = load(project.config)
    store = Store(config.store_path)
    artifact = model_artifact(config, store, "serve", False)
    plain = images.plan_image(config, "serve", facts=None, artifact=artifact)
    assert "boto3==" not in plain.texts["deps/requirements/runtime.txt"]
    doc = yaml.safe_load(project.config.read_text())
    doc["models"]["tiny"]["deploy"] = {
        "model_source": {"type": "s3", "uri": "s3://bkt/m.tar.gz", "sha256": "a" * 64}
    }
    project.config.write_text(yaml.safe_dump(doc))
    config = load(project.config)
    fetching = images.plan_image(config, "serve", facts=None, artifact=artifact)
    runtime = fetching.texts["deps/requirements/runtime.txt"]
    assert "boto3==" in runtime and "tenacity==" in runtime


def test_wheel_platforms_cover_manylinux() -> None:
    platforms = images.wheel_platforms("x86_64")
    assert "manylinux2014_x86_64" in platforms and "manylinux_2_17_x86_64" in platforms
    assert f"manylinux_2_{images.MAX_GLIBC_MINOR}_x86_64" in platforms
    assert all(p.endswith("_x86_64") for p in platforms)


def test_eject_copies_templates_that_then_win(make_project: ProjectFactory) -> None:
    project = make_project()
    code, result, _ = project.mlops("eject")
    assert code == 0 and result is not None
    copied = {Path(p).name for p in result["copied"]}
    assert {"serve.Dockerfile.j2", "_deps.Dockerfile.j2", "_runtime.Dockerfile.j2"} <= copied
    ejected = project.root / "dockerfiles" / "serve.Dockerfile.j2"
    ejected.write_text(ejected.read_text().replace("EXPOSE {{ port }}", "EXPOSE {{ port }} 9000"))
    plan = plan_of(project)
    assert plan.template_origin == "project" and "EXPOSE 8501 9000" in plan.dockerfile
    code, _, err = project.mlops("eject")
    assert code == 1 and "--force" in err


def test_the_drift_reference_travels_with_the_model(make_project: ProjectFactory) -> None:
    """A passing evaluation's drift_reference.json goes into the serve image, and the image
    tells `mlops serve` where it is; without one, the Dockerfile is as before."""
    import dataclasses

    project = make_project()
    config = load(project.config)
    store = Store(config.store_path)
    artifact = model_artifact(config, store, "serve", force=False)
    assert artifact is not None
    plain = plan_of(project)
    assert "MLOPS_DRIFT_REFERENCE" not in plain.dockerfile
    reference = project.root / "drift_reference.json"
    reference.write_text('{"schema": 1, "features": {}}')
    with_reference = images.plan_image(
        config,
        "serve",
        facts=facts_of(config.root, NOW),
        artifact=dataclasses.replace(artifact, drift_reference=reference),
        runtime_text="pyyaml==6.0.3\n",
    )
    assert with_reference.files["model/drift_reference.json"] == reference
    assert "ENV MLOPS_DRIFT_REFERENCE=/opt/mlops/drift_reference.json" in with_reference.dockerfile
    assert with_reference.input_digest != plain.input_digest
