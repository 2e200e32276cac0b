"""Invalid mlops.yaml files: every problem names the right place, path and fix.

Each case is a small YAML document. The line the problem must point at carries the marker
``#<``; ``at`` is the text on that line where the reported column must fall. Cases run
through the public ``loads`` and inspect the ``Problem`` records of the ``ConfigError``.
"""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions.config.loader import loads
from mlops_sessions.errors import ConfigError, Problem

HEAD = "apiVersion: mlops/v1alpha1\nproject: {name: demo}\n"
MARK = "#<"

IMAGE_SERVE = """\
images:
  serve:
    repository: demo-serve
    base: {variant: cpu, tensorflow: "2.21.0"}
"""


@dataclass(frozen=True)
class Case:
    body: str
    path: str  # the exact JSON path the problem reports
    message: str  # text the message must contain
    hint: str = ""  # text the hint must contain
    at: str | None = None  # text on the marked line where the column points
    head: bool = True  # prepend apiVersion + project
    line: int | None = None  # explicit line when the body has no marker
    count: int = 1  # problems expected in total
    profile: str | None = None
    env: dict[str, str] = field(default_factory=dict)
    lock: str | None = None  # requirements.lock written next to the config

    def text(self) -> str:
        return (HEAD if self.head else "") + textwrap.dedent(self.body)


@pytest.fixture(autouse=True, scope="module")
def _no_verdict_memo() -> Iterator[None]:
    # Every case goes through the full schema validation; nothing lands in the user's cache.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_NO_CACHE", "1")
        yield


def case(case_id: str, body: str, path: str, message: str, **kwargs: Any) -> Any:
    return pytest.param(Case(body, path, message, **kwargs), id=case_id)


