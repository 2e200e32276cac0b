"""The fast tier's watch: a pytest plugin that names the unmarked tests that got slow.

``pytest -m "not slow"`` is the edit-test loop and must stay fast without anyone timing it.
At the end of such a run this plugin lists every test NOT marked ``slow`` whose call phase
took longer than :data:`LIMIT_S` seconds, under one heading, so the change that made it slow
marks it ``@pytest.mark.slow`` or makes it cheap. It only reports: the run's outcome never
changes. ``tests/conftest.py`` loads it for the suite; ``-p tests.fast_tier`` loads it
anywhere else (its own test does that).
"""

from __future__ import annotations

import os
import re

import pytest

LIMIT_ENV = "MLOPS_FAST_TEST_LIMIT_S"
# Seconds a fast-tier test's call phase may take before it is listed (env: its own test
# uses a smaller limit so it need not sleep for seconds).
LIMIT_S = 2.0
HEADING = "unmarked tests slower than {limit:g} s (mark them @pytest.mark.slow or make them cheap)"
_EXCLUDES_SLOW = re.compile(r"\bnot\s+slow\b")


def limit_s() -> float:
    try:
        return float(os.environ.get(LIMIT_ENV, LIMIT_S))
    except ValueError:
        return LIMIT_S


class FastTierWatch:
    """Collects the call-phase durations of unmarked tests over the limit."""

    def __init__(self, limit: float) -> None:
        self.limit = limit
        self.slow: list[tuple[str, float]] = []

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        if report.when == "call" and report.duration > self.limit and "slow" not in report.keywords:
            self.slow.append((report.nodeid, report.duration))

    def pytest_terminal_summary(self, terminalreporter: pytest.TerminalReporter) -> None:
        if not self.slow:
            return
        terminalreporter.write_sep("=", HEADING.format(limit=self.limit), yellow=True)
        for nodeid, seconds in sorted(self.slow, key=lambda item: -item[1]):
            terminalreporter.write_line(f"{seconds:7.2f}s  {nodeid}")


def pytest_configure(config: pytest.Config) -> None:
    """Watch only a run that leaves the slow tests out (``-m "not slow"``, alone or in a
    larger expression): the whole suite is allowed its slow tests."""
    markexpr = str(config.getoption("markexpr", "") or "")
    if _EXCLUDES_SLOW.search(markexpr) and not config.pluginmanager.has_plugin("fast-tier"):
        config.pluginmanager.register(FastTierWatch(limit_s()), "fast-tier")
