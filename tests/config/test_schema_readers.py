"""Every schema key is read by something outside the config layer (issue 11 point 6).

Accepting a key and ignoring it is worse than refusing it. The test walks every property
path of the packaged schema, maps it to the field of the Config dataclass that
``config/build.py`` fills (a key with no field would be dropped silently: that fails
too), and then requires the field's name to be read as an attribute somewhere in
``mlops_sessions`` outside ``config/`` (an AST scan: ``x.<field>`` or ``getattr(x, "<field>")``).

The scan matches names, not types: a field shares its reader with fields of the same name
elsewhere. The keys issue 11 named (model and data descriptions, train CPU/memory,
base.gpu) therefore also have behaviour tests below that follow each value to its use.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Union

import yaml

from mlops_sessions.config import model as cfg
from mlops_sessions.config.build import _RENAMES
from mlops_sessions.config.loader import loads, schema

PACKAGE = Path(__file__).resolve().parents[2] / "mlops_sessions"

# Keys (and everything under them) read by another piece of work in progress, and only
# those (issue 11 point 6:
# "rollout.steps and rollout.analysis: the progressive-rollout issue implements them").
NOT_YET_READ = {
    ("models", "*", "rollout", "steps"),
    ("models", "*", "rollout", "analysis"),
}
# Sections the loader consumes itself: merged into each model or overlaid on the file.
LOADER_ONLY = {("apiVersion",), ("defaults",), ("profiles",)}


def _resolve(node: Any) -> Any:
    defs = schema()["$defs"]
    while isinstance(node, dict) and "$ref" in node:
        node = {
            **defs[node["$ref"].rsplit("/", 1)[-1]],
            **{k: v for k, v in node.items() if k != "$ref"},
        }
    return node


def _unwrap(tp: Any) -> Any:
    """Optional[X] -> X."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not type(None)]
        classes = [o for o in options if dataclasses.is_dataclass(o)]
        return classes[0] if classes else options[0]
    return tp


@functools.cache
def _fields(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls, vars(cfg))


def schema_fields() -> Iterator[tuple[tuple[str, ...], type, str]]:
    """(schema path, owning dataclass, field name) for every property of the schema."""

    def walk(
        node: Any, tp: Any, path: tuple[str, ...]
    ) -> Iterator[tuple[tuple[str, ...], type, str]]:
        node = _resolve(node)
        tp = _unwrap(tp)
        if not isinstance(node, dict):
            return
        origin = typing.get_origin(tp)
        if dataclasses.is_dataclass(tp) and isinstance(tp, type):
            for key, sub in (node.get("properties") or {}).items():
                here = (*path, key)
                if here in LOADER_ONLY:
                    continue
                name = _RENAMES.get(key, key)
                assert name in _fields(tp), (
                    f"schema key {'.'.join(here)} has no field in {tp.__name__}: build drops it"
                )
                yield here, tp, name
                yield from walk(sub, _fields(tp)[name], here)
        elif origin in (Mapping, dict) and isinstance(node.get("additionalProperties"), dict):
            args = typing.get_args(tp)
            if len(args) == 2 and args[1] is not Any:
                yield from walk(node["additionalProperties"], args[1], (*path, "*"))
        elif origin is tuple and isinstance(node.get("items"), dict):
            yield from walk(node["items"], typing.get_args(tp)[0], (*path, "[]"))

    # models.<name> is built from ModelConfig (the name comes from the key).
    top = dict(schema())
    yield from walk(top, cfg.Config, ())


@functools.cache
def read_names() -> frozenset[str]:
    """Attribute names read anywhere in the package outside the config layer."""
    names: set[str] = set()
    for path in PACKAGE.rglob("*.py"):
        if "config" in path.relative_to(PACKAGE).parts[:1]:
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Load):
                names.add(node.attr)
            elif (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "getattr"
                and len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            ):
                names.add(node.args[1].value)
    return frozenset(names)


