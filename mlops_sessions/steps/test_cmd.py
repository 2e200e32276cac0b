"""``mlops test``: run the team's own test suite with pytest, before training.

The nox ``test`` session runs this in a venv built from the same locked requirements as
``train``, so "tests passed" means "passed in the environment that trains". The suite is
declared in mlops.yaml (``tests: {path, markers, args}``); pytest runs from the project root
so its own configuration (pytest.ini, conftest.py) applies.

Counts come from pytest's JUnit XML report rather than from parsing its console output,
which pytest does not promise to keep stable.

A passing run is recorded under its input key (:mod:`mlops_sessions.planning.testing`);
while nothing that could change the outcome changes, the suite is not run again — so the
``test`` session in front of ``train`` costs next to nothing on an unchanged tree.
``--force`` re-runs it.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from mlops_sessions.config import Config
from mlops_sessions.errors import StepError
from mlops_sessions.planning.testing import test_cache_key
from mlops_sessions.planning.training import hash_cache_for
from mlops_sessions.steps.common import add_models, emit, load_config, store_for
from mlops_sessions.store import read_json, write_json_atomic

HELP = "Run the team's tests (pytest) in the training environment."

# pytest's documented exit codes (pytest.ExitCode); named here so messages can explain them.
EXIT_OK = 0
EXIT_TESTS_FAILED = 1
EXIT_INTERRUPTED = 2
EXIT_INTERNAL_ERROR = 3
EXIT_USAGE_ERROR = 4
EXIT_NO_TESTS = 5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_models(parser)
    parser.add_argument(
        "-k", dest="keyword", default=None, help="only tests matching this pytest -k expression"
    )
    parser.add_argument(
        "-m",
        "--markers",
        dest="markers",
        default=None,
        help="pytest -m expression (replaces tests.markers from mlops.yaml)",
    )
    parser.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failure")
    parser.add_argument(
        "--force", action="store_true", help="run the suite even if it passed for these inputs"
    )
    parser.add_argument(
        "--pytest-arg",
        dest="pytest_args",
        action="append",
        default=[],
        metavar="ARG",
        help="pass ARG to pytest (repeatable), e.g. --pytest-arg=--lf",
    )


def check_environment(config: Config, models: list[str]) -> None:
    """Refuse what this step cannot honour, rather than test in the wrong environment."""
    containerised = [m.name for m in config.select_models(models) if m.train and m.train.container]
    if containerised:
        raise StepError(
            f"model(s) {', '.join(containerised)} train in a container (train.container: true), so "
            "their tests must run in the train image too — container execution is not available "
            "yet in mlops-sessions. Set train.container: false to test and train in the locked "
            "venv, or run pytest inside your train image yourself."
        )
    if importlib.util.find_spec("pytest") is None:
        raise StepError(
            f"pytest is not installed in this environment ({sys.executable}); "
            "`nox -s test` installs it, or add pytest to your requirements file"
        )


def pytest_command(config: Config, args: argparse.Namespace) -> list[str]:
    """The pytest invocation (without the report option), run from the project root."""
    suite = config.tests
    target = config.resolve(suite.path)
    if not target.exists():
        raise StepError(
            f"test path '{suite.path}' does not exist (looked for {target}); create it, or set "
            "tests.path in mlops.yaml to your test directory"
        )
    command = [sys.executable, "-m", "pytest", str(target)]
    markers = args.markers if args.markers is not None else suite.markers
    if markers:
        command += ["-m", markers]
    if args.keyword:
        command += ["-k", args.keyword]
    if args.exitfirst:
        command.append("-x")
    command += [*suite.args, *args.pytest_args]
    return command


def _recorded_pass(entry: Path) -> dict[str, Any] | None:
    """The pass recorded under a cache entry, or None (absent or unreadable: run again)."""
    try:
        recorded: dict[str, Any] = read_json(entry)
    except (OSError, ValueError):
        return None
    return recorded if recorded.get("passed") is True else None


def test_environment(config: Config) -> dict[str, str]:
    """The environment pytest runs in: the models' train.source directories go on
    PYTHONPATH, so tests import the team's code exactly as the training step does."""
    sources = dict.fromkeys(
        str(config.resolve(model.train.source)) for model in config.models.values() if model.train
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([*sources, *filter(None, [env.get("PYTHONPATH")])])
    return env


def read_counts(junit: Path) -> dict[str, int]:
    """Totals from pytest's JUnit XML (a <testsuites> with one <testsuite> per run)."""
    totals = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    if not junit.is_file():
        return totals
    root = ElementTree.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    for suite in suites:
        for key in totals:
            totals[key] += int(suite.get(key, "0"))
    totals["passed"] = totals["tests"] - totals["failures"] - totals["errors"] - totals["skipped"]
    return totals


def explain(code: int, path: str, counts: dict[str, int]) -> str:
    if code == EXIT_TESTS_FAILED:
        bad = counts.get("failures", 0) + counts.get("errors", 0)
        return (
            f"{bad} test(s) failed in {path}; the pipeline stops here — fix them (see pytest's "
            "output above) before training"
        )
    if code == EXIT_NO_TESTS:
        return (
            f"no tests were collected from {path} (pytest exit 5); an empty suite stops the "
            "pipeline — add tests, or fix tests.path / tests.markers in mlops.yaml"
        )
    if code == EXIT_INTERRUPTED:
        return f"the test run was interrupted (pytest exit 2), often by an import error in {path}"
    if code == EXIT_USAGE_ERROR:
        return (
            "pytest rejected its arguments (exit 4); check tests.args / tests.markers in mlops.yaml"
        )
    return f"pytest failed with exit code {code}; see its output above"


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    check_environment(config, list(args.models))
    command = pytest_command(config, args)
    hashes = hash_cache_for(config)
    key = test_cache_key(config, command[3:], hashes)
    hashes.save()
    entry = store_for(config).cache_entry("test", key)
    cached = _recorded_pass(entry) if not args.force else None
    if cached is not None:
        emit(
            args,
            {**cached, "cached": True},
            f"tests passed for these inputs before ({cached['counts'].get('passed', 0)} passed "
            f"at {cached['finished_at']}; key {key[:8]}); --force re-runs them",
        )
        return 0
    with tempfile.TemporaryDirectory(prefix="mlops-test-") as scratch:
        junit = Path(scratch) / "junit.xml"
        started = time.monotonic()
        # With --json, stdout carries only the JSON result: pytest's report goes to stderr.
        done = subprocess.run(
            [*command, f"--junitxml={junit}"],
            cwd=config.root,
            check=False,
            stdout=sys.stderr if args.json else None,
            env=test_environment(config),
        )
        duration = round(time.monotonic() - started, 3)
        counts = read_counts(junit)
    result: dict[str, Any] = {
        "passed": done.returncode == EXIT_OK,
        "exit_code": done.returncode,
        "path": config.tests.path,
        "command": ["pytest", *command[3:]],
        "counts": counts,
        "duration_s": duration,
        "python": sys.executable,
    }
    if done.returncode != EXIT_OK:
        result["error"] = explain(done.returncode, config.tests.path, counts)
        if args.json:
            emit(args, result, "")
            print(f"mlops test: {result['error']}", file=sys.stderr)
            return 1
        raise StepError(result["error"])
    result.update(key=key, finished_at=datetime.now(timezone.utc).isoformat(), cached=False)
    write_json_atomic(entry, result)  # only passes are recorded: a failure always re-runs
    emit(
        args,
        result,
        f"tests passed: {counts.get('passed', 0)} passed, {counts['skipped']} skipped "
        f"in {duration:.1f}s ({config.tests.path})",
    )
    return 0
