"""Class of failure: `validate` of every profile demands every profile's environment (issue 21).

For any profile name, any variable name and any string-valued key a profile may override,
an unset ``${VAR}`` without default in that profile is a notice naming the profile and the
variable (exit 0) while another profile (or none) is in use; it is an error when that
profile is the one in use (``--profile``, ``MLOPS_PROFILE``) or with ``--strict-env``. A
structural mistake in that same profile is still an error: the profile's structure is
checked whatever its environment. The nox `validate` session runs the same command line
(``--all-profiles`` plus the plugin's profile), so its behaviour is the CLI's.
"""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_sessions import pipeline
from mlops_sessions.frontends import cli

BASE = """\
apiVersion: mlops/v1alpha1
project: {name: demo}
models:
  m:
    train: {entrypoint: "model:train"}
    serve: {host: 127.0.0.1}
    deploy: {namespace: default}
"""
# String values a profile commonly takes from its environment, as (overlay YAML, path).
PLACES = {
    "namespace": ("models:\n  m:\n    deploy:\n      namespace: ${VAR}\n", "deploy.namespace"),
    "host": ("models:\n  m:\n    serve:\n      host: ${VAR}\n", "serve.host"),
    "description": ("project:\n  description: prefix-${VAR}\n", "project.description"),
}

names = st.from_regex(r"[A-Z][A-Z0-9_]{0,15}", fullmatch=True).filter(
    lambda n: not n.startswith(("MLOPS", "PATH", "HOME"))
)
profiles = st.from_regex(r"[a-z][a-z0-9]{0,9}", fullmatch=True)


def _write(tmp: Path, profile: str, place: str, variable: str, extra: str = "") -> Path:
    overlay, _ = PLACES[place]
    body = textwrap.indent(overlay.replace("VAR", variable) + extra, "    ")
    path = tmp / "mlops.yaml"
    path.write_text(BASE + f"profiles:\n  {profile}:\n{body}")
    return path


def _validate(
    argv: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> tuple[int, str, str]:
    code = cli.main(["validate", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


SETTINGS = settings(
    max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@SETTINGS
@given(profile=profiles, variable=names, place=st.sampled_from(sorted(PLACES)))
def test_unset_variable_of_a_profile_not_in_use_is_a_notice(
    profile: str,
    variable: str,
    place: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("MLOPS_PROFILE", raising=False)
    config = str(_write(tmp_path_factory.mktemp("v"), profile, place, variable))

    code, out, err = _validate(["-c", config], monkeypatch, capsys)
    assert code == 0, err
    assert f"profile '{profile}'" in err and f"${{{variable}}}" in err, err
    assert PLACES[place][1] in err and "Traceback" not in err
    # Machine-readable too.
    code, out, _ = _validate(["-c", config, "--json"], monkeypatch, capsys)
    assert code == 0
    notices = json.loads(out)["notices"]
    assert [(n["profile"], n["variable"]) for n in notices] == [(profile, variable)]

    # The profile in use, by flag or by environment, and --strict-env: an error.
    for argv, env in (
        (["--profile", profile], {}),
        (["--all-profiles", "--profile", profile], {}),
        (["--strict-env"], {}),
        (["--all-profiles", "--strict-env"], {}),
        ([], {"MLOPS_PROFILE": profile}),
    ):
        for key, value in env.items():
            monkeypatch.setenv(key, value)
        code, _, err = _validate(["-c", config, *argv], monkeypatch, capsys)
        monkeypatch.delenv("MLOPS_PROFILE", raising=False)
        assert code == 2, (argv, env, err)
        assert f"environment variable '{variable}' is not set" in err, err

    # Set: neither notice nor error.
    monkeypatch.setenv(variable, "ok")
    code, _, err = _validate(["-c", config, "--strict-env"], monkeypatch, capsys)
    assert code == 0 and err == "", err


@SETTINGS
@given(profile=profiles, variable=names, place=st.sampled_from(sorted(PLACES)))
def test_structure_of_that_profile_is_still_checked(
    profile: str,
    variable: str,
    place: str,
    tmp_path_factory: pytest.TempPathFactory,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """An unset variable does not hide an unknown key elsewhere in the same profile."""
    monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("MLOPS_PROFILE", raising=False)
    extra = "tracking:\n  mlfow: {}\n"  # a misspelt key
    config = str(_write(tmp_path_factory.mktemp("v"), profile, place, variable, extra))
    code, _, err = _validate(["-c", config], monkeypatch, capsys)
    assert code == 2, err
    assert "unknown key 'mlfow'" in err and "mlflow" in err, err
    assert f"environment variable '{variable}'" not in err, "a notice reported as an error"


def test_the_nox_session_runs_the_same_command_line() -> None:
    """The validate session passes --all-profiles (and its profile) to `mlops validate`:
    what these tests pin down is what `nox -s validate` does."""
    row = pipeline.BY_NAME["validate"]
    assert row.module == "validate" and row.session
    assert row.session_args == ("--all-profiles",)
