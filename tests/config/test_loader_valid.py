"""Valid configs: the example, interpolation, profiles, defaults, frozen objects, the schema
and the CLI front end (`mlops validate | config | schema`)."""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
import textwrap
import types
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mlops_sessions.config import model as cfg
from mlops_sessions.config.loader import effective_document, load, loads, schema
from mlops_sessions.errors import ConfigError
from mlops_sessions.frontends import cli

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "mlops.yaml"
HEAD = "apiVersion: mlops/v1alpha1\nproject: {name: demo}\n"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    # The CLI reads os.environ; a developer's MLOPS_PROFILE must not change these results,
    # and schema verdicts are remembered in a per-test directory, not the user's cache.
    for name in ("MLOPS_PROFILE", "MLOPS_CONFIG", "DIGITS_REPLICAS", "MLOPS_NO_CACHE"):
        monkeypatch.delenv(name, raising=False)
    cache = tmp_path / "cache"
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(cache))
    return cache


def doc(body: str) -> str:
    return HEAD + textwrap.dedent(body)


# --- the example ------------------------------------------------------------------------


def test_example_loads_without_a_profile() -> None:
    config = load(EXAMPLE, env={})
    assert config.api_version == cfg.API_VERSION
    assert list(config.models) == ["digits"]
    assert {"ci", "prod"} <= set(config.profiles)
    assert config.profile is None
    model = config.models["digits"]
    assert model.train is not None and model.evaluate is not None
    assert model.train.entrypoint == "digits_model:train"
    assert model.train.inputs == ("digits",)
    assert config.data["digits"].package == "sklearn"
    assert model.deploy.replicas == 2  # from defaults
    assert config.root == REPO


def test_example_loads_under_every_profile() -> None:
    base = load(EXAMPLE, env={})
    assert base.profiles, "the example declares profiles"
    for profile in base.profiles:
        config = load(EXAMPLE, profile=profile, env={})
        assert config.profile == profile
        assert list(config.models) == ["digits"]


def test_ci_profile_merges_params_instead_of_replacing_them() -> None:
    raw = yaml.safe_load(EXAMPLE.read_text())
    written = raw["models"]["digits"]["train"]["params"]
    overlay = raw["profiles"]["ci"]["models"]["digits"]["train"]["params"]
    config = load(EXAMPLE, profile="ci", env={})
    train = config.models["digits"].train
    assert train is not None
    assert dict(train.params) == {**written, **overlay}
    assert set(written) - set(overlay), "the overlay leaves some params untouched"


def test_prod_profile_interpolates_replicas_from_env_or_default() -> None:
    assert load(EXAMPLE, profile="prod", env={}).models["digits"].deploy.replicas == 3
    config = load(EXAMPLE, profile="prod", env={"DIGITS_REPLICAS": "5"})
    assert config.models["digits"].deploy.replicas == 5
    assert config.models["digits"].deploy.protected is True


def test_profile_chosen_through_environment_variable() -> None:
    config = load(EXAMPLE, env={"MLOPS_PROFILE": "ci"})
    assert config.profile == "ci"


# --- interpolation -----------------------------------------------------------------------

INTERPOLATED = doc("""\
    models:
      a:
        description: "built by ${USER_NAME} at $${literal}"
        deploy:
          namespace: ${NS:-ml}
          replicas: ${REPLICAS}
          context: "${CTX}"
        serve:
          port: ${PORT:-8080}
          host: '${HOST:-0.0.0.0}'
""")


def test_variables_defaults_escape_and_retyping() -> None:
    env = {"USER_NAME": "ci-bot", "REPLICAS": "4", "CTX": "123"}
    model = loads(INTERPOLATED, env=env).models["a"]
    assert model.description == "built by ci-bot at ${literal}"
    assert model.deploy.namespace == "ml"  # default used
    assert model.deploy.replicas == 4 and isinstance(model.deploy.replicas, int)
    assert model.serve.port == 8080 and isinstance(model.serve.port, int)
    assert model.deploy.context == "123"  # quoted: stays a string
    assert model.serve.host == "0.0.0.0"


