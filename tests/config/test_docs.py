"""docs/config.md is generated from the schema and must be kept up to date."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from mlops_sessions import docgen
from mlops_sessions.config.loader import schema

REPO = Path(__file__).resolve().parents[2]
DOC = REPO / "docs" / "config.md"


def test_docs_config_md_is_up_to_date() -> None:
    expected = docgen.render_markdown(schema())
    current = DOC.read_text(encoding="utf-8") if DOC.exists() else ""
    assert current == expected, (
        "docs/config.md is out of date with schemas/mlops.schema.json; "
        f"regenerate it with `{docgen.COMMAND}`"
    )


def test_check_mode_fails_on_a_stale_file_and_names_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "config.md"
    out.write_text("# old\n")
    assert docgen.main(["--check", "--output", str(out)]) == 1
    assert docgen.COMMAND in capsys.readouterr().err
    assert docgen.main(["--output", str(out)]) == 0
    assert docgen.main(["--check", "--output", str(out)]) == 0
    assert out.read_text() == docgen.render_markdown(schema())


def _property_names(node: Any) -> set[str]:
    names: set[str] = set()
    if isinstance(node, dict):
        for key, value in node.get("properties", {}).items():
            names.add(key)
            names |= _property_names(value)
        for key, value in node.items():
            if key != "properties":
                names |= _property_names(value)
    elif isinstance(node, list):
        for value in node:
            names |= _property_names(value)
    return names


def test_every_key_of_the_schema_is_documented() -> None:
    text = docgen.render_markdown(schema())
    documented = set(re.findall(r"^\| `([^`]+)` \|", text, flags=re.M))
    documented |= set(re.findall(r"^## `([^`]+)`", text, flags=re.M))  # section headings
    last_parts = {re.split(r"[.\]]", path)[-1] for path in documented}
    missing = _property_names(schema()) - last_parts
    assert not missing, f"keys missing from the reference: {sorted(missing)}"


def test_defaults_allowed_values_and_refs_are_resolved() -> None:
    text = docgen.render_markdown(schema())
    rows = {m.group(1): m.group(0) for m in re.finditer(r"^\| `([^`]+)` \|.*$", text, flags=re.M)}
    assert "`8501`" in rows["serve.port"] and "1 to 65535" in rows["serve.port"]
    assert "`mlops`, `tfserving`" in rows["serve.runtime"]
    # $ref'd definitions are expanded where they are used.
    assert "(duration)" in rows["train.timeout"] and "(ms\\|s\\|m\\|h)" in rows["train.timeout"]
    assert "deploy.resources.limits.gpu" in rows
    assert "≥ 0" in rows["deploy.resources.gpu"]
    assert "must not match `:latest$`" in rows["images.<image>.base.image"]


def test_tables_have_five_cells_per_row() -> None:
    """Pipes inside patterns are escaped, so no row grows extra columns."""
    for line in docgen.render_markdown(schema()).splitlines():
        if line.startswith("|"):
            cells = re.split(r"(?<!\\)\|", line)
            assert len(cells) == 7, line