CASES = [
    # --- version and top level ----------------------------------------------------------
    case(
        "missing-apiVersion",
        "project: {name: demo}\nmodels: {a: {}}\n",
        "",
        "missing required key 'apiVersion'",
        hint="apiVersion: mlops/v1alpha1",
        head=False,
        line=1,
    ),
    case(
        "wrong-apiVersion",
        "apiVersion: mlops/v2  #<\nproject: {name: demo}\nmodels: {a: {}}\n",
        "apiVersion",
        "must be 'mlops/v1alpha1', got 'mlops/v2'",
        hint="mlops/v1alpha1",
        at="mlops/v2",
        head=False,
    ),
    case(
        "unknown-top-level-key",
        "models: {a: {}}\nmodles: {b: {}}  #<\n",
        "modles",
        "unknown key 'modles'",
        hint="did you mean 'models'?",
        at="modles",
    ),
    case(
        "missing-models-and-misspelt",
        "model:  #<\n  a: {}\n",
        "model",
        "unknown key 'model'",
        hint="did you mean 'models'?",
        at="model",
        count=2,
    ),
    case(
        "unknown-nested-key",
        """\
        models:
          a:
            deploy:
              replica: 3  #<
        """,
        "models.a.deploy.replica",
        "unknown key 'replica'",
        hint="did you mean 'replicas'?",
        at="replica",
    ),
    case(
        "unknown-key-lists-allowed",
        """\
        models:
          a:
            serve: {bogus: 1}  #<
        """,
        "models.a.serve.bogus",
        "unknown key 'bogus'",
        hint="allowed keys here: runtime, host, port",
        at="bogus",
    ),
    case(
        "tests-args-not-a-list",
        "tests: {args: -x}  #<\nmodels: {a: {}}\n",
        "tests.args",
        "expected a list, got a string '-x'",
        hint="e.g. ['-x', '--durations=10']",
        at="-x",
    ),
    # --- types and ranges ---------------------------------------------------------------
    case(
        "replicas-not-integer",
        """\
        models:
          a:
            deploy:
              replicas: two  #<
        """,
        "models.a.deploy.replicas",
        "expected an integer, got a string 'two'",
        hint="Replicas of the stable track",
        at="two",
    ),
    case(
        "model-not-mapping",
        "models:\n  a: [x]  #<\n",
        "models.a",
        "expected a mapping, got a list",
        hint="One model of the project",
        at="[x]",
    ),
    case(
        "host-needs-quotes",
        """\
        models:
          a:
            serve:
              host: 2020  #<
        """,
        "models.a.serve.host",
        "expected a string, got an integer 2020",
        hint="Quote the value",
        at="2020",
    ),
    case(
        "gpu-negative",
        """\
        models:
          a:
            deploy:
              resources: {gpu: -1}  #<
        """,
        "models.a.deploy.resources.gpu",
        "-1 is less than the minimum of 0",
        hint="Number of GPUs",
        at="-1",
    ),
    case(
        "port-above-maximum",
        """\
        models:
          a:
            serve: {port: 70000}  #<
        """,
        "models.a.serve.port",
        "70000 is greater than the maximum of 65535",
        hint="HTTP port",
        at="70000",
    ),
    case(
        "enum-typo-runtime",
        """\
        models:
          a:
            serve:
              runtime: tfservin  #<
        """,
        "models.a.serve.runtime",
        "'tfservin' is not one of: mlops, tfserving",
        hint="did you mean 'tfserving'?",
        at="tfservin",
    ),
    case(
        "enum-typo-tag-dirty",
        IMAGE_SERVE.replace(
            'tensorflow: "2.21.0"}', 'tensorflow: "2.21.0"}\n    tag: {dirty: refuze}  #<'
        )
        + "models: {a: {}}\n",
        "images.serve.tag.dirty",
        "'refuze' is not one of",
        hint="did you mean 'refuse'?",
        at="refuze",
    ),
    case(
        "empty-threshold",
        """\
        models:
          a:
            evaluate:
              dataset: m:heldout
              thresholds:
                accuracy: {}  #<
        """,
        "models.a.evaluate.thresholds.accuracy",
        "this mapping is empty",
        hint="",
        at="{}",
    ),
    case(
        "hosts-empty-list",
        """\
        models:
          a:
            rollout: {hosts: []}  #<
        """,
        "models.a.rollout.hosts",
        "needs at least 1 item",
        hint="Hosts",
        at="[]",
    ),
    case(
        "inputs-repeated",
        """\
        data:
          digits: {path: digits.csv}
        models:
          a:
            train: {entrypoint: "m:train", inputs: [digits, digits]}  #<
        """,
        "models.a.train.inputs",
        "'digits' is listed more than once",
        at="[digits",
    ),
    case(
        "not-a-finite-number",
        """\
        models:
          a:
            deploy:
              resources: {cpu: .nan}  #<
        """,
        "models.a.deploy.resources.cpu",
        "'.nan' is not a finite number",
        hint="finite number",
        at=".nan",
    ),
    # --- names and forms ----------------------------------------------------------------
    case(
        "uppercase-model-name",
        "models:\n  Digits: {}  #<\n",
        "models.Digits",
        "name 'Digits' is not allowed",
        hint="e.g. 'digits'",
        at="Digits",
    ),
    case(
        "image-tag-latest",
        """\
        images:
          serve:
            repository: demo-serve
            base: {image: "python:latest"}  #<
        models: {a: {}}
        """,
        "images.serve.base.image",
        "'python:latest' uses the tag 'latest'",
        hint="pin a version tag",
        at='"python:latest"',
    ),
    case(
        "tag-template-latest",
        IMAGE_SERVE.replace(
            'tensorflow: "2.21.0"}',
            'tensorflow: "2.21.0"}\n    tag: {policy: template, template: latest}  #<',
        )
        + "models: {a: {}}\n",
        "images.serve.tag.template",
        "the tag 'latest' is never produced",
        hint="{commit}",
        at="latest}",
    ),
    case(
        "tag-template-constant",
        IMAGE_SERVE.replace(
            'tensorflow: "2.21.0"}',
            'tensorflow: "2.21.0"}\n    tag: {policy: template, template: prod}  #<',
        )
        + "models: {a: {}}\n",
        "images.serve.tag.template",
        "template 'prod' gives every build the same tag",
        hint="{commit}, {short}",
        at="prod}",
    ),
    case(
        "tag-template-policy-without-template",
        IMAGE_SERVE.replace(
            'tensorflow: "2.21.0"}', 'tensorflow: "2.21.0"}\n    tag: {policy: template}  #<'
        )
        + "models: {a: {}}\n",
        "images.serve.tag.policy",
        "policy 'template' needs a template",
        hint="add tag.template",
        at="template}",
    ),
    case(
        "image-base-incomplete",
        """\
        images:
          serve:
            repository: demo-serve
            base: {variant: gpu}  #<
        models: {a: {}}
        """,
        "images.serve.base",
        "give either 'variant' + 'tensorflow' or 'image'",
        at="{variant",
    ),
    case(
        "bad-import-path",
        """\
        models:
          a:
            train:
              entrypoint: model.train  #<
        """,
        "models.a.train.entrypoint",
        "'model.train' is not in the expected form",
        hint="'package.module:function'",
        at="model.train",
    ),
    case(
        "bad-duration",
        """\
        models:
          a:
            train:
              entrypoint: m:train
              timeout: 5min  #<
        """,
        "models.a.train.timeout",
        "'5min' is not in the expected form",
        hint="'500ms', '30s', '5m' or '1h'",
        at="5min",
    ),
    case(
        "bad-memory-quantity",
        """\
        models:
          a:
            deploy:
              resources: {memory: 4GB}  #<
        """,
        "models.a.deploy.resources.memory",
        "'4GB' is not in the expected form",
        hint="'512Mi', '4Gi'",
        at="4GB",
    ),
    case(
        "bad-cpu-quantity",
        """\
        models:
          a:
            deploy:
              resources: {cpu: 2 cores}  #<
        """,
        "models.a.deploy.resources.cpu",
        "'2 cores' is not in the expected form",
        hint="'500m'",
        at="2 cores",
    ),
    # --- data -----------------------------------------------------------------------------
    case(
        "data-path-and-package",
        """\
        data:
          digits: {path: d.csv, package: sklearn, resource: d.csv.gz}  #<
        models: {a: {}}
        """,
        "data.digits",
        "give one of 'path', 'package' + 'resource' or 'uri' + 'sha256', not both",
        hint="A data input",
        at="{path",
    ),
    case(
        "data-package-without-resource",
        """\
        data:
          digits: {package: sklearn}  #<
        models: {a: {}}
        """,
        "data.digits",
        "incomplete: give one of 'path', 'package' + 'resource' or 'uri' + 'sha256'",
        hint="add 'resource': Path of the file inside the package",
        at="{package",
    ),
    case(
        "unknown-data-input",
        """\
        data:
          digits: {path: d.csv}
        models:
          a:
            train: {entrypoint: "m:train", inputs: [digit]}  #<
        """,
        "models.a.train.inputs[0]",
        "unknown data input 'digit'",
        hint="did you mean 'digits'?",
        at="digit]",
    ),
    # --- images referenced ---------------------------------------------------------------
    case(
        "unknown-image-suggestion",
        IMAGE_SERVE
        + textwrap.dedent("""\
        models:
          a:
            image: serv  #<
        """),
        "models.a.image",
        "unknown image 'serv'",
        hint="did you mean 'serve'?",
        at="serv",
    ),
    case(
        "unknown-canary-image",
        IMAGE_SERVE
        + textwrap.dedent("""\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              stable: {weight: 90}
              canary: {weight: 10, image: gpu-build}  #<
        """),
        "models.a.rollout.canary.image",
        "unknown image 'gpu-build'",
        hint="declared images: serve",
        at="gpu-build",
    ),
    case(
        "container-training-without-image",
        """\
        models:
          a:
            train:
              entrypoint: m:train
              container: true  #<
        """,
        "models.a.train.container",
        "container training needs an image",
        hint="set train.image",
        at="true",
    ),
    # --- resources ---------------------------------------------------------------------
    case(
        "gpu-limit-below-request",
        """\
        models:
          a:
            train:
              entrypoint: m:train
              resources: {gpu: 2, limits: {gpu: 1}}  #<
        """,
        "models.a.train.resources.limits.gpu",
        "GPU limit 1 is below the request 2",
        hint="limit >= request",
        at="1}}",
    ),
    case(
        "cpu-limit-below-request",
        """\
        models:
          a:
            deploy:
              resources:
                cpu: "2"
                limits: {cpu: 500m}  #<
        """,
        "models.a.deploy.resources.limits.cpu",
        "CPU limit 500m is below the request 2",
        hint="raise limits.cpu",
        at="500m",
    ),
    case(
        "memory-limit-below-request",
        """\
        models:
          a:
            deploy:
              resources:
                memory: 2Gi
                limits: {memory: 1500Mi}  #<
        """,
        "models.a.deploy.resources.limits.memory",
        "memory limit 1500Mi is below the request 2Gi",
        hint="raise limits.memory",
        at="1500Mi",
    ),
    # --- evaluation gate ----------------------------------------------------------------
    case(
        "threshold-metric-typo",
        """\
        models:
          a:
            evaluate:
              dataset: m:heldout
              thresholds:
                acuracy: {min: 0.9}  #<
        """,
        "models.a.evaluate.thresholds.acuracy",
        "threshold for 'acuracy', a metric this evaluation never produces",
        hint="did you mean 'accuracy'?",
        at="acuracy",
    ),
    case(
        "threshold-latency-not-measured",
        """\
        models:
          a:
            evaluate:
              dataset: m:heldout
              thresholds:
                latency_b1_p95_ms: {max: 20}  #<
        """,
        "models.a.evaluate.thresholds.latency_b1_p95_ms",
        "never produces",
        hint="evaluate.latency",
        at="latency_b1",
    ),
    case(
        "threshold-min-above-max",
        """\
        models:
          a:
            evaluate:
              dataset: m:heldout
              thresholds:
                accuracy: {min: 0.9, max: 0.5}  #<
        """,
        "models.a.evaluate.thresholds.accuracy.min",
        "min 0.9 is greater than max 0.5",
        hint="swap them",
        at="0.9",
    ),
    case(
        "vs-baseline-without-baseline",
        """\
        models:
          a:
            evaluate:
              dataset: m:heldout
              baseline: none
              thresholds:
                accuracy: {vs_baseline: {max_regression: 0.01}}  #<
        """,
        "models.a.evaluate.thresholds.accuracy.vs_baseline",
        "a relative threshold needs a baseline",
        hint="evaluate.baseline",
        at="{max_regression",
    ),
    case(
        "custom-metric-name-clash",
        """\
        models:
          a:
            evaluate:
              dataset: m:heldout
              metrics:
                - accuracy
                - {name: accuracy, function: "m:my_accuracy"}  #<
        """,
        "models.a.evaluate.metrics[1].name",
        "metric name 'accuracy' is already taken",
        hint="a name of its own",
        at="accuracy,",
    ),
    case(
        "metric-typo",
        """\
        models:
          a:
            evaluate:
              dataset: m:heldout
              metrics: [acuracy]  #<
        """,
        "models.a.evaluate.metrics[0]",
        "unknown metric 'acuracy'",
        hint="did you mean 'accuracy'?",
        at="acuracy",
    ),
    case(
        "custom-metric-without-function",
        """\
        models:
          a:
            evaluate:
              dataset: m:heldout
              metrics:
                - {name: brier}  #<
        """,
        "models.a.evaluate.metrics[0]",
        "missing required key 'function'",
        hint="Callable",
        at="{name",
    ),
    # --- rollout ------------------------------------------------------------------------
    case(
        "weights-not-100",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              stable: {weight: 80}
              canary: {weight: 10}  #<
        """,
        "models.a.rollout.canary.weight",
        "weights add up to 90, not 100",
        hint="set canary.weight to 20",
        at="10}",
    ),
    case(
        "stable-below-100-without-canary",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              stable: {weight: 80}  #<
        """,
        "models.a.rollout.stable.weight",
        "no canary to take the other 20",
        hint="declare rollout.canary",
        at="80",
    ),
    case(
        "ab-without-canary",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              ab: {header: x-canary}  #<
        """,
        "models.a.rollout.ab",
        "no canary is declared",
        hint="declare rollout.canary",
        at="{header",
    ),
    case(
        "steps-not-increasing",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              canary: {}
              analysis: {prometheus: "http://prom:9090", interval: 1m}
              steps: [10, 50, 25, 100]  #<
        """,
        "models.a.rollout.steps[2]",
        "must increase, but 25 follows 50",
        hint="rising order",
        at="25, 100]",
    ),
    case(
        "steps-without-canary",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              analysis: {prometheus: "http://prom:9090", interval: 1m}
              steps: [10, 100]  #<
        """,
        "models.a.rollout.steps",
        "rollout steps need a canary",
        hint="declare rollout.canary",
        at="[10",
    ),
    case(
        "steps-without-analysis",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              canary: {}
              steps: [10, 100]  #<
        """,
        "models.a.rollout.steps",
        "rollout steps need rollout.analysis",
        hint="PROMETHEUS_URL",
        at="[10",
    ),
    case(
        "steps-with-fixed-weights",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              canary: {weight: 10}  #<
              analysis: {prometheus: "http://prom:9090", interval: 1m}
              steps: [10, 100]
        """,
        "models.a.rollout.canary.weight",
        "weight comes from the steps",
        hint="remove canary.weight",
        at="10}",
    ),
    case(
        "steps-not-ending-at-100",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              canary: {}
              analysis: {prometheus: "http://prom:9090", interval: 1m}
              steps: [10, 50]  #<
        """,
        "models.a.rollout.steps[1]",
        "the last step is 50, not 100",
        hint="[10, 50, 100]",
        at="50]",
    ),
    case(
        "canary-without-weight-or-steps",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              canary: {replicas: 2}  #<
        """,
        "models.a.rollout.canary",
        "no weight and there are no rollout.steps",
        hint="set canary.weight",
        at="{replicas",
    ),
    case(
        "live-threshold-needs-labels",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              canary: {}
              steps: [100]
              analysis:
                prometheus: "http://prom:9090"
                interval: 1m
                thresholds:
                  accuracy: {min: 0.9}  #<
        """,
        "models.a.rollout.analysis.thresholds.accuracy",
        "'accuracy' cannot be measured on live traffic",
        hint="needs labels; live traffic has none — keep it in evaluate.thresholds",
        at="{min",
    ),
    case(
        "live-threshold-unknown",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              canary: {}
              steps: [100]
              analysis:
                prometheus: "http://prom:9090"
                interval: 1m
                thresholds:
                  eror_rate: {max: 0.01}  #<
        """,
        "models.a.rollout.analysis.thresholds.eror_rate",
        "cannot be measured on live traffic",
        hint="did you mean 'error_rate'?",
        at="{max",
    ),
    case(
        "live-drift-without-evaluate-drift",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              canary: {}
              steps: [100]
              analysis:
                prometheus: "http://prom:9090"
                interval: 1m
                thresholds:
                  drift_psi_max: {max: 0.2}  #<
        """,
        "models.a.rollout.analysis.thresholds.drift_psi_max",
        "evaluate.drift declares none",
        hint="add evaluate.drift",
        at="{max",
    ),
    case(
        "shared-metric-declared-twice",
        """\
        models:
          a:
            evaluate:
              dataset: m:heldout
              drift: {reference: m:training_data}
              thresholds: {drift_psi_max: {max: 0.25}}
            rollout:
              hosts: [a.example.com]
              canary: {}
              steps: [100]
              analysis:
                prometheus: "http://prom:9090"
                interval: 1m
                thresholds:
                  drift_psi_max: {max: 0.2}  #<
        """,
        "models.a.rollout.analysis.thresholds.drift_psi_max",
        "one declaration checks both places",
        hint="remove it here",
        at="{max",
    ),
    case(
        "analysis-without-steps",
        """\
        models:
          a:
            rollout:
              hosts: [a.example.com]
              canary: {weight: 10}
              analysis: {prometheus: "http://prom:9090", interval: 1m}  #<
        """,
        "models.a.rollout.analysis",
        "rollout.steps is empty",
        hint="declare rollout.steps",
        at="{prometheus",
    ),
    # --- deploy -------------------------------------------------------------------------
    case(
        "autoscaling-min-above-max",
        """\
        models:
          a:
            deploy:
              autoscaling: {min_replicas: 5, max_replicas: 2}  #<
        """,
        "models.a.deploy.autoscaling.min_replicas",
        "min_replicas 5 is above max_replicas 2",
        hint="swap them",
        at="5,",
    ),
    case(
        "s3-source-without-uri",
        """\
        models:
          a:
            deploy:
              model_source: {type: s3}  #<
        """,
        "models.a.deploy.model_source",
        "model_source type 's3' needs a uri",
        hint="s3://",
        at="{type",
    ),
    case(
        "duplicate-secret-env",
        """\
        models:
          a:
            deploy:
              secrets:
                - {env: TOKEN, secret: api, key: token}
                - {env: TOKEN, secret: other, key: token}  #<
        """,
        "models.a.deploy.secrets[1].env",
        "environment variable 'TOKEN' is set twice",
        hint="secrets[0] and secrets[1]",
        at="TOKEN",
    ),
    # --- images vs training ------------------------------------------------------------
    case(
        "gpu-training-on-cpu-base",
        """\
        images:
          trainer: {kind: train, repository: demo-train, base: {variant: cpu, tensorflow: "2.21.0"}}
        models:
          a:
            train:
              entrypoint: m:train
              container: true
              image: trainer
              resources: {gpu: 1}  #<
        """,
        "models.a.train.resources.gpu",
        "1 GPU(s) requested but image 'trainer' has a CPU-only base",
        hint="base.variant to 'gpu'",
        at="1}",
    ),
    case(
        "container-training-in-a-serve-image",
        IMAGE_SERVE
        + textwrap.dedent("""\
        models:
          a:
            image: serve
            train:
              entrypoint: m:train
              container: true  #<
        """),
        "models.a.train.container",
        "container training needs an image of kind 'train', and image 'serve' is of kind 'serve'",
        hint="add an image with kind: train",
        at="true",
    ),
    case(
        "base-tf-differs-from-lock",
        """\
        python: {requirements: requirements.lock}
        images:
          serve:
            repository: demo-serve
            base: {variant: cpu, tensorflow: "2.16.1"}  #<
        models: {a: {}}
        """,
        "images.serve.base.tensorflow",
        "base TensorFlow 2.16.1 differs from 2.21.0 pinned in requirements.lock",
        hint="align the base with the lock",
        at='"2.16.1"',
        lock="numpy==2.1.0\ntensorflow-cpu==2.21.0\n    # via -r requirements.in\n",
    ),
    # --- YAML itself --------------------------------------------------------------------
    case(
        "duplicate-key",
        "models:\n  a: {}\n  a: {}  #<\n",
        "models.a",
        "duplicate key 'a'",
        hint="YAML keeps only the last",
        at="a:",
    ),
    case(
        "yaml-unclosed-flow-mapping",
        "models:\n  a:\n    serve: {port: 1\n    deploy: {}  #<\n",
        "",
        "did not find expected ',' or '}' while parsing a flow mapping (line 5, column 12)",
        hint="indentation",
        at=": {}",
    ),
    case(
        "yaml-tab-indentation",
        "models:\n  a:\n\tserve: {}  #<\n",
        "",
        "found character that cannot start any token",
        hint="indent with spaces",
        at="\t",
    ),
    case(
        "yaml-bad-indentation",
        "models:\n  a:\n   serve: {}\n    deploy: {}  #<\n",
        "",
        "invalid YAML",
        hint="indentation",
        at="deploy",
    ),
    case(
        "empty-file",
        "",
        "",
        "the file is empty, expected a mapping",
        hint="apiVersion: mlops/v1alpha1",
        head=False,
        line=1,
    ),
    case("comment-only-file", "# nothing yet\n", "", "the file is empty", head=False, line=1),
    case(
        "non-mapping-file",
        "- digits\n- mnist\n",
        "",
        "the file is a list, expected a mapping",
        hint="start with 'apiVersion",
        head=False,
        line=1,
    ),
    case(
        "recursive-alias",
        "models:\n  a: &me  #<\n    serve: *me\n",
        "",
        "an alias refers to a collection that contains it",
        hint="anchor",
        at="&me",
    ),
    case(
        "python-tag",
        "store: !!python/object:os.system x  #<\nmodels: {a: {}}\n",
        "",
        "could not determine a constructor",
        hint="no tags",
        at="!!python",
    ),
    # --- interpolation -----------------------------------------------------------------
    case(
        "unset-variable",
        """\
        models:
          a:
            deploy:
              namespace: ${NAMESPACE}  #<
        """,
        "models.a.deploy.namespace",
        "environment variable 'NAMESPACE' is not set",
        hint="${NAMESPACE:-value}",
        at="${NAMESPACE}",
    ),
    case(
        "malformed-reference",
        """\
        models:
          a:
            deploy:
              namespace: ml-${TEAM  #<
        """,
        "models.a.deploy.namespace",
        "malformed reference '${TEAM'",
        hint="${NAME:-default}",
        at="ml-",
    ),
    case(
        "variable-value-fails-schema",
        """\
        models:
          a:
            deploy:
              replicas: ${REPLICAS}  #<
        """,
        "models.a.deploy.replicas",
        "expected an integer, got a string 'many'",
        at="${REPLICAS}",
        env={"REPLICAS": "many"},
    ),
    # --- profiles and defaults -----------------------------------------------------------
    case(
        "unknown-profile",
        """\
        models: {a: {}}
        profiles:
          prod: {}  #<
          ci: {}
        """,
        "profiles",
        "unknown profile 'prd'",
        hint="did you mean 'prod'?",
        at="prod",
        profile="prd",
    ),
    case(
        "unknown-profile-none-declared",
        "models: {a: {}}\n",
        "profiles",
        "unknown profile 'prod'",
        hint="declares no profiles",
        profile="prod",
        line=1,
    ),
    case(
        "profile-overrides-apiVersion",
        """\
        models: {a: {}}
        profiles:
          prod:
            apiVersion: mlops/v2  #<
        """,
        "profiles.prod.apiVersion",
        "a profile cannot override 'apiVersion'",
        hint="remove 'apiVersion' from profiles.prod",
        at="apiVersion",
        profile="prod",
    ),
    case(
        "error-inside-profile-overlay",
        """\
        models:
          a:
            deploy: {replicas: 2}
        profiles:
          prod:
            models:
              a:
                deploy: {replicas: -3}  #<
        """,
        "models.a.deploy.replicas (from profiles.prod.models.a.deploy.replicas)",
        "-3 is less than the minimum of 0",
        at="-3",
        profile="prod",
    ),
    case(
        "unknown-key-inside-profile-overlay",
        """\
        models:
          a: {}
        profiles:
          ci:
            models:
              a:
                serve: {prot: 9000}  #<
        """,
        "models.a.serve.prot (from profiles.ci.models.a.serve.prot)",
        "unknown key 'prot'",
        hint="did you mean 'port'?",
        at="prot",
        profile="ci",
    ),
    case(
        "error-from-defaults",
        """\
        defaults:
          deploy:
            replica: 3  #<
        models:
          a: {}
        """,
        "models.a.deploy.replica (from defaults.deploy.replica)",
        "unknown key 'replica'",
        hint="did you mean 'replicas'?",
        at="replica",
    ),
]