def test_env_value_wins_over_default() -> None:
    env = {"USER_NAME": "x", "REPLICAS": "1", "CTX": "c", "NS": "team-a", "PORT": "9000"}
    model = loads(INTERPOLATED, env=env).models["a"]
    assert model.deploy.namespace == "team-a"
    assert model.serve.port == 9000


def test_env_value_never_grows_structure() -> None:
    env = {"USER_NAME": "x", "REPLICAS": "1", "CTX": "c", "NS": "[a, b]"}
    with pytest.raises(ConfigError) as caught:
        loads(INTERPOLATED, env=env)
    (problem,) = caught.value.problems
    assert problem.path == "models.a.deploy.namespace"
    assert "'[a, b]'" in problem.message


def test_unused_profile_may_reference_unset_variables() -> None:
    text = doc("""\
        models: {a: {}}
        profiles:
          prod:
            models: {a: {deploy: {namespace: "${PROD_NS}"}}}
    """)
    assert loads(text, env={}).models["a"].deploy.namespace is None
    with pytest.raises(ConfigError, match="PROD_NS"):
        loads(text, profile="prod", env={})


# --- profiles and defaults ----------------------------------------------------------------

OVERLAY = doc("""\
    models:
      a:
        deploy:
          replicas: 2
          node_selector: {pool: cpu, zone: a}
          tolerations: [{key: a}, {key: b}]
        rollout:
          hosts: [a.example.com, b.example.com]
    profiles:
      prod:
        models:
          a:
            deploy:
              node_selector: {pool: gpu}
              tolerations: [{key: c}]
            rollout:
              hosts: [prod.example.com]
""")


def test_overlay_merges_maps_and_replaces_lists() -> None:
    model = loads(OVERLAY, profile="prod", env={}).models["a"]
    assert dict(model.deploy.node_selector) == {"pool": "gpu", "zone": "a"}
    assert [dict(t) for t in model.deploy.tolerations] == [{"key": "c"}]
    assert model.rollout is not None and model.rollout.hosts == ("prod.example.com",)
    assert model.deploy.replicas == 2


def test_overlay_is_deterministic() -> None:
    first, _ = effective_document(OVERLAY, "mlops.yaml", "prod", {})
    second, _ = effective_document(OVERLAY, "mlops.yaml", "prod", {})
    assert json.dumps(first) == json.dumps(second)  # same content and key order
    assert loads(OVERLAY, profile="prod", env={}) == loads(OVERLAY, profile="prod", env={})


def test_overlay_does_not_touch_the_unprofiled_document() -> None:
    model = loads(OVERLAY, env={}).models["a"]
    assert dict(model.deploy.node_selector) == {"pool": "cpu", "zone": "a"}


DEFAULTS = doc("""\
    defaults:
      deploy:
        namespace: ml
        replicas: 2
        resources: {cpu: 500m, memory: 1Gi}
      serve: {port: 9000}
    models:
      a: {}
      b:
        deploy:
          replicas: 5
          resources: {memory: 4Gi}
""")


def test_defaults_are_merged_under_every_model_and_the_model_wins() -> None:
    models = loads(DEFAULTS, env={}).models
    a, b = models["a"], models["b"]
    assert (a.deploy.namespace, a.deploy.replicas, a.serve.port) == ("ml", 2, 9000)
    assert (b.deploy.namespace, b.deploy.replicas, b.serve.port) == ("ml", 5, 9000)
    assert (a.deploy.resources.cpu, a.deploy.resources.memory) == ("500m", "1Gi")
    assert (b.deploy.resources.cpu, b.deploy.resources.memory) == ("500m", "4Gi")


def test_profile_can_override_defaults() -> None:
    text = DEFAULTS + "profiles:\n  prod:\n    defaults: {deploy: {replicas: 3}}\n"
    models = loads(text, profile="prod", env={}).models
    assert models["a"].deploy.replicas == 3
    assert models["b"].deploy.replicas == 5  # the model's own value still wins


