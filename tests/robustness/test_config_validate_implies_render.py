"""Class of failure: ``validate`` passes, then render or the cluster refuses (issue 12 §1).

The property, over the hypothesis mutation fuzzer of ``tests/config/test_loader_fuzz.py``
(its bases and mutations, plus a base that sets every deploy and rollout key and
mutations aimed at those sections with the values Kubernetes and Istio refuse): for every
mutated document the loader (``mlops validate``) accepts, under every profile,

- render builds every deployable model's manifests ("validate passed, render refused" is
  a failure), and
- every object validates against the official Kubernetes schemas (kubernetes-validate,
  strict) and the Istio schemas ("render passed, schema refused" is a failure).

Rule classes the mutations reach (see ``K8S_VALUES``): names (DNS-1123/1035 labels), label
keys and values, quantities, int32 ranges, hosts and gateways, durations, traffic weights,
A/B routes, GPU requests/limits and GPU images, tolerations, model downloads,
disruption budgets, Kubernetes versions, AppArmor profiles. A model without an image
is not deployable; render names that fix itself and it is not drawn here.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from mlops_sessions.config import Config, rules
from mlops_sessions.config.loader import loads, schema
from mlops_sessions.errors import ConfigError, StepError
from mlops_sessions.planning import k8s_validate
from mlops_sessions.planning.manifests import RenderInputs, render
from tests.config.test_loader_fuzz import BASES, _mutate, _parent, _paths, values

REPO = Path(__file__).resolve().parents[2]
STABLE = "registry.example.com/demo/serve@sha256:" + "ab" * 32
CANARY = "registry.example.com/demo/serve@sha256:" + "cd" * 32

# Every deploy and rollout key set, so mutations reach each one.
DEPLOY_ALL = yaml.safe_load(
    textwrap.dedent("""\
    apiVersion: mlops/v1alpha1
    project: {name: demo}
    images:
      serve: {repository: demo-serve, base: {variant: gpu, tensorflow: "2.21.0"}}
      cpu-serve: {repository: demo-cpu, base: {image: "python:3.11-slim"}}
    models:
      m:
        description: "Ranks things"
        image: serve
        serve: {port: 8080, drain: 20s}
        deploy:
          namespace: shop
          kubernetes_version: "1.30"
          replicas: 3
          resources:
            cpu: 500m
            memory: 1Gi
            gpu: 1
            gpu_resource: nvidia.com/gpu
            limits: {cpu: 1, memory: 2Gi, gpu: 1}
          node_selector: {cloud.google.com/gke-accelerator: nvidia-l4, pool: gpu}
          tolerations:
            - {key: dedicated, operator: Equal, value: ml, effect: NoSchedule}
            - {key: spot, operator: Exists, effect: NoExecute, tolerationSeconds: 60}
          probes:
            liveness: {path: /healthz, period: 10s, timeout: 2s, failure_threshold: 3}
            startup: {initial_delay: 1s, period: 5s}
          pdb: {min_available: 1}
          model_source:
            type: s3
            uri: s3://models/m.tgz
            sha256: "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"
            credentials_secret: m-s3
            endpoint: https://minio.example.com:9000
            timeout: 5m
            retries: 3
          secrets: [{env: API_TOKEN, secret: m-api, key: token}]
          security:
            run_as_user: 10001
            apparmor_profile: localhost/m
            selinux: {level: "s0:c1,c2"}
          network_policy: true
          rollout_timeout: 5m
        rollout:
          hosts: [m.example.com, "*.m.example.com"]
          gateways: [istio-system/public, mesh]
          stable: {weight: 90}
          canary: {weight: 10, image: serve, replicas: 1}
          ab: {header: x-canary, value: "yes", cookie: "beta=1"}
      n:
        image: cpu-serve
        deploy: {autoscaling: {min_replicas: 2, max_replicas: 4}, pdb: {min_available: 2}}
        rollout: {hosts: [n.example.com]}
    profiles:
      prod:
        models: {m: {deploy: {replicas: 5}}}