def test_the_walk_covers_the_schema() -> None:
    paths = {path for path, _, _ in schema_fields()}
    # A sample from each depth: the walk follows $refs, maps and lists.
    assert ("models", "*", "deploy", "resources", "limits", "cpu") in paths
    assert ("images", "*", "base", "gpu") in paths
    assert ("data", "*", "description") in paths
    assert ("models", "*", "deploy", "secrets", "[]", "key") in paths
    assert len(paths) > 150


def test_every_schema_property_has_a_reader_outside_the_config_layer() -> None:
    unread = sorted(
        ".".join(path)
        for path, _, name in schema_fields()
        if name not in read_names() and not any(path[: len(p)] == p for p in NOT_YET_READ)
    )
    assert unread == [], f"schema keys nothing outside mlops_sessions/config reads: {unread}"


def test_the_allow_list_holds_only_what_is_still_unread() -> None:
    for path in NOT_YET_READ:
        assert any(p == path for p, _, _ in schema_fields()), path


# --- the keys issue 11 named, followed to their use ---------------------------------------

DOC = {
    "apiVersion": "mlops/v1alpha1",
    "project": {"name": "demo"},
    "data": {"points": {"path": "points.csv", "description": "Two clusters of points"}},
    "images": {
        "trainer": {
            "kind": "train",
            "repository": "t",
            "base": {"image": "nvidia/cuda:12.4.1-runtime", "gpu": True},
        },
        "serve": {"repository": "s", "base": {"variant": "cpu", "tensorflow": "2.21.0"}},
    },
    "models": {
        "m": {
            "description": "Separates the two clusters",
            "image": "serve",
            "train": {
                "entrypoint": "m:train",
                "inputs": ["points"],
                "container": True,
                "image": "trainer",
                "resources": {
                    "cpu": "500m",
                    "memory": "1Gi",
                    "limits": {"cpu": 2, "memory": "2Gi"},
                },
            },
        }
    },
}


def test_train_resources_become_container_limits(tmp_path: Path) -> None:
    from mlops_sessions.executors.docker.run import resource_options
    from mlops_sessions.planning.container_run import resource_limits

    config = loads(yaml.safe_dump(DOC), root=tmp_path, env={})
    train = config.models["m"].train
    assert train is not None
    planned = resource_limits(train.resources)
    assert planned == {
        "nano_cpus": 2_000_000_000,
        "mem_limit": 2 * 2**30,
        "cpu_shares": 512,
        "mem_reservation": 2**30,
    }
    from mlops_sessions.planning.container_run import ContainerRun

    run = ContainerRun(
        command=("true",),
        mounts=(),
        environment={},
        user="",
        nano_cpus=planned["nano_cpus"],
        mem_limit=planned["mem_limit"],
        cpu_shares=planned["cpu_shares"],
        mem_reservation=planned["mem_reservation"],
    )
    assert resource_options(run) == planned
    assert run.describe()["nano_cpus"] == 2_000_000_000


def test_model_description_goes_to_the_deployment_annotations(tmp_path: Path) -> None:
    from mlops_sessions.planning.k8s_pod import Build, deployment

    config = loads(yaml.safe_dump(DOC), root=tmp_path, env={})
    model = config.models["m"]
    build = Build("r.example.com/s@sha256:" + "ab" * 32)
    obj = deployment(config, model, "stable", build, "0" * 64, "1" * 64)
    notes = obj["metadata"]["annotations"]
    assert notes["mlops-sessions.dev/description"] == "Separates the two clusters"
    # Not on the pod template: editing the text must not restart pods.
    assert (
        "mlops-sessions.dev/description" not in obj["spec"]["template"]["metadata"]["annotations"]
    )


def test_data_description_is_shown_with_the_training_plan() -> None:
    from mlops_sessions.planning.training import TrainPlan

    plan = TrainPlan(
        model="m",
        key="k",
        params={},
        seed=0,
        inputs={"points": Path("points.csv")},
        source=Path("."),
        entrypoint="m:train",
        data_descriptions={"points": "Two clusters of points"},
    )
    assert plan.describe()["data"] == {"points": "Two clusters of points"}
