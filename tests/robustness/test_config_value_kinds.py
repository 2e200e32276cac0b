"""Class of failure: values that parse but mean nothing pass `validate` (issue 21).

The schema marks each value of a checked kind with ``x-mlops-kind``. This test walks the
schema, finds EVERY annotated location, puts a bad value of that kind there in an
otherwise valid config and asserts that loading refuses it, located at that place (file
line, JSON path) with a hint. A refused config never becomes a ``Config``, so render and
deploy never get it. Good values of the same kind at the same place still load, so a rule
cannot pass this test by refusing everything. The bad values come from the services' own
rules (S3's bucket naming, what a duration of zero or an impossible bound means), not from
the code under test.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_sessions.config import kinds
from mlops_sessions.config.loader import loads, schema
from mlops_sessions.errors import ConfigError
from tests.conftest import REPO

Location = tuple[str, ...]  # '*' for "any key of this mapping" / "any item of this list"

# The repository's example pipeline, plus every section that holds an annotated value.
EXTRA_MODEL = {
    "train": {"timeout": "2h", "pending_timeout": "10m"},
    "serve": {"read_timeout": "30s"},
    "deploy": {
        "rollout_timeout": "5m",
        "autoscaling": {"min_replicas": 1, "max_replicas": 3},
        "probes": {
            kind: {"path": "/healthz", "period": "10s", "timeout": "2s"}
            for kind in ("liveness", "readiness", "startup")
        },
        "model_source": {
            "type": "s3",
            "uri": "s3://team-models/digits/model.tar.gz",
            "sha256": "c" * 64,
            "timeout": "5m",
        },
    },
}


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: _merge(base.get(k), v) for k, v in over.items()} | {
            k: v for k, v in base.items() if k not in over
        }
    return copy.deepcopy(over)


def _base() -> dict[str, Any]:
    doc = yaml.safe_load((REPO / "mlops.yaml").read_text())
    doc.pop("profiles", None)
    doc["store"] = {"path": ".mlops", "remote": "s3://team-store/mlops"}
    if "alerts" in schema()["properties"]:
        doc["alerts"] = {"for": "5m", "window": "5m", "max_model_age": "720h"}
    model = next(iter(doc["models"]))
    doc["models"][model] = _merge(doc["models"][model], EXTRA_MODEL)
    return dict(doc)


BASE = _base()


def _load(doc: dict[str, Any]) -> None:
    loads(yaml.safe_dump(doc, sort_keys=False), root=REPO, env={})


def test_the_base_config_is_valid() -> None:
    _load(BASE)


# --- the schema walk -------------------------------------------------------------------


def _annotated(
    node: Any, path: Location, defs: dict[str, Any], seen: frozenset[str]
) -> Iterator[tuple[Location, str, dict[str, Any]]]:
    if not isinstance(node, dict):
        return
    ref = node.get("$ref")
    if isinstance(ref, str) and ref.startswith("#/$defs/"):
        name = ref.rsplit("/", 1)[-1]
        if name not in seen:
            merged = {**{k: v for k, v in node.items() if k != "$ref"}, **defs[name]}
            yield from _annotated(merged, path, defs, seen | {name})
        return
    if kinds.KEYWORD in node:
        yield path, node[kinds.KEYWORD], node
    for key, sub in (node.get("properties") or {}).items():
        yield from _annotated(sub, (*path, key), defs, seen)
    for keyword in ("additionalProperties", "items"):
        if isinstance(node.get(keyword), dict):
            yield from _annotated(node[keyword], (*path, "*"), defs, seen)
    for keyword in ("oneOf", "anyOf", "allOf"):
        for branch in node.get(keyword) or []:
            yield from _annotated(branch, path, defs, seen)


def annotated_locations() -> list[tuple[Location, str, dict[str, Any]]]:
    found = {}
    for path, kind, node in _annotated(schema(), (), schema()["$defs"], frozenset()):
        found[(path, kind)] = (path, kind, node)
    return list(found.values())


LOCATIONS = annotated_locations()


def test_every_annotation_names_a_rule_and_every_rule_is_used() -> None:
    used = {kind for _, kind, _ in LOCATIONS}
    assert used <= set(kinds.RULES), used - set(kinds.RULES)
    assert set(kinds.RULES) <= used, set(kinds.RULES) - used
    # The classes the issue names are all annotated somewhere.
    paths = {(".".join(path), kind) for path, kind, _ in LOCATIONS}
    assert ("store.remote", "s3-uri") in paths
    assert ("models.*.rollout.analysis.interval", "positive-duration") in paths
    assert ("models.*.evaluate.thresholds.*", "bounds") in paths


def _concrete(doc: dict[str, Any], location: Location) -> tuple[str | int, ...]:
    """The location with each '*' replaced by a key (or index) the base document has."""
    node: Any = doc
    out: list[str | int] = []
    for part in location:
        if part == "*":
            assert isinstance(node, (dict, list)) and node, (
                f"the base config has nothing at {'.'.join(map(str, out))}: extend "
                "EXTRA_MODEL so that every annotated location exists"
            )
            part_key: str | int = next(iter(node)) if isinstance(node, dict) else 0
        else:
            part_key = part
            assert isinstance(node, dict) and part in node, (
                f"the base config has no {'.'.join(map(str, [*out, part]))}: extend EXTRA_MODEL"
            )
        out.append(part_key)
        node = node[part_key]
    return tuple(out)


def _with(doc: dict[str, Any], where: tuple[str | int, ...], value: Any) -> dict[str, Any]:
    changed = copy.deepcopy(doc)
    node: Any = changed
    for part in where[:-1]:
        node = node[part]
    node[where[-1]] = value
    return changed


def _get(doc: dict[str, Any], where: tuple[str | int, ...]) -> Any:
    node: Any = doc
    for part in where:
        node = node[part]
    return node


# --- values of each kind, by the services' rules ---------------------------------------

zero_durations = st.from_regex(r"0{1,3}(\.0{1,2})?(ms|s|m|h)", fullmatch=True)
positive_durations = st.from_regex(r"[1-9][0-9]{0,2}(ms|s|m|h)", fullmatch=True)
_label = st.from_regex(r"[a-z0-9]([a-z0-9-]{0,8}[a-z0-9])?", fullmatch=True)
good_buckets = st.builds(lambda a, b: f"{a}-{b}"[:63], _label, _label).filter(
    lambda b: len(b) >= 3 and not b.startswith("xn--") and not b.endswith("-s3alias")
)
# Names S3 refuses: each construction breaks one of S3's bucket naming rules.
bad_buckets = st.one_of(
    good_buckets.map(lambda b: b[0].upper() + b[1:] if b[0].isalpha() else "A" + b),
    good_buckets.map(lambda b: b + "_x"),
    st.from_regex(r"[a-z0-9]{1,2}", fullmatch=True),
    good_buckets.map(lambda b: b + "..x"),
    good_buckets.map(lambda b: "-" + b),
    st.tuples(*[st.integers(0, 255)] * 4).map(lambda t: ".".join(map(str, t))),
    good_buckets.map(lambda b: ("xn--" + b)[:63]),
    st.just("b" * 64),
)


def _bad_values(kind: str, node: dict[str, Any], current: Any) -> st.SearchStrategy[Any]:
    if kind == "positive-duration":
        return zero_durations
    if kind == "s3-uri":
        return bad_buckets.map(lambda b: f"s3://{b}/prefix")
    if kind == "bounds":
        props = node.get("properties") or {}
        low, high = next((lo, hi) for lo, hi, _ in kinds.BOUND_PAIRS if lo in props)
        numbers = (
            st.integers(1, 1000)
            if props[low].get("type") == "integer"
            else st.floats(-1e6, 1e6, allow_nan=False)
        )
        pairs = st.tuples(numbers, numbers).filter(lambda p: p[0] > p[1])
        return pairs.map(lambda p: {**(current or {}), low: p[0], high: p[1]})
    if kind == "metric-thresholds":
        metric = next(iter(current))
        if metric in kinds.RATIO_METRICS:
            bound = st.floats(1.0001, 1e6).map(lambda v: {"min": v})
        else:
            bound = st.floats(-1e6, -1e-3).map(lambda v: {"max": v})
        return bound.map(lambda b: {**current, metric: b})
    raise AssertionError(f"no bad values for kind {kind!r}: add them to this test")


def _good_values(kind: str, node: dict[str, Any], current: Any) -> st.SearchStrategy[Any]:
    if kind == "positive-duration":
        return positive_durations
    if kind == "s3-uri":
        return good_buckets.map(lambda b: f"s3://{b}/prefix/model.tar.gz")
    return st.just(current)  # the base's own bounds and thresholds are sensible


def _ids(item: tuple[Location, str, dict[str, Any]]) -> str:
    return f"{'.'.join(item[0])}:{item[1]}"


@pytest.mark.parametrize("item", LOCATIONS, ids=[_ids(i) for i in LOCATIONS])
@settings(max_examples=12, deadline=None)
@given(data=st.data())
def test_a_bad_value_of_the_kind_is_refused_where_it_is(
    item: tuple[Location, str, dict[str, Any]], data: st.DataObject
) -> None:
    location, kind, node = item
    where = _concrete(BASE, location)
    current = _get(BASE, where)
    bad = data.draw(_bad_values(kind, node, current), label="bad value")
    with pytest.raises(ConfigError) as caught:
        _load(_with(BASE, where, bad))
    dotted = ".".join(map(str, where))
    located = [p for p in caught.value.problems if p.path.startswith(dotted)]
    assert located, f"nothing reported at {dotted}:\n{caught.value}"
    for problem in located:
        assert problem.line is not None and problem.hint, problem.render()
    # Nothing else was judged wrong: the rule is about this value alone.
    assert len(located) == len(caught.value.problems), str(caught.value)
    good = data.draw(_good_values(kind, node, current), label="good value")
    _load(_with(BASE, where, good))