def test_dates_stay_strings_and_integral_floats_become_ints() -> None:
    text = doc("""\
        models:
          a:
            train:
              entrypoint: m:train
              params: {since: 2024-01-31}
            serve: {port: 8080.0}
    """)
    config = loads(text, env={})
    model = config.models["a"]
    assert model.train is not None and model.train.params["since"] == "2024-01-31"
    assert model.serve.port == 8080 and isinstance(model.serve.port, int)
    assert len(config.model_hash("a")) == 64  # the document stays JSON


# --- frozen objects -------------------------------------------------------------------------


def test_config_objects_are_frozen() -> None:
    config = load(EXAMPLE, env={})
    model = config.models["digits"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.store = "elsewhere"  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.deploy.replicas = 9  # type: ignore[misc]
    with pytest.raises(TypeError):
        config.models["other"] = model  # type: ignore[index]
    assert model.train is not None
    with pytest.raises(TypeError):
        model.train.params["epochs"] = 1  # type: ignore[index]
    assert isinstance(model.train.inputs, tuple)
    with pytest.raises(TypeError):
        config.document["models"] = {}  # type: ignore[index]


# --- dataclass defaults == schema defaults ------------------------------------------------

# Config.profiles holds the *names* of the profiles (the overlays themselves are applied by
# the loader), so its default () stands for the schema's empty mapping.
DEFAULT_EXCEPTIONS: dict[tuple[str, str], tuple[Any, Any]] = {("Config", "profiles"): ((), {})}


def _resolve(node: Mapping[str, Any], root: Mapping[str, Any] | None = None) -> dict[str, Any]:
    root = schema() if root is None else root
    out = dict(node)
    while "$ref" in out:
        name = out.pop("$ref").rsplit("/", 1)[-1]
        out = {**root["$defs"][name], **out}  # sibling keywords (description) win
    return out


def _dataclass_in(tp: Any) -> tuple[type | None, str | None]:
    """The dataclass a field holds, and where its schema lives: inline, items or values."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        found = [a for a in args if dataclasses.is_dataclass(a) and isinstance(a, type)]
        return (found[0], None) if found else (None, None)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return tp, None
    if origin is tuple and args:
        inner, _ = _dataclass_in(args[0])
        return (inner, "items") if inner else (None, None)
    if origin is Mapping and len(args) == 2:
        inner, _ = _dataclass_in(args[1])
        return (inner, "additionalProperties") if inner else (None, None)
    return None, None


def _plain(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {k: _plain(v) for k, v in value.items()}
    return value


def _default_pairs(
    cls: type, node: Mapping[str, Any], where: str, root: Mapping[str, Any]
) -> Iterator[tuple[str, Any, Any]]:
    """(where, dataclass default, schema default) for every field the schema describes."""
    node = _resolve(node, root)
    hints = typing.get_type_hints(cls, vars(cfg))
    properties = node.get("properties", {})
    for fld in dataclasses.fields(cls):
        key = "apiVersion" if fld.name == "api_version" else fld.name
        if key not in properties:
            continue
        sub = _resolve(properties[key], root)
        if fld.default is not dataclasses.MISSING:
            value: Any = fld.default
        elif fld.default_factory is not dataclasses.MISSING:
            value = fld.default_factory()
        else:
            value = dataclasses.MISSING
        if not dataclasses.is_dataclass(value):
            unset = value is dataclasses.MISSING or value is None
            schema_default = sub.get("default", dataclasses.MISSING)
            if not (unset and schema_default is dataclasses.MISSING):
                yield f"{cls.__name__}.{fld.name} ({where}.{key})", value, schema_default
        inner, how = _dataclass_in(hints[fld.name])
        if inner is not None:
            inner_node = sub if how is None else sub[how]
            yield from _default_pairs(inner, inner_node, f"{where}.{key}", root)


def test_dataclass_defaults_match_schema_defaults() -> None:
    pairs = list(_default_pairs(cfg.Config, schema(), "$", schema()))
    assert len(pairs) > 50, "the walk reached the nested sections"
    mismatched = []
    for where, ours, theirs in pairs:
        owner, name = where.split(" ")[0].split(".")
        if DEFAULT_EXCEPTIONS.get((owner, name)) == (ours, theirs):
            continue
        if theirs is dataclasses.MISSING or _plain(ours) != theirs:
            shown = "no default" if theirs is dataclasses.MISSING else repr(theirs)
            mismatched.append(f"{where}: dataclass {ours!r}, schema {shown}")
    assert not mismatched, "defaults out of step:\n" + "\n".join(mismatched)


def test_defaults_walk_catches_a_difference() -> None:
    """The check above can fail: change one schema default and it reports it."""
    changed = json.loads(json.dumps(schema()))
    changed["$defs"]["serve"]["properties"]["port"]["default"] = 8000
    pairs = list(_default_pairs(cfg.Config, changed, "$", changed))
    port = [p for p in pairs if p[0].startswith("ServeConfig.port")]
    assert port and port[0][1] == 8501 and port[0][2] == 8000


# --- the schema itself --------------------------------------------------------------------


def test_schema_is_valid_json_schema_2020_12() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())
    assert schema()["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_packaged_schema_is_the_repository_schema() -> None:
    on_disk = json.loads((REPO / "schemas" / "mlops.schema.json").read_text())
    assert schema() == on_disk


def test_every_schema_default_is_valid_for_its_own_schema() -> None:
    found = 0

    def visit(node: Any) -> None:
        nonlocal found
        if isinstance(node, dict):
            if "default" in node:
                found += 1
                sub = {k: v for k, v in node.items() if k != "default"}
                sub = _resolve(sub)
                validator = jsonschema.Draft202012Validator({**sub, "$defs": schema()["$defs"]})
                errors = [e.message for e in validator.iter_errors(node["default"])]
                assert not errors, (node, errors)
            for value in node.values():
                visit(value)
        elif isinstance(node, list):
            for value in node:
                visit(value)

    visit(schema())
    assert found > 30


# --- CLI ----------------------------------------------------------------------------------

BROKEN = doc("""\
    models:
      a:
        deploy:
          replicas: -1
        serve:
          runtime: tfservin
""")


def test_cli_validate_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-c", str(EXAMPLE)]) == 0
    out = capsys.readouterr()
    # Every declared profile is checked by default (issue 12).
    assert "valid (1 model: digits; checked: (no profile), ci, prod)" in out.out
    assert out.err == ""


def test_cli_validate_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-c", str(EXAMPLE), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result == {
        "valid": True,
        "file": str(EXAMPLE),
        "profiles": ["(no profile)", "ci", "prod"],
        "models": ["digits"],
        "notices": [],
    }
    assert cli.main(["validate", "-c", str(EXAMPLE), "--json", "--profile", "ci"]) == 0
    assert json.loads(capsys.readouterr().out)["profiles"] == ["ci"]


def test_cli_validate_all_profiles(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-c", str(EXAMPLE), "--all-profiles"]) == 0
    assert "checked: (no profile), ci, prod" in capsys.readouterr().out


def test_cli_validate_reports_every_problem_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mlops.yaml"
    path.write_text(BROKEN)
    assert cli.main(["validate", "-c", str(path)]) == 2
    out = capsys.readouterr()
    assert out.out == ""
    assert "2 problems in config" in out.err
    assert f"{path}:6:17 models.a.deploy.replicas: -1 is less than the minimum of 0" in out.err
    assert f"{path}:8:16 models.a.serve.runtime" in out.err
    assert "hint: did you mean 'tfserving'?" in out.err
    assert "Traceback" not in out.err


def test_cli_validate_all_profiles_finds_a_broken_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "mlops.yaml"
    path.write_text(
        doc("""\
        models: {a: {}}
        profiles:
          ok: {}
          bad:
            models: {a: {serve: {port: 0}}}
    """)
    )
    # --profile narrows the check; without it every profile is checked, as with the flag.
    assert cli.main(["validate", "-c", str(path), "--profile", "ok"]) == 0
    capsys.readouterr()
    assert cli.main(["validate", "-c", str(path)]) == 2
    assert "profiles.bad" in capsys.readouterr().err
    assert cli.main(["validate", "-c", str(path), "--all-profiles"]) == 2
    err = capsys.readouterr().err
    assert "models.a.serve.port (from profiles.bad.models.a.serve.port)" in err
    assert f"{path}:7:32" in err

    # MLOPS_PROFILE chooses the other steps' profile; validate still checks them all.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_PROFILE", "ok")
        assert cli.main(["validate", "-c", str(path)]) == 2
    assert "profiles.bad" in capsys.readouterr().err


def test_cli_config_prints_effective_yaml(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "-c", str(EXAMPLE), "-p", "prod"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    deploy = printed["models"]["digits"]["deploy"]
    assert deploy["replicas"] == 3 and deploy["protected"] is True
    assert deploy["namespace"] == "ml"  # from defaults
    assert "profiles" not in printed and "defaults" not in printed


def test_cli_config_json_matches_effective_document(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["config", "-c", str(EXAMPLE), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == _plain(load(EXAMPLE, env={}).document)


def test_cli_schema_prints_the_schema(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["schema"]) == 0
    assert json.loads(capsys.readouterr().out) == schema()


def test_cli_unknown_profile_is_a_clean_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["validate", "-c", str(EXAMPLE), "-p", "prdo"]) == 2
    err = capsys.readouterr().err
    assert "unknown profile 'prdo'" in err and "did you mean 'prod'?" in err


def test_validate_as_a_real_subprocess(tmp_path: Path) -> None:
    ok = subprocess.run(
        [sys.executable, "-m", "mlops_sessions", "validate"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert ok.returncode == 0, ok.stderr
    assert ok.stdout.startswith("mlops.yaml: valid (1 model: digits")
    bad = tmp_path / "mlops.yaml"
    bad.write_text(BROKEN)
    failed = subprocess.run(
        [sys.executable, "-m", "mlops_sessions", "validate", "-c", str(bad)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert failed.returncode == 2
    assert "2 problems in config" in failed.stderr
    assert "Traceback" not in failed.stderr


# --- remembered schema verdicts ---------------------------------------------------------


def _verdicts(cache: Path) -> list[Path]:
    folder = cache / "schema-valid"
    return sorted(folder.iterdir()) if folder.exists() else []


def test_a_valid_document_is_remembered_once(_clean_env: Path) -> None:
    first = load(EXAMPLE, env={})
    assert len(_verdicts(_clean_env)) == 1
    second = load(EXAMPLE, env={})  # answered from the memo, same Config
    assert second == first
    assert len(_verdicts(_clean_env)) == 1
    load(EXAMPLE, profile="ci", env={})  # a different effective document
    assert len(_verdicts(_clean_env)) == 2


def test_failures_are_never_remembered(_clean_env: Path) -> None:
    for _ in range(2):
        with pytest.raises(ConfigError, match="less than the minimum"):
            loads(BROKEN, env={})
    assert _verdicts(_clean_env) == []


def test_a_remembered_pass_does_not_hide_cross_field_problems(_clean_env: Path) -> None:
    text = doc("models:\n  a:\n    image: serv\n")
    for _ in range(2):  # schema-valid (remembered), cross-field check still runs
        with pytest.raises(ConfigError, match="unknown image 'serv'"):
            loads(text, env={})
    assert len(_verdicts(_clean_env)) == 1


def test_verdict_memo_can_be_switched_off(
    _clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MLOPS_NO_CACHE", "1")
    load(EXAMPLE, env={})
    assert _verdicts(_clean_env) == []


def test_unwritable_cache_only_costs_speed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocked = tmp_path / "file-not-dir"
    blocked.write_text("")
    monkeypatch.setenv("MLOPS_CACHE_DIR", str(blocked))
    assert list(load(EXAMPLE, env={}).models) == ["digits"]