""")
)

# What Kubernetes and Istio refuse, or accept only at the edge of their rules.
K8S_LIST: list[str | int] = [
    "9digits",
    "a b",
    "Upper",
    "x" * 64,
    "x" * 63,
    "-a",
    "a-",
    "a_b",
    "a.b",
    "a..b",
    "a/b",
    "a/b/c",
    "/a",
    "",
    " ",
    "*",
    "*.a.com",
    "a.*.com",
    "a.com:80",
    "http://a.com",
    "mesh",
    "ns/gw",
    "nvidia.com/gpu",
    "nvidia.com/",
    "-/-",
    "1K",
    "1k",
    "1.5Gi",
    "1e3",
    "0",
    "0m",
    "100000000000h",
    "0ms",
    "500ms",
    "beta=(1",
    "(?=x)",
    ".*",
    "a*",
    "Exists",
    "Equal",
    "NoExecute",
    "runtime/default",
    "localhost/",
    "localhost/a b",
    "1.24",
    "1.99",
    "1.30.4",
    0,
    1,
    100,
    101,
    2**31 - 1,
    2**31,
    2**63,
    -1,
]
K8S_VALUES = st.sampled_from(K8S_LIST)
# The same values by type: a mutation that keeps the type passes the schema's type check
# and reaches the rules behind it.
K8S_STRINGS = st.sampled_from([v for v in K8S_LIST if isinstance(v, str)])
K8S_INTS = st.sampled_from([v for v in K8S_LIST if isinstance(v, int)])


@pytest.fixture(autouse=True, scope="module")
def _no_verdict_memo() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_NO_CACHE", "1")
        yield


def _aimed(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """Mutations under models.*.{deploy,rollout,serve} and images.*.base, Kubernetes-shaped."""
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(min_value=1, max_value=2))):
        paths = [
            p
            for p in _paths(doc)
            if len(p) >= 4
            and (
                (p[0] == "models" and p[2] in ("deploy", "rollout", "serve", "image"))
                or (p[0] == "images" and p[2] == "base")
            )
        ]
        if not paths:
            return doc
        path = data.draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        key = path[-1]
        how = data.draw(st.sampled_from(["value", "key", "delete", "copy-host", "any"]))
        if how == "value":
            current = parent[key]
            same = K8S_STRINGS if isinstance(current, str) else K8S_INTS
            typed = isinstance(current, (str, int)) and not isinstance(current, bool)
            parent[key] = data.draw(same if typed else K8S_VALUES)
        elif how == "key" and isinstance(parent, dict):
            parent[str(data.draw(K8S_VALUES))] = parent.pop(key)
        elif how == "delete":
            del parent[key]
        elif how == "copy-host" and "n" in doc.get("models", {}):
            # Two models claiming one host.
            n = doc["models"]["n"].setdefault("rollout", {"hosts": ["n.example.com"]})
            if isinstance(n, dict) and isinstance(n.get("hosts"), list):
                n["hosts"].append("m.example.com")
        else:
            parent[key] = data.draw(values)
    # Models renamed to names a Service cannot have, now and then.
    if data.draw(st.integers(0, 9)) == 0 and isinstance(doc.get("models"), dict):
        models = doc["models"]
        if models:
            old = data.draw(st.sampled_from(sorted(models)))
            models[str(data.draw(K8S_VALUES))] = models.pop(old)
    return doc


def _deployable(config: Config) -> Iterator[tuple[str, RenderInputs]]:
    for name, model in config.models.items():
        if model.image is None:
            continue
        canary = model.rollout.canary if model.rollout is not None else None
        other = canary is not None and (canary.image or model.image) != model.image
        yield (
            name,
            RenderInputs(
                stable_image=STABLE,
                run_id="20261201T000000Z-00000001",
                model_hash="11" * 32,
                git_commit="22" * 20,
                config_hash=config.model_hash(name),
                canary_image=CANARY if other else None,
            ),
        )


def check_validate_implies_render(doc: dict[str, Any], profile: str | None) -> bool:
    """True when validate accepted doc (then render and the schemas must accept it too)."""
    text = yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)
    try:
        config = loads(text, file="mlops.yaml", root=REPO, profile=profile, env={})
    except ConfigError:
        return False
    for name, artifacts in _deployable(config):
        model = config.models[name]
        try:
            objects = render(config, model, artifacts)
        except StepError as exc:
            pytest.fail(f"validate passed, render refused model {name!r}:\n{exc}\n---\n{text}")
        try:
            k8s_validate.validate_objects(objects, model.deploy.kubernetes_version)
        except StepError as exc:
            pytest.fail(f"render passed, schema refused model {name!r}:\n{exc}\n---\n{text}")
    return True


SETTINGS = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@SETTINGS
@given(data=st.data())
@pytest.mark.slow
def test_what_validate_accepts_renders_and_validates(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from([*BASES, DEPLOY_ALL, DEPLOY_ALL]))
    aimed = data.draw(st.booleans())
    doc = _aimed(base, data) if aimed else _mutate(base, data)
    profile = data.draw(st.sampled_from([None, "ci", "prod"]))
    profiles = doc.get("profiles")
    # A mutation may retype 'profiles' itself (an int, a list): then no profile is chosen.
    if not isinstance(profiles, dict) or profile not in profiles:
        profile = None
    accepted = check_validate_implies_render(doc, profile)
    event("validate accepted: rendered" if accepted else "validate refused")


@pytest.mark.parametrize("index", range(len(BASES) + 1))
def test_the_unmutated_bases_validate_and_render(index: int) -> None:
    base = [*BASES, DEPLOY_ALL][index]
    for profile in [None, *sorted(base.get("profiles") or {})]:
        assert check_validate_implies_render(base, profile)


def _pattern(*where: str) -> st.SearchStrategy[str]:
    """Strings the packaged schema's pattern at $defs path `where` accepts."""
    node: Any = schema()["$defs"]
    for part in where:
        node = node[part]
    limit = node.get("maxLength")
    found = st.from_regex(node["pattern"], fullmatch=True)
    return found.filter(lambda s: limit is None or len(s) <= limit)


