"""Class of failure: a name or value Kubernetes refuses passes ``validate`` (issue 12 §1).

Generated names, label keys, label values, hosts and quantities are judged twice: by the
loader, and by an independent oracle — the regular expressions and lengths of the
Kubernetes API machinery (``k8s.io/apimachinery/pkg/util/validation``) and of quantity
parsing. For names, keys and values the two must agree exactly (the schema is neither
looser nor stricter than the cluster); for quantities everything the loader accepts the
cluster accepts. A refusal is located at the key or value, with a hint.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_sessions.config.loader import loads
from mlops_sessions.errors import ConfigError

# k8s.io/apimachinery/pkg/util/validation/validation.go
DNS1123_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")
DNS1035_LABEL = re.compile(r"[a-z]([-a-z0-9]*[a-z0-9])?")
DNS1123_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")
QUALIFIED_NAME = re.compile(r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]")
# k8s.io/apimachinery/pkg/api/resource/quantity.go (the serialised form)
QUANTITY = re.compile(r"([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)")


def k8s_label(text: str) -> bool:
    return len(text) <= 63 and DNS1123_LABEL.fullmatch(text) is not None


def k8s_service_name(text: str) -> bool:
    return len(text) <= 63 and DNS1035_LABEL.fullmatch(text) is not None


def k8s_label_key(text: str) -> bool:
    prefix, slash, name = text.rpartition("/")
    if slash and not (len(prefix) <= 253 and DNS1123_SUBDOMAIN.fullmatch(prefix)):
        return False
    return len(name) <= 63 and QUALIFIED_NAME.fullmatch(name) is not None


def k8s_label_value(text: str) -> bool:
    return text == "" or (len(text) <= 63 and QUALIFIED_NAME.fullmatch(text) is not None)


def k8s_quantity(text: str) -> bool:
    return QUANTITY.fullmatch(text) is not None


HEAD = {"apiVersion": "mlops/v1alpha1", "project": {"name": "demo"}}


@pytest.fixture(autouse=True, scope="module")
def _no_verdict_memo() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_NO_CACHE", "1")
        yield


def verdict(doc: dict[str, Any], path: str) -> bool:
    """True when the loader accepts doc; a refusal must be located at path, with a hint."""
    try:
        loads(yaml.safe_dump({**HEAD, **doc}), env={})
    except ConfigError as exc:
        located = [p for p in exc.problems if p.path == path]
        assert located, f"refused, but not at {path}: {exc}"
        assert all(p.line is not None and p.column is not None and p.hint for p in located)
        return False
    return True


def near_misses(valid: str) -> st.SearchStrategy[str]:
    """Strings around a valid form: the edits people make, and lengths at the limits."""
    chars = st.sampled_from([*"aZ9-_./ *:@é", "", "--", "x" * 63, "x" * 64])

    @st.composite
    def edited(draw: st.DrawFn) -> str:
        base: str = draw(st.from_regex(valid, fullmatch=True))
        where = draw(st.integers(0, len(base)))
        insert: str = draw(chars)
        return base[:where] + insert + base[where + draw(st.integers(0, 1)) :]

    return st.from_regex(valid, fullmatch=True) | edited() | st.text(max_size=70)


NAME = r"[a-z0-9]([-a-z0-9]{0,20}[a-z0-9])?"
KEY = (
    r"([a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?(\.[a-z]{2,5}){0,2}/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?"
)
SETTINGS = settings(max_examples=120, deadline=None, database=None)

CLASSES: dict[
    str, tuple[str, Callable[[str], bool], Callable[[str], tuple[dict[str, Any], str]]]
] = {
    "model name (DNS-1035 label: a Service name)": (
        NAME,
        k8s_service_name,
        lambda s: ({"models": {s: {}}}, f"models.{s}"),
    ),
    "namespace (DNS-1123 label)": (
        NAME,
        k8s_label,
        lambda s: ({"models": {"a": {"deploy": {"namespace": s}}}}, "models.a.deploy.namespace"),
    ),
    "node_selector key (label key)": (
        KEY,
        k8s_label_key,
        lambda s: (
            {"models": {"a": {"deploy": {"node_selector": {s: "x"}}}}},
            f"models.a.deploy.node_selector.{s}",
        ),
    ),
    "node_selector value (label value)": (
        r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,10}[A-Za-z0-9])?",
        k8s_label_value,
        lambda s: (
            {"models": {"a": {"deploy": {"node_selector": {"pool": s}}}}},
            "models.a.deploy.node_selector.pool",
        ),
    ),
}


@pytest.mark.parametrize("rule", sorted(CLASSES))
def test_names_agree_with_kubernetes(rule: str) -> None:
    valid, oracle, place = CLASSES[rule]

    @SETTINGS
    @given(text=near_misses(valid))
    def check(text: str) -> None:
        doc, path = place(text)
        assert verdict(doc, path) == oracle(text), f"{rule}: {text!r}"

    check()


@SETTINGS
@given(text=near_misses(r"[0-9]{1,4}(\.[0-9]{1,2})?(Ki|Mi|Gi|k|M|G|m)?"))
def test_memory_the_loader_accepts_is_a_kubernetes_quantity(text: str) -> None:
    doc = {"models": {"a": {"deploy": {"resources": {"memory": text}}}}}
    if verdict(doc, "models.a.deploy.resources.memory"):
        assert k8s_quantity(text), text


@SETTINGS
@given(text=near_misses(r"[0-9]{1,3}(\.[0-9])?m?"))
def test_cpu_the_loader_accepts_is_a_kubernetes_quantity(text: str) -> None:
    doc = {"models": {"a": {"deploy": {"resources": {"cpu": text}}}}}
    if verdict(doc, "models.a.deploy.resources.cpu"):
        assert k8s_quantity(text), text


@SETTINGS
@given(text=near_misses(r"[a-z0-9]([-a-z0-9]{0,8}[a-z0-9])?(\.[a-z]{2,6}){1,3}"))
def test_hosts_the_loader_accepts_are_dns_names(text: str) -> None:
    doc = {"models": {"a": {"rollout": {"hosts": [text]}}}}
    if verdict(doc, "models.a.rollout.hosts[0]"):
        bare = text[2:] if text.startswith("*.") else text
        assert text == "*" or (len(text) <= 253 and DNS1123_SUBDOMAIN.fullmatch(bare)), text
        assert all(len(label) <= 63 for label in bare.split("."))


@SETTINGS
@given(value=st.integers(min_value=-(2**40), max_value=2**40))
def test_replicas_are_int32(value: int) -> None:
    doc = {"models": {"a": {"deploy": {"replicas": value}}}}
    assert verdict(doc, "models.a.deploy.replicas") == (0 <= value <= 2**31 - 1)
