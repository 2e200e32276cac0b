"""The README's example mlops.yaml is a valid config: documentation that cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

from mlops_sessions.config.loader import loads


def test_readme_yaml_example_is_valid(repo_root: Path, tmp_path: Path) -> None:
    readme = (repo_root / "README.md").read_text()
    blocks = re.findall(r"```yaml\n(.*?)```", readme, flags=re.S)
    assert blocks, "the README should show an mlops.yaml"
    config = loads(blocks[0], file="README.md", root=tmp_path, profile="prod", env={})
    assert config.models["digits"].deploy.replicas == 3
    assert config.models["digits"].evaluate is not None