def _expected_line(c: Case, text: str) -> int:
    if c.line is not None:
        return c.line
    marked = [n for n, line in enumerate(text.splitlines(), 1) if MARK in line]
    assert len(marked) == 1, "each case marks exactly one line"
    return marked[0]


def _expected_column(c: Case, text: str, line: int) -> int | None:
    if c.at is None:
        return None
    source = text.splitlines()[line - 1]
    assert c.at in source, f"{c.at!r} is not on line {line}: {source!r}"
    return source.index(c.at) + 1


def _problems(c: Case, root: Path) -> list[Problem]:
    if c.lock is not None:
        (root / "requirements.lock").write_text(c.lock)
    with pytest.raises(ConfigError) as caught:
        loads(c.text(), file="mlops.yaml", root=root, profile=c.profile, env=c.env)
    return caught.value.problems


def test_there_are_at_least_forty_distinct_cases() -> None:
    texts = {(p.values[0].text(), p.values[0].profile) for p in CASES}
    assert len(CASES) >= 40
    assert len(texts) == len(CASES), "every case is a different document"


@pytest.mark.parametrize("c", CASES)
def test_invalid_config_is_located_and_explained(c: Case, tmp_path: Path) -> None:
    text = c.text()
    problems = _problems(c, tmp_path)
    rendered = "\n".join(p.render() for p in problems)
    assert len(problems) == c.count, rendered
    matching = [p for p in problems if p.path == c.path]
    assert len(matching) == 1, f"no single problem at path {c.path!r}:\n{rendered}"
    problem = matching[0]
    line = _expected_line(c, text)
    assert problem.file == "mlops.yaml"
    assert problem.line == line, rendered
    column = _expected_column(c, text, line)
    if column is not None:
        assert problem.column == column, rendered
    assert c.message in problem.message, rendered
    assert c.hint in problem.hint, rendered
    # The rendered form is what a user reads: file:line[:col], path, message, hint.
    where = f"mlops.yaml:{line}" + (f":{column}" if column is not None else "")
    assert where in problem.render()
    if c.hint:
        assert "hint: " in problem.render()


