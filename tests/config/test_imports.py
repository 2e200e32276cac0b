"""`mlops validate` stays light: it never imports TensorFlow, Docker, Kubernetes, Keras,
scikit-learn or aiohttp. Checked in a fresh interpreter, so nothing a test imported earlier
can hide (or fake) an import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("tensorflow", "docker", "kubernetes", "keras", "sklearn", "aiohttp")
MARKER = "--- modules ---"

# argv[1] lists modules to import first (comma-separated; the control test uses it).
PROBE = """
import importlib, json, sys
for name in filter(None, sys.argv[1].split(",")):
    importlib.import_module(name)
from mlops_sessions.frontends import cli
code = cli.main(sys.argv[2:])
print({marker!r})
print(json.dumps({{"code": code, "modules": sorted(sys.modules)}}))
"""


def _modules_after(*argv: str, cache: Path, preimport: str = "") -> tuple[int, set[str]]:
    env = {**os.environ, "MLOPS_CACHE_DIR": str(cache)}
    env.pop("MLOPS_NO_CACHE", None)
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(marker=MARKER), preimport, *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert MARKER in done.stdout, done.stderr
    report = json.loads(done.stdout.split(MARKER, 1)[1])
    return report["code"], set(report["modules"])


@pytest.mark.parametrize(
    "argv",
    [
        ("validate", "-c", "mlops.yaml"),
        ("validate", "-c", "mlops.yaml", "--all-profiles"),
        ("config", "-c", "mlops.yaml", "-p", "prod"),
    ],
    ids=["validate", "validate-all-profiles", "config"],
)
def test_command_imports_no_heavy_library(argv: tuple[str, ...], tmp_path: Path) -> None:
    code, modules = _modules_after(*argv, cache=tmp_path)
    assert code == 0
    # The probe really ran the loader: the schema validator is loaded...
    assert {"mlops_sessions.config.loader", "jsonschema", "yaml"} <= modules
    # ...and none of the libraries only executors may touch.
    heavy = sorted(m for m in modules if m.split(".")[0] in HEAVY)
    assert heavy == [], f"imported by `mlops {argv[0]}`: {heavy[:10]}"


def test_unchanged_file_skips_even_jsonschema(tmp_path: Path) -> None:
    """The second validation of an unchanged file is answered by the remembered verdict."""
    _modules_after("validate", "-c", "mlops.yaml", cache=tmp_path)
    code, modules = _modules_after("validate", "-c", "mlops.yaml", cache=tmp_path)
    assert code == 0
    assert "mlops_sessions.config.loader" in modules
    assert not any(m.split(".")[0] == "jsonschema" for m in modules)


def test_probe_would_see_a_heavy_import(tmp_path: Path) -> None:
    """Control: the same probe reports a heavy library when one is imported."""
    code, modules = _modules_after(
        "validate", "-c", "mlops.yaml", cache=tmp_path, preimport="aiohttp"
    )
    assert code == 0
    assert any(m.split(".")[0] in HEAVY for m in modules)