def _model_edit(draw: st.DrawFn) -> dict[str, Any]:
    int32 = st.integers(0, 2**31 - 1)
    duration = _pattern("duration")
    deploy = {
        "namespace": draw(_pattern("name")),
        "replicas": draw(int32),
        "resources": {
            "cpu": draw(_pattern("cpu") | st.floats(0, 1e6, allow_nan=False)),
            "memory": draw(_pattern("memory")),
            "gpu_resource": draw(_pattern("resources", "properties", "gpu_resource")),
        },
        "node_selector": draw(
            st.dictionaries(_pattern("labelKey"), _pattern("labelValue"), max_size=2)
        ),
        "tolerations": [
            {
                "key": draw(_pattern("labelKey")),
                "operator": "Equal",
                "value": draw(_pattern("labelValue")),
                "effect": draw(st.sampled_from(["NoSchedule", "PreferNoSchedule"])),
            }
        ],
        "probes": {"liveness": {"period": draw(duration), "timeout": draw(duration)}},
        "rollout_timeout": draw(duration),
        "secrets": [
            {"env": "TOKEN", "secret": "s", "key": draw(_pattern("secretRef", "properties", "key"))}
        ],
        "security": {"run_as_user": draw(st.integers(1, 2**31 - 1))},
    }
    rollout = {
        "hosts": draw(st.lists(_pattern("host"), min_size=1, max_size=2, unique=True)),
        "gateways": draw(
            st.lists(
                _pattern("rollout", "properties", "gateways", "items"), max_size=2, unique=True
            )
        ),
        "canary": {"weight": 10, "replicas": draw(int32)},
        "ab": {"header": draw(_pattern("rollout", "properties", "ab", "properties", "header"))},
    }
    return {
        "image": "serve",
        "serve": {"drain": draw(duration)},
        "deploy": deploy,
        "rollout": rollout,
    }


@settings(max_examples=120, deadline=None, database=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
@pytest.mark.slow
def test_values_the_schema_accepts_render_and_validate(data: st.DataObject) -> None:
    """Every value the schema's naming and quantity patterns accept is one the cluster takes."""
    doc = {
        "apiVersion": "mlops/v1alpha1",
        "project": {"name": "demo"},
        "images": {
            "serve": {"repository": "s", "base": {"variant": "gpu", "tensorflow": "2.21.0"}}
        },
        "models": {data.draw(_pattern("modelName")): data.draw(st.composite(_model_edit)())},
    }
    text = yaml.safe_dump(doc, sort_keys=False)
    try:
        loads(text, file="mlops.yaml", root=REPO, env={})
    except ConfigError as exc:
        # The only rules behind these patterns: a duration past what int32 seconds hold,
        # and a timeout or period of zero (config/kinds.py).
        assert all(
            "more seconds than Kubernetes can count" in p.message
            or "is a zero duration" in p.message
            for p in exc.problems
        )
        assert all(p.line is not None for p in exc.problems)
        event("refused by a cross-field rule")
        return
    event("accepted")
    assert check_validate_implies_render(doc, None)


def test_the_property_fails_when_validate_lets_a_render_rule_through(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The harness itself: without the shared rules in validate, the GPU case is caught."""
    doc = copy.deepcopy(DEPLOY_ALL)
    doc["models"]["m"]["deploy"]["resources"]["limits"]["gpu"] = 2
    with pytest.raises(ConfigError, match="must be equal"):
        loads(yaml.safe_dump(doc), root=REPO, env={})
    monkeypatch.setattr(rules, "config_findings", lambda config: [])
    with pytest.raises(pytest.fail.Exception, match="validate passed, render refused"):
        check_validate_implies_render(doc, None)
