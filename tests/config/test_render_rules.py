"""What render, deploy or the cluster would refuse, ``validate`` refuses first, located.

One case per example of issue 12 §1 (and issue 11's GPU case): each document passed
``mlops validate`` before and was refused later. Now the loader reports it at the line
and column where it is written, with a hint that names the fix; where render enforces the
rule too, render refuses a Config that skipped the loader with the same words.
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from mlops_sessions.config import Pdb, rules
from mlops_sessions.config.loader import loads
from mlops_sessions.errors import ConfigError, StepError
from mlops_sessions.planning.manifests import RenderInputs, render

HEAD = """\
apiVersion: mlops/v1alpha1
project: {name: demo}
images:
  gpu-serve: {repository: g, base: {variant: gpu, tensorflow: "2.21.0"}}
  cpu-serve: {repository: c, base: {variant: cpu, tensorflow: "2.21.0"}}
"""
MARK = "#<"
SHA = "0f" * 32


@pytest.fixture(autouse=True, scope="module")
def _no_verdict_memo() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_NO_CACHE", "1")
        yield


CASES = {
    "gpu-request-differs-from-limit": (
        """\
        models:
          a:
            image: gpu-serve
            deploy:
              resources: {gpu: 1, limits: {gpu: 2}}  #<
        """,
        "models.a.deploy.resources.limits.gpu",
        "must be equal",
        "set limits.gpu to 1",
    ),
    "ab-with-only-a-value": (
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              canary: {weight: 0}
              ab: {value: "yes"}  #<
        """,
        "models.a.rollout.ab",
        "needs a header or a cookie",
        "add header: x-canary",
    ),
    "invalid-cookie-regex": (
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              canary: {weight: 0}
              ab: {cookie: "beta=(1"}  #<
        """,
        "models.a.rollout.ab.cookie",
        "not a valid regular expression",
        "'beta=1'",
    ),
    "cookie-regex-istio-cannot-run": (
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              canary: {weight: 0}
              ab: {cookie: "(?!x)beta"}  #<
        """,
        "models.a.rollout.ab.cookie",
        "not RE2",
        "'beta=1'",
    ),
    "misspelled-toleration-key": (
        """\
        models:
          a:
            deploy:
              tolerations:
                - {key: gpu, opertor: Exists}  #<
        """,
        "models.a.deploy.tolerations[0].opertor",
        "unknown key 'opertor'",
        "did you mean 'operator'?",
    ),
    "toleration-exists-with-a-value": (
        """\
        models:
          a:
            deploy:
              tolerations:
                - {key: gpu, operator: Exists, value: "yes"}  #<
        """,
        "models.a.deploy.tolerations[0].value",
        "takes no value",
        "remove value",
    ),
    "s3-source-without-sha256": (
        """\
        models:
          a:
            deploy:
              model_source: {type: s3, uri: "s3://bkt/m.tgz"}  #<
        """,
        "models.a.deploy.model_source",
        "without a checksum",
        "add sha256",
    ),
    "model-name-not-dns-1035": (
        """\
        models:
          9digits: {}  #<
        """,
        "models.9digits",
        "name '9digits' is not allowed",
        "DNS-1035",
    ),
    "replicas-beyond-int32": (
        """\
        models:
          a:
            deploy: {replicas: 2147483648}  #<
        """,
        "models.a.deploy.replicas",
        "2147483648 is greater than the maximum of 2147483647",
        "Use at most 2147483647",
    ),
    "host-with-a-space": (
        """\
        models:
          a:
            rollout:
              hosts: ["a b.example.com"]  #<
        """,
        "models.a.rollout.hosts[0]",
        "'a b.example.com' is not in the expected form",
        "no spaces",
    ),
    "invalid-node-selector-label-key": (
        """\
        models:
          a:
            deploy:
              node_selector: {"gpu type!": l4}  #<
        """,
        "models.a.deploy.node_selector.gpu type!",
        "key 'gpu type!' is not allowed",
        "label key",
    ),
    "two-models-one-host": (
        """\
        models:
          a:
            rollout: {hosts: [shop.example.com]}
          b:
            rollout: {hosts: [shop.example.com]}  #<
        """,
        "models.b.rollout.hosts[0]",
        "host 'shop.example.com' is already claimed by model 'a'",
        "a host of its own",
    ),
    "gpus-on-a-cpu-only-serve-image": (
        """\
        models:
          a:
            image: cpu-serve
            deploy:
              resources: {gpu: 1}  #<
        """,
        "models.a.deploy.resources.gpu",
        "has a CPU-only base",
        "images.cpu-serve.base.variant to 'gpu'",
    ),
    "pdb-above-replicas": (
        """\
        models:
          a:
            deploy:
              replicas: 2
              pdb: {min_available: 3}  #<
        """,
        "models.a.deploy.pdb.min_available",
        "above the 2 replica(s)",
        "at most 2",
    ),
    "duration-beyond-int32-seconds": (
        """\
        models:
          a:
            deploy: {rollout_timeout: 100000000h}  #<
        """,
        "models.a.deploy.rollout_timeout",
        "more seconds than Kubernetes can count",
        "below",
    ),
    "memory-suffix-kubernetes-refuses": (
        """\
        models:
          a:
            deploy:
              resources: {memory: 512K}  #<
        """,
        "models.a.deploy.resources.memory",
        "'512K' is not in the expected form",
        "Ki, Mi, Gi",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_validate_refuses_what_a_later_step_would(name: str) -> None:
    body, path, message, hint = CASES[name]
    text = HEAD + textwrap.dedent(body)
    with pytest.raises(ConfigError) as caught:
        loads(text, env={})
    (problem,) = [p for p in caught.value.problems if p.path == path]
    assert message in problem.message
    assert hint in problem.hint
    marked = next(i for i, line in enumerate(text.splitlines(), 1) if MARK in line)
    assert problem.line == marked, problem.render()
    assert problem.column is not None
    # Nothing else is wrong in these documents: one problem, one fix.
    assert len(caught.value.problems) == 1, caught.value


@pytest.mark.parametrize("rule", ["gpu-limit", "pdb"])
def test_render_refuses_a_config_that_skipped_the_loader(rule: str) -> None:
    text = HEAD + textwrap.dedent("""\
        models:
          a:
            image: gpu-serve
            deploy:
              replicas: 2
              resources: {gpu: 1, limits: {gpu: 1}}
        """)
    config = loads(text, env={})
    model = config.models["a"]
    deploy = model.deploy
    if rule == "gpu-limit":
        assert deploy.resources.limits is not None
        limits = dataclasses.replace(deploy.resources.limits, gpu=2)
        deploy = dataclasses.replace(
            deploy, resources=dataclasses.replace(deploy.resources, limits=limits)
        )
        words = "must be equal"
    else:
        deploy = dataclasses.replace(deploy, pdb=Pdb(min_available=5))
        words = "above the 2 replica(s)"
    model = dataclasses.replace(model, deploy=deploy)
    inputs = RenderInputs(
        stable_image="r.example.com/a@sha256:" + "ab" * 32,
        run_id=None,
        model_hash=None,
        git_commit=None,
        config_hash="0" * 64,
    )
    # The function validate runs says it, located by its path in the document...
    (finding,) = rules.model_findings(config, model)
    assert words in finding.message
    # ...and render refuses through the same function.
    with pytest.raises(StepError, match=r"models\.a\.deploy") as caught:
        render(config, model, inputs)
    assert words in str(caught.value)


def test_example_file_is_unchanged_by_the_new_rules() -> None:
    repo = Path(__file__).resolve().parents[2]
    for profile in (None, "ci", "prod"):
        loads((repo / "mlops.yaml").read_text(), root=repo, profile=profile, env={})
