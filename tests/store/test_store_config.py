"""``store:`` as a path (the original form) or as ``{path, remote, endpoint, region}``."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from mlops_sessions.config.loader import load
from mlops_sessions.errors import ConfigError

BASE = {
    "apiVersion": "mlops/v1alpha1",
    "project": {"name": "toy"},
    "models": {"toy": {}},
}


def _load(tmp_path: Path, **top: object) -> object:
    path = tmp_path / "mlops.yaml"
    path.write_text(yaml.safe_dump({**BASE, **top}))
    return load(path)


def test_a_path_is_still_a_local_store(tmp_path: Path) -> None:
    config = _load(tmp_path, store="artifacts")
    assert config.store == "artifacts" and config.store_remote is None  # type: ignore[attr-defined]
    assert config.store_path == (tmp_path / "artifacts").resolve()  # type: ignore[attr-defined]


def test_the_object_form_names_a_remote(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        store={"remote": "s3://team-bucket/digits", "endpoint": "http://minio:9000"},
        tracking={"mlflow": {"uri": "http://127.0.0.1:5000", "experiment": "digits"}},
    )
    assert config.store == ".mlops"  # type: ignore[attr-defined]
    remote = config.store_remote  # type: ignore[attr-defined]
    assert remote.url == "s3://team-bucket/digits" and remote.endpoint == "http://minio:9000"
    mlflow = config.tracking.mlflow  # type: ignore[attr-defined]
    assert mlflow.experiment == "digits" and mlflow.alias == "champion"


@pytest.mark.parametrize(
    "store",
    [
        {"remote": "https://bucket/prefix"},
        {"remote": "s3://bucket", "access_key": "AKIA..."},  # credentials never in the file
        {"remote": "s3://bucket", "endpoint": "minio:9000"},
    ],
)
def test_a_bad_remote_is_a_located_config_error(tmp_path: Path, store: object) -> None:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, store=store)
    assert "store" in str(caught.value)
