"""Property: whatever the input, ``loads`` returns a Config or raises ConfigError — never
another exception (no KeyError, TypeError, RecursionError... escaping as a traceback).

Valid documents are mutated the ways people break config files: keys deleted, values
replaced by values of another type, unknown keys inserted, numbers made negative, strings
mangled (``${``, ``:latest``, uppercase, NUL), random structures nested in; and raw YAML-ish
text is thrown at the parser. max_examples keeps the whole module well under 30 s.
"""

from __future__ import annotations

import copy
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from mlops_sessions.config import Config
from mlops_sessions.config.loader import loads
from mlops_sessions.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

SMALL = textwrap.dedent("""\
    apiVersion: mlops/v1alpha1
    project: {name: demo}
    data:
      d: {path: data.csv}
    images:
      serve:
        repository: demo-serve
        base: {image: "nvidia/cuda:12.4.1-runtime", gpu: true}
        tag: {policy: template, template: "v-{short}"}
      trainer:
        kind: train
        repository: demo-train
        base: {image: "nvidia/cuda:12.4.1-runtime", gpu: true}
    defaults:
      deploy: {replicas: 2, resources: {cpu: 500m, memory: 1Gi, limits: {cpu: 1, memory: 2Gi}}}
    models:
      m:
        image: serve
        train:
          entrypoint: m:train
          inputs: [d]
          container: true
          image: trainer
          resources: {gpu: 1, limits: {gpu: 1}}
        evaluate:
          dataset: m:heldout
          metrics: [accuracy, {name: brier, function: "m:brier", higher_is_better: false}]
          latency: {batch_sizes: [1, 8]}
          thresholds:
            accuracy: {min: 0.5, max: 1.0}
            latency_b8_p99_ms: {max: 40}
        deploy:
          autoscaling: {min_replicas: 1, max_replicas: 3}
          model_source:
            type: s3
            uri: "s3://bkt/m.tar.gz"
            sha256: "abababababababababababababababababababababababababababababababab"
          secrets: [{env: A, secret: s, key: k}]
        rollout:
          hosts: [m.example.com]
          canary: {replicas: 1}
          ab: {header: x-canary}
          steps: [10, 50, 100]
          analysis:
            prometheus: "http://prometheus:9090"
            interval: 5m
            thresholds: {error_rate: {max: 0.01}}
    profiles:
      ci:
        models: {m: {deploy: {replicas: "${REPLICAS:-1}"}}}
""")

BASES = [yaml.safe_load((REPO / "mlops.yaml").read_text()), yaml.safe_load(SMALL)]
PROFILES = [None, "ci", "prod"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["${X}", "${X:-1}", "$${X}", "${", "python:latest", "m:train", "500m", "5m"]),
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)


@pytest.fixture(autouse=True, scope="module")
def _no_verdict_memo() -> Iterator[None]:
    # Every example must go through the full JSON Schema validation, and none is
    # remembered in the user's cache.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_NO_CACHE", "1")
        yield


def _other_type(current: Any) -> st.SearchStrategy[Any]:
    """Values whose type differs from current's."""
    return values.filter(lambda v: type(v) is not type(current))


def _paths(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [path]
    if isinstance(node, dict):
        for key, value in node.items():
            out += _paths(value, (*path, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            out += _paths(value, (*path, index))
    return out


def _parent(doc: Any, path: tuple[Any, ...]) -> Any:
    for part in path[:-1]:
        doc = doc[part]
    return doc


def _mangle(text: str, data: st.DataObject) -> str:
    how = data.draw(st.sampled_from(["upper", "prefix", "suffix", "empty", "middle"]))
    if how == "upper":
        return text.upper()
    if how == "empty":
        return ""
    piece = data.draw(
        st.sampled_from(["${", "${UNSET}", ":latest", "\x00", " ", "-", "é", "{", "$$"])
    )
    if how == "prefix":
        return piece + text
    if how == "suffix":
        return text + piece
    middle = len(text) // 2
    return text[:middle] + piece + text[middle:]


def _mutate(doc: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    doc = copy.deepcopy(doc)
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        paths = [p for p in _paths(doc) if p]
        path = data.draw(st.sampled_from(paths))
        parent = _parent(doc, path)
        key = path[-1]
        current = parent[key]
        kind = data.draw(
            st.sampled_from(["delete", "retype", "unknown", "negate", "mangle", "nest"])
        )
        if kind == "delete":
            del parent[key]
        elif kind == "retype":
            parent[key] = data.draw(_other_type(current))
        elif kind == "unknown" and isinstance(current, dict):
            current[data.draw(st.text(min_size=1, max_size=10))] = data.draw(values)
        elif (
            kind == "negate" and isinstance(current, (int, float)) and not isinstance(current, bool)
        ):
            parent[key] = -current - 1
        elif kind == "mangle" and isinstance(current, str):
            parent[key] = _mangle(current, data)
        else:
            parent[key] = {"nested": [current, data.draw(values)]}
    return doc


def _check(text: str, profile: str | None, env: dict[str, str]) -> None:
    try:
        result = loads(text, file="mlops.yaml", root=REPO, profile=profile, env=env)
    except ConfigError as exc:
        assert exc.problems, "a ConfigError always carries at least one problem"
        for problem in exc.problems:
            assert problem.message
            problem.render()
        str(exc)
        return
    assert isinstance(result, Config)


SETTINGS = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@SETTINGS
@given(data=st.data())
def test_mutated_documents_only_raise_config_error(data: st.DataObject) -> None:
    base = data.draw(st.sampled_from(BASES))
    mutated = _mutate(base, data)
    text = yaml.safe_dump(mutated, sort_keys=False, allow_unicode=True)
    profile = data.draw(st.sampled_from([*PROFILES, "nope"]))
    env = data.draw(st.sampled_from([{}, {"REPLICAS": "x"}, {"DIGITS_REPLICAS": "[1]"}]))
    _check(text, profile, env)


YAML_TOKENS = st.sampled_from(
    [
        "apiVersion: mlops/v1alpha1\n",
        "models:\n",
        "  m:\n",
        "    deploy:\n",
        "      replicas: ",
        "- ",
        "? ",
        ": ",
        "{",
        "}",
        "[",
        "]",
        ",",
        "&a ",
        "*a",
        "<<: *a\n",
        "!!int ",
        "!!binary ",
        "!!set ",
        "!!timestamp ",
        '"',
        "'",
        "\t",
        "\n",
        "  ",
        "#",
        "---\n",
        "...\n",
        "%YAML 1.1\n",
        "~",
        ".nan",
        "-.inf",
        "0x1F",
        "2024-01-01",
        "${A}",
        "|\n",
        ">-\n",
        "\\",
        "\x00",
        "é",
    ]
)


@settings(max_examples=150, deadline=None, database=None)
@given(pieces=st.lists(YAML_TOKENS | st.text(max_size=6), max_size=30))
@example(pieces=["!!int "])  # found by this test: PyYAML raised IndexError on an empty !!int
def test_random_yaml_text_only_raises_config_error(pieces: list[str]) -> None:
    _check("".join(pieces), None, {})


@settings(max_examples=60, deadline=None, database=None)
@given(text=st.text(max_size=200))
def test_arbitrary_text_only_raises_config_error(text: str) -> None:
    _check(text, None, {})


@pytest.mark.parametrize("base", BASES, ids=["example", "small"])
def test_unmutated_bases_are_valid(base: dict[str, Any]) -> None:
    for profile in PROFILES:
        if profile in (base.get("profiles") or {}) or profile is None:
            config = loads(yaml.safe_dump(base), root=REPO, profile=profile, env={})
            assert isinstance(config, Config)