def test_every_problem_has_a_hint_or_a_self_explaining_message(tmp_path: Path) -> None:
    """A problem without a hint must at least say what is expected."""
    for param in CASES:
        for problem in _problems(param.values[0], tmp_path):
            assert problem.hint or "expected" in problem.message or "must" in problem.message, (
                problem.render()
            )


MANY_ERRORS = HEAD + textwrap.dedent("""\
    images:
      serve:
        repository: demo-serve
        base: {image: "python:latest"}
    models:
      a:
        image: serv
        deploy:
          replicas: -1
          resources: {gpu: 1, limits: {gpu: 0}}
        serve:
          runtime: tfservin
        rollout:
          hosts: [a.example.com]
          stable: {weight: 80}
      B: {}
    """)


def test_several_schema_errors_are_all_reported() -> None:
    with pytest.raises(ConfigError) as caught:
        loads(MANY_ERRORS, env={})
    problems = caught.value.problems
    by_path = {p.path: p for p in problems}
    assert set(by_path) == {
        "images.serve.base.image",
        "models.a.deploy.replicas",
        "models.a.serve.runtime",
        "models.B",
    }, "\n".join(p.render() for p in problems)
    assert str(caught.value).startswith("4 problems in config:")
    # Sorted by position, so the report reads top to bottom.
    lines = [p.line or 0 for p in problems]
    assert lines == sorted(lines)


