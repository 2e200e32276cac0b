"""The rule registry: each rule once, the GPU rules judged the same for training and serving."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from mlops_sessions.config import rules
from mlops_sessions.config.loader import loads
from mlops_sessions.errors import ConfigError

HEAD = """\
apiVersion: mlops/v1alpha1
project: {name: demo}
store: {remote: "s3://shared-store/demo"}
images:
  trainer: {kind: train, repository: demo-train, base: {variant: gpu, tensorflow: "2.21.0"}}
  serve: {repository: demo-serve, base: {variant: cpu, tensorflow: "2.21.0"}}
models:
  a:
    image: serve
"""


def _messages(body: str, root: Path) -> list[str]:
    text = HEAD + textwrap.indent(textwrap.dedent(body), "    ")
    with pytest.raises(ConfigError) as caught:
        loads(text, file="mlops.yaml", root=root, env={})
    return [f"{p.path}: {p.message}" for p in caught.value.problems]


def test_no_rule_is_registered_twice() -> None:
    for registry in (rules.DOCUMENT_RULES, rules.MODEL_RULES, rules.CONFIG_RULES):
        assert len(set(registry)) == len(registry)


def test_a_training_job_gpu_limit_below_its_request_is_reported_once(tmp_path: Path) -> None:
    found = _messages(
        """\
        train:
          entrypoint: m:train
          backend: kubernetes
          image: trainer
          resources: {gpu: 2, limits: {gpu: 1}}
        """,
        tmp_path,
    )
    gpu = [m for m in found if "GPU limit 1 is below the request 2" in m]
    assert len(gpu) == 1, found


@pytest.mark.parametrize("backend", ["container", "local"])
def test_outside_kubernetes_only_a_limit_below_the_request_is_refused(
    backend: str, tmp_path: Path
) -> None:
    body = f"""\
        train:
          entrypoint: m:train
          backend: {backend}
          image: trainer
          resources: {{gpu: 2, limits: {{gpu: 1}}}}
        """
    found = _messages(body, tmp_path)
    assert [m for m in found if "GPU" in m] == [
        "models.a.train.resources.limits.gpu: GPU limit 1 is below the request 2"
    ], found
    # a limit above the request is Kubernetes' concern only (it cannot overcommit GPUs)
    text = HEAD + textwrap.indent(textwrap.dedent(body.replace("gpu: 1", "gpu: 3")), "    ")
    loads(text, file="mlops.yaml", root=tmp_path, env={})


def test_gpus_on_a_cpu_base_are_one_rule_for_training_and_serving(tmp_path: Path) -> None:
    found = _messages(
        """\
        train:
          entrypoint: m:train
          container: true
          image: serve
          resources: {gpu: 1}
        deploy:
          resources: {gpu: 1}
        """,
        tmp_path,
    )
    cpu_only = sorted(m for m in found if "CPU-only base" in m)
    assert cpu_only == [
        "models.a.deploy.resources.gpu: 1 GPU(s) requested for serving but image 'serve' "
        "has a CPU-only base",
        "models.a.train.resources.gpu: 1 GPU(s) requested but image 'serve' has a CPU-only base",
    ], found
