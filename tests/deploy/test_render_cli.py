"""`mlops render` as a command: where digests come from, what it writes, how it fails.

Runs the real CLI entry point (and once a real subprocess) on configs in a scratch
directory with build records written the way the build step records them.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.drivers import render_inputs
from mlops_sessions.frontends.cli import main

DIGEST_A = "a" * 64
DIGEST_B = "b" * 64

CONFIG: dict[str, Any] = {
    "apiVersion": "mlops/v1alpha1",
    "project": {"name": "shop"},
    "images": {
        "serve": {"repository": "ranker", "base": {"variant": "cpu", "tensorflow": "2.21.0"}},
        "serve-next": {"repository": "ranker", "base": {"variant": "cpu", "tensorflow": "2.21.0"}},
    },
    "models": {
        "ranker": {
            "image": "serve",
            "deploy": {"namespace": "shop"},
            "rollout": {
                "hosts": ["ranker.example.com"],
                "stable": {"weight": 90},
                "canary": {"weight": 10, "image": "serve-next"},
            },
        }
    },
}


def write_config(root: Path, doc: dict[str, Any] | None = None) -> Path:
    path = root / "mlops.yaml"
    path.write_text(yaml.safe_dump(doc or CONFIG))
    return path


def record_build(root: Path, image: str, digest: str, **lineage: str) -> None:
    path = render_inputs.build_record(root / ".mlops", image)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"image": f"reg.example.com/ranker@sha256:{digest}", **lineage}))


def render_json(config: Path, *args: str, capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    capsys.readouterr()
    assert main(["render", "-c", str(config), "--json", *args]) == 0
    result: dict[str, Any] = json.loads(capsys.readouterr().out)
    return result


def images_in(out: Path) -> dict[str, str]:
    docs = yaml.safe_load_all((out / "all.yaml").read_text())
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
        for d in docs
        if d["kind"] == "Deployment"
    }


def test_digests_come_from_the_build_records(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    record_build(tmp_path, "serve", DIGEST_A, run_id="r-1", git_commit="c" * 40)
    record_build(tmp_path, "serve-next", DIGEST_B, run_id="r-2", model_hash="m" * 64)
    result = render_json(config, capsys=capsys)
    out = tmp_path / "k8s" / "rendered" / "default"
    assert Path(result["out"]) == out
    # all.yaml comes last of the top-level files (folders such as rbac/ follow it).
    assert [f for f in result["files"] if "/" not in f][-1] == "all.yaml"
    assert images_in(out) == {
        "ranker-stable": f"reg.example.com/ranker@sha256:{DIGEST_A}",
        "ranker-canary": f"reg.example.com/ranker@sha256:{DIGEST_B}",
    }
    canary = yaml.safe_load((out / "21-deployment-ranker-canary.yaml").read_text())
    notes = canary["metadata"]["annotations"]
    assert notes["mlops-sessions.dev/run-id"] == "r-2"
    assert notes["mlops-sessions.dev/model-hash"] == "m" * 64
    assert "mlops-sessions.dev/git-commit" not in notes  # not recorded: left out, not invented


def test_image_override_wins_over_the_record(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    record_build(tmp_path, "serve", DIGEST_A)
    override = f"other.example.com/ranker@sha256:{DIGEST_B}"
    render_json(
        config, "--image", f"serve-next={override}", "--out", str(tmp_path / "o"), capsys=capsys
    )
    assert images_in(tmp_path / "o")["ranker-canary"] == override


def test_no_digest_names_both_ways_to_fix_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_config(tmp_path)
    assert main(["render", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert "no image digest recorded for image 'serve'" in err
    assert str(render_inputs.build_record(tmp_path / ".mlops", "serve")) in err
    assert "--image serve=REGISTRY/REPO@sha256:<digest>" in err
    assert not (tmp_path / "k8s").exists()


def test_the_command_fails_cleanly_in_a_real_process(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    done = subprocess.run(
        [sys.executable, "-m", "mlops_sessions", "render", "-c", str(config)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert done.stderr.startswith("mlops render: no image digest recorded")


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("serve", "expected NAME=REGISTRY/REPO@sha256:<digest>"),
        ("web=reg.example.com/ranker@sha256:" + DIGEST_A, "no image named 'web'"),
        ("serve=reg.example.com/ranker:v3", "must be pinned by digest"),
        ("serve=reg.example.com/ranker@sha256:abc", "must be pinned by digest"),
    ],
)
def test_bad_image_overrides(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], value: str, expected: str
) -> None:
    config = write_config(tmp_path)
    assert main(["render", "-c", str(config), "--image", value]) == 1
    assert expected in capsys.readouterr().err


@pytest.mark.parametrize("content", ["{not json", json.dumps({"image": "reg/ranker:v1"})])
def test_a_broken_build_record_is_reported(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str
) -> None:
    config = write_config(tmp_path)
    path = render_inputs.build_record(tmp_path / ".mlops", "serve")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    assert main(["render", "-c", str(config)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err and "--image serve=" in err


def test_a_model_without_an_image_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(json.dumps(CONFIG))
    del doc["models"]["ranker"]["image"]
    config = write_config(tmp_path, doc)
    assert main(["render", "-c", str(config)]) == 1
    assert "set models.ranker.image" in capsys.readouterr().err


def test_unsupported_kubernetes_version_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(json.dumps(CONFIG))
    doc["models"]["ranker"]["deploy"]["kubernetes_version"] = "1.12"
    config = write_config(tmp_path, doc)
    record_build(tmp_path, "serve", DIGEST_A)
    record_build(tmp_path, "serve-next", DIGEST_B)
    # A config error now (exit 2): validate checks the version against the same list.
    assert main(["render", "-c", str(config)]) == 2
    err = capsys.readouterr().err
    assert "deploy.kubernetes_version '1.12' is not supported" in err
    assert not (tmp_path / "k8s").exists()


def test_stale_files_go_and_foreign_files_stay(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(json.dumps(CONFIG))
    doc["models"]["ranker"]["deploy"]["network_policy"] = True
    config = write_config(tmp_path, doc)
    record_build(tmp_path, "serve", DIGEST_A)
    record_build(tmp_path, "serve-next", DIGEST_B)
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("ours, not render's\n")
    (out / "kustomization.yaml").write_text("resources: [all.yaml]\n")
    render_json(config, "--out", str(out), capsys=capsys)
    assert (out / "50-networkpolicy-ranker.yaml").is_file()
    doc["models"]["ranker"]["deploy"]["network_policy"] = False
    write_config(tmp_path, doc)
    result = render_json(config, "--out", str(out), capsys=capsys)
    assert not (out / "50-networkpolicy-ranker.yaml").exists()
    assert (out / "README.md").read_text() == "ours, not render's\n"
    assert (out / "kustomization.yaml").is_file()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        {f.split("/")[0] for f in result["files"]} | {"README.md", "kustomization.yaml"}
    )
    assert [o["kind"] for o in result["objects"]] == [
        "ServiceAccount",
        "ConfigMap",
        "Service",
        "Deployment",
        "Deployment",
        "DestinationRule",
        "VirtualService",
    ]