def test_several_cross_field_errors_are_all_reported() -> None:
    fixed = (
        MANY_ERRORS.replace('"python:latest"', '"python:3.11-slim"')
        .replace("replicas: -1", "replicas: 1")
        .replace("tfservin", "tfserving")
        .replace("  B: {}\n", "")
    )
    with pytest.raises(ConfigError) as caught:
        loads(fixed, env={})
    paths = sorted(p.path for p in caught.value.problems)
    assert paths == [
        "models.a.deploy.resources.limits.gpu",
        "models.a.image",
        "models.a.rollout.stable.weight",
    ]
    assert str(caught.value).startswith("3 problems in config:")


def test_defaults_error_is_reported_once_per_model_at_the_defaults_line() -> None:
    text = HEAD + "defaults:\n  deploy:\n    replicas: -1\nmodels:\n  a: {}\n  b: {}\n"
    with pytest.raises(ConfigError) as caught:
        loads(text, env={})
    problems = caught.value.problems
    assert [p.path for p in problems] == [
        "models.a.deploy.replicas (from defaults.deploy.replicas)",
        "models.b.deploy.replicas (from defaults.deploy.replicas)",
    ]
    assert {(p.line, p.column) for p in problems} == {(5, 15)}


def test_missing_file_names_the_fix(tmp_path: Path) -> None:
    from mlops_sessions.config.loader import load

    with pytest.raises(ConfigError) as caught:
        load(tmp_path / "absent.yaml")
    (problem,) = caught.value.problems
    assert problem.message == "file not found"
    assert "--config" in problem.hint


