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
import contextlib
import importlib.util
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO
from xml.etree import ElementTree

from mlops_sessions import gitinfo
from mlops_sessions.cachefile import read_json_entry
from mlops_sessions.config import Config
from mlops_sessions.console.common import add_models, emit, load_config, store_for
from mlops_sessions.drivers.training.plans import hash_cache_for
from mlops_sessions.errors import StepError
from mlops_sessions.planning.testing import test_cache_key
from mlops_sessions.planning.training import environment_digest
from mlops_sessions.records.io import now, stamped, write_json_atomic
from mlops_sessions.records.store import Store

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


def test_environments(config: Config, models: list[str]) -> list[str | None]:
    """Where the suite runs: None for this venv, an image name for a train image.

    Tests run where the selected models train: in the venv for venv-trained models, and in
    each train image for ``train.container: true`` models — once per distinct environment.
    """
    chosen = config.select_models(models)
    environments: dict[str | None, None] = {}
    for model in chosen:
        if model.train is not None and model.train.effective_backend == "container":
            environments[model.train.image or model.image] = None
        else:
            environments[None] = None
    return list(environments) or [None]


def check_venv() -> None:
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
    """The pass recorded under a cache entry, or None (absent or damaged: run again; only
    passes are written, so an entry without ``passed: true`` is damaged)."""
    return read_json_entry(
        entry, what="test-pass cache entry", valid=lambda data: data.get("passed") is True
    )


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
    if code == EXIT_INTERNAL_ERROR:
        return (
            "pytest itself failed (exit 3: an internal error, usually a plugin or conftest.py "
            f"that raised); see the INTERNALERROR lines above, then fix the plugin or {path}"
        )
    if code == EXIT_USAGE_ERROR:
        return (
            "pytest rejected its arguments (exit 4); check tests.args / tests.markers in mlops.yaml"
        )
    return f"pytest failed with exit code {code}; see its output above"


def run(args: argparse.Namespace) -> int:
    config = load_config(args)
    environments = test_environments(config, list(args.models))
    if None in environments:
        check_venv()
    command = pytest_command(config, args)
    results = [run_suite(config, args, command, image) for image in environments]
    failed = [r for r in results if not r["passed"]]
    document: dict[str, Any] = (
        results[0] if len(results) == 1 else {"passed": not failed, "runs": results}
    )
    if failed:
        error = "; ".join(f"{_where(r)}: {r['error']}" for r in failed)
        if args.json:
            emit(args, document, "")
            print(f"mlops test: {error}", file=sys.stderr)
            return 1
        raise StepError(error)
    emit(args, document, "\n".join(_summary_text(r) for r in results))
    return 0


def run_suite(
    config: Config, args: argparse.Namespace, command: list[str], image: str | None
) -> dict[str, Any]:
    """Run (or reuse the recorded pass of) the suite in one environment; returns its result."""
    store = store_for(config)
    hashes = hash_cache_for(config)
    environment = environment_digest(config, image, hashes, gitinfo) if image else None
    key = test_cache_key(config, command[3:], hashes, environment=environment)
    hashes.save()
    entry = store.cache_entry("test", key)
    cached = _recorded_pass(entry) if not args.force else None
    if cached is not None:
        return {**cached, "cached": True}
    store.tmp.mkdir(parents=True, exist_ok=True)
    # Under the store, not /tmp: a Docker engine in a VM shares the project, not /tmp.
    with tempfile.TemporaryDirectory(prefix="mlops-test-", dir=store.tmp) as scratch:
        junit = Path(scratch) / "junit.xml"
        started = time.monotonic()
        # With --json, stdout carries only the JSON result: pytest's report goes to stderr.
        stream = sys.stderr if args.json else sys.stdout
        if image is None:
            code = subprocess.run(
                [*command, f"--junitxml={junit}"],
                cwd=config.root,
                check=False,
                stdout=stream if args.json else None,
                env=test_environment(config),
            ).returncode
            where = sys.executable
        else:
            code, where = _run_in_image(config, store, image, command, Path(scratch), stream)
        duration = round(time.monotonic() - started, 3)
        counts = read_counts(junit)
    result: dict[str, Any] = {
        "passed": code == EXIT_OK,
        "exit_code": code,
        "path": config.tests.path,
        "command": ["pytest", *command[3:]],
        "counts": counts,
        "duration_s": duration,
        "python": where,
        "image": image,
    }
    if code != EXIT_OK:
        result["error"] = explain(code, config.tests.path, counts)
        return result  # only passes are recorded: a failure always re-runs
    result.update(key=key, finished_at=now(), cached=False)
    write_json_atomic(entry, stamped(result))
    return result


def _run_in_image(
    config: Config, store: Store, image: str, command: list[str], scratch: Path, out: TextIO
) -> tuple[int, str]:
    """pytest in the train image (built first if needed); (exit code, where it ran)."""
    from mlops_sessions.drivers.imaging import build_one
    from mlops_sessions.drivers.imaging import plan as plan_build
    from mlops_sessions.drivers.training.container import host_user
    from mlops_sessions.executors.docker import run as docker_run
    from mlops_sessions.executors.docker.engine import connect
    from mlops_sessions.planning.container_run import suite_run

    planned = plan_build(config, store, image, force=False, local=True)
    sources = [
        config.resolve(model.train.source) for model in config.models.values() if model.train
    ]
    spec = suite_run(
        command[3:],
        sources=list(dict.fromkeys(sources)),
        root=config.root,
        output=scratch,
        user=host_user(),
        labels={"org.mlops-sessions.step": "test"},
    )
    with contextlib.closing(connect()) as client:
        built = build_one(client, planned, store, out=out)
        print(f"[test] running the suite in image {', '.join(built['refs'])}", file=out, flush=True)
        ended = docker_run.run(
            client, built["image_id"], spec, out=out, what=f"testing in image '{image}'"
        )
    if ended.code != EXIT_OK and any("No module named pytest" in line for line in ended.tail):
        raise StepError(
            f"pytest is not installed in image '{image}'; it is added to train images when "
            "mlops.yaml declares `tests:` — rebuild the image (`mlops build "
            f"{image}`), or add pytest to images.{image}.packages.pip"
        )
    return ended.code, f"image {', '.join(built['refs'])}"


def _where(result: dict[str, Any]) -> str:
    return f"in image '{result['image']}'" if result.get("image") else "in the venv"


def _summary_text(result: dict[str, Any]) -> str:
    counts = result["counts"]
    where = f" {_where(result)}" if result.get("image") else ""
    if result.get("cached"):
        return (
            f"tests passed{where} for these inputs before ({counts.get('passed', 0)} passed "
            f"at {result['finished_at']}; key {result['key'][:8]}); --force re-runs them"
        )
    return (
        f"tests passed{where}: {counts.get('passed', 0)} passed, {counts['skipped']} skipped "
        f"in {result['duration_s']:.1f}s ({result['path']})"
    )
