"""The nox front end: which sessions exist, how they chain, and how they refuse collisions.

Sessions are registered into a plain dict (the registry injection point) for unit checks,
and real `nox` processes are run for the listing golden file and error output.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions import pipeline
from mlops_sessions.errors import MlopsError
from mlops_sessions.frontends import noxplugin

from .nox_helpers import example_project, run_nox

GOLDEN = Path(__file__).parent / "golden" / "nox-list.json"


def _register(example_config: Path, **kwargs: Any) -> dict[str, Any]:
    registry: dict[str, Any] = {}
    noxplugin.register(example_config, registry=registry, **kwargs)
    return registry


def test_registers_a_session_per_available_step(example_config: Path) -> None:
    registry = _register(example_config)
    expected = [s.name for s in pipeline.sessions()]
    assert list(registry) == [n for n in expected if n in registry]
    assert {"validate", "pipeline"} <= set(registry)
    for name, func in registry.items():
        assert func.name == name
        assert func.description, f"session {name} has no description for `nox -l`"
        assert "mlops" in func.tags


def test_sessions_chain_through_requires(example_config: Path) -> None:
    registry = _register(example_config)
    if "train" in registry:
        assert registry["train"].requires == (["test"] if "test" in registry else ["validate"])
    if "evaluate" in registry:
        assert registry["evaluate"].requires == ["train"]
        assert registry["pipeline"].requires == ["evaluate"]
    for func in registry.values():
        assert all(req in registry for req in func.requires)


def test_only_offline_steps_run_by_default(example_config: Path) -> None:
    registry = _register(example_config)
    for never_default in ("serve", "deploy", "rollback", "render", "status", "lineage"):
        if never_default in registry:
            assert registry[never_default].default is False, never_default
    assert registry["validate"].default is True


def test_validate_runs_without_a_venv(example_config: Path) -> None:
    func = _register(example_config)["validate"]
    assert func.venv_backend == "none"
    assert func.python is False


def test_collision_with_a_user_session_is_refused(example_config: Path) -> None:
    registry: dict[str, Any] = {"validate": object()}
    with pytest.raises(MlopsError) as caught:
        noxplugin.register(example_config, registry=registry)
    message = str(caught.value)
    assert "validate" in message and "prefix='mlops-'" in message
    assert list(registry) == ["validate"], "nothing may be registered after a refusal"


def test_prefix_keeps_both_and_prefixes_requires(example_config: Path) -> None:
    registry: dict[str, Any] = {"validate": object()}
    noxplugin.register(example_config, registry=registry, prefix="mlops-")
    assert "mlops-validate" in registry and "validate" in registry
    for name, func in registry.items():
        if name.startswith("mlops-"):
            assert all(req.startswith("mlops-") for req in func.requires)


def test_a_missing_link_in_the_chain_is_skipped() -> None:
    chosen = {s.name: s.requires for s in pipeline.sessions(["validate", "train", "evaluate"])}
    # No `test` step: train inherits test's prerequisite instead of being dropped.
    assert chosen == {
        "validate": (),
        "train": ("validate",),
        "evaluate": ("train",),
        "pipeline": ("evaluate",),
    }
    chosen = {s.name: s.requires for s in pipeline.sessions(["validate", "test", "train"])}
    assert chosen["train"] == ("test",) and chosen["test"] == ("validate",)
    # pipeline chains to whatever the last available step before it is.
    assert chosen["pipeline"] == ("train",)


@pytest.mark.parametrize(
    ("posargs", "models", "options"),
    [
        ([], [], []),
        (["digits"], ["digits"], []),
        (["a", "b", "--force"], ["a", "b"], ["--force"]),
        (["--run", "x1"], [], ["--run", "x1"]),
        (["digits", "--param", "epochs=1"], ["digits"], ["--param", "epochs=1"]),
    ],
)
def test_posargs_split_models_from_options(
    posargs: list[str], models: list[str], options: list[str]
) -> None:
    assert noxplugin._split_posargs(posargs) == (models, options)


def test_install_source_is_this_checkout_when_editable(repo_root: Path) -> None:
    args = noxplugin.install_source(["train"])
    if args[0] == "-e":
        assert Path(args[1].split("[")[0]).resolve() == repo_root
        assert args[1].endswith("[train]")
    else:  # installed from an index or a wheel: the same version, with the extras
        assert args[0].startswith("mlops-sessions[train]")


def test_container_training_sessions_get_the_docker_sdk(example_config: Path) -> None:
    import dataclasses

    from mlops_sessions.config.loader import load

    config = load(example_config)
    by_step = {spec.name: spec for spec in pipeline.sessions()}
    assert noxplugin.session_extras(by_step["train"], config) == ("train",)
    model = config.models["digits"]
    assert model.train is not None
    boxed = dataclasses.replace(
        config,
        models={
            "digits": dataclasses.replace(
                model, train=dataclasses.replace(model.train, container=True)
            )
        },
    )
    assert noxplugin.session_extras(by_step["train"], boxed) == ("train", "build")
    assert noxplugin.session_extras(by_step["test"], boxed) == ("train", "test", "build")
    assert noxplugin.session_extras(by_step["evaluate"], boxed) == ("train",)


def test_venv_backend_prefers_uv_with_fallback(example_config: Path) -> None:
    from mlops_sessions.config.loader import load

    assert noxplugin.venv_backend(load(example_config)) == "uv|virtualenv"


@pytest.mark.parametrize(
    ("args", "golden"),
    [
        # What a bare `nox` would run: the offline, side-effect-free steps.
        (["-l", "--json"], "nox-list.json"),
        # Every pipeline session, selected by the tag the plugin puts on them.
        (["-l", "--json", "-t", "mlops"], "nox-list-all.json"),
    ],
)
def test_nox_list_json_matches_golden(
    tmp_path: Path, repo_root: Path, args: list[str], golden: str
) -> None:
    done = run_nox(example_project(repo_root, tmp_path), *args)
    assert done.returncode == 0, done.stderr
    listing = json.loads(done.stdout)
    path = GOLDEN.parent / golden
    if os.environ.get("MLOPS_UPDATE_GOLDEN") == "1":
        path.write_text(json.dumps(listing, indent=2) + "\n")
    assert listing == json.loads(path.read_text()), (
        "nox -l --json changed; if intended, regenerate: MLOPS_UPDATE_GOLDEN=1 pytest tests/plugin"
    )


def test_repo_noxfile_lists_dev_and_pipeline_sessions(repo_root: Path) -> None:
    done = run_nox(repo_root, "-l")
    assert done.returncode == 0, done.stderr
    for name in ("lint", "typecheck", "tests", "validate", "pipeline"):
        assert f" {name} " in done.stdout, name


def test_invalid_config_fails_nox_with_located_message_not_traceback(
    tmp_path: Path, repo_root: Path
) -> None:
    broken = (repo_root / "mlops.yaml").read_text().replace("seed: 1234", "seed: -3")
    done = run_nox(example_project(repo_root, tmp_path, broken), "-l")
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "models.digits.train.seed: -3 is less than the minimum of 0" in done.stderr
    assert "mlops.yaml:" in done.stderr


def test_validate_session_runs_for_real(tmp_path: Path, repo_root: Path) -> None:
    done = run_nox(example_project(repo_root, tmp_path), "-s", "validate")
    assert done.returncode == 0, done.stderr
    assert "valid (1 model: digits" in done.stdout + done.stderr


def test_validate_session_checks_every_profile_even_when_registered_with_one(
    tmp_path: Path, repo_root: Path
) -> None:
    project = example_project(repo_root, tmp_path)
    (project / "noxfile.py").write_text(
        'import mlops_sessions\n\nmlops_sessions.register("mlops.yaml", profile="ci")\n'
    )
    done = run_nox(project, "-s", "validate")
    assert done.returncode == 0, done.stderr
    output = done.stdout + done.stderr
    assert "checked: ci, prod" in output, output