def test_alias_bomb_is_refused_quickly() -> None:
    levels = ["a: &a [x, x, x, x, x, x, x, x, x, x]"]
    for n in range(1, 9):
        prev, cur = chr(ord("a") + n - 1), chr(ord("a") + n)
        levels.append(f"{cur}: &{cur} [" + ", ".join([f"*{prev}"] * 10) + "]")
    text = HEAD + "models: {m: {}}\n" + "\n".join(levels) + "\n"
    with pytest.raises(ConfigError) as caught:
        loads(text, env={})
    assert "expands to more than" in str(caught.value)


def test_deep_nesting_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as caught:
        loads("[" * 20000 + "]" * 20000, env={})
    assert "nested too deeply" in str(caught.value)


def test_unset_variable_is_reported_with_the_schema_problems() -> None:
    text = HEAD + textwrap.dedent("""\
        models:
          a:
            deploy:
              namespace: ${NAMESPACE}
              replicas: -2
    """)
    with pytest.raises(ConfigError) as caught:
        loads(text, env={})
    problems = caught.value.problems
    # '${NAMESPACE}' would also fail the name pattern; only the real cause is reported.
    assert [(p.path, p.line) for p in problems] == [
        ("models.a.deploy.namespace", 6),
        ("models.a.deploy.replicas", 7),
    ]
    assert "NAMESPACE" in problems[0].message
    assert "less than the minimum" in problems[1].message
