"""`mlops ci` with signed images and verified deploys: the push job installs cosign (and
syft for SBOMs) at pinned versions and takes the key from the CI's secret store; the deploy
jobs install cosign and get what verification reads. Both workflows stay valid against the
official schemas (check-jsonschema's vendored copies, as tests/workflow/test_ci.py checks).

GitLab's install scripts are run for real here, against release files served from disk
(curl reads file:// URLs as it reads https://), so the checksum check is shown to pass
and to refuse a tampered download.
"""

from __future__ import annotations

import hashlib
import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlops_sessions.frontends.cli import main
from mlops_sessions.planning import ci_templates, stamped
from mlops_sessions.planning.ci_templates import STAGES, CiOptions, CiSigning
from tests.cluster import components
from tests.workflow.test_ci import check_schema

SIGNING = CiSigning(
    sign=True,
    sbom=True,
    sign_secrets=("COSIGN_KEY",),
    verify=True,
    verify_secrets=("COSIGN_PUBLIC_KEY",),
)
PINNED_ACTION = re.compile(r"^[\w.-]+/[\w./-]+@[0-9a-f]{40}$")


def options(signing: CiSigning) -> CiOptions:
    return CiOptions(
        sessions=("validate", *STAGES, "pipeline"),
        install=("mlops-sessions==0.1.0", "nox==2026.10.20"),
        production_profile="prod",
        registries=("registry.example.com",),
        signing=signing,
    )


def rendered(provider: str, signing: CiSigning, tmp_path: Path) -> dict[str, Any]:
    """The workflow, written and checked against the provider's official schema."""
    path = tmp_path / f"{provider}.yml"
    body = ci_templates.render(provider, options(signing))
    path.write_text(stamped.stamp(body, f"mlops ci {provider}", "mlops.yaml"))
    check_schema(path, provider)
    document: dict[str, Any] = yaml.safe_load(path.read_text())
    return document


def _gh_steps(document: dict[str, Any], job: str) -> list[dict[str, Any]]:
    return list(document["jobs"][job]["steps"])


def _index(steps: list[dict[str, Any]], predicate: Any) -> int:
    found = [i for i, step in enumerate(steps) if predicate(step)]
    assert len(found) == 1, found
    return found[0]


def _uses(prefix: str) -> Any:
    return lambda step: str(step.get("uses", "")).startswith(prefix)


def _runs(command: str) -> Any:
    return lambda step: step.get("run") == command


def test_the_tools_ci_installs_are_the_ones_the_tests_run() -> None:
    assert ci_templates.COSIGN_VERSION == components.COSIGN_VERSION
    assert ci_templates.SYFT_VERSION == components.SYFT_VERSION


def test_github_push_installs_pinned_cosign_and_syft_and_reads_the_key_secret(
    tmp_path: Path,
) -> None:
    steps = _gh_steps(rendered("github", SIGNING, tmp_path), "build")
    push = _index(steps, _runs("nox --no-dependencies -s push"))
    cosign = _index(steps, _uses("sigstore/cosign-installer@"))
    syft = _index(steps, _uses("anchore/sbom-action/download-syft@"))
    login = _index(steps, lambda s: "docker login" in str(s.get("run", "")))
    assert login < cosign < syft < push
    assert PINNED_ACTION.match(steps[cosign]["uses"]) and PINNED_ACTION.match(steps[syft]["uses"])
    assert steps[cosign]["with"] == {"cosign-release": components.COSIGN_VERSION}
    assert steps[syft]["with"] == {"syft-version": components.SYFT_VERSION}
    assert steps[push]["env"] == {
        "COSIGN_KEY": "${{ secrets.COSIGN_KEY }}",
        "COSIGN_PASSWORD": "${{ secrets.COSIGN_PASSWORD }}",
    }
    # build and scan sign nothing: they get no key.
    for session in ("build", "scan"):
        assert "env" not in steps[_index(steps, _runs(f"nox --no-dependencies -s {session}"))]


@pytest.mark.parametrize("job", ["deploy", "deploy-production"])
def test_github_deploy_installs_cosign_logs_in_and_reads_the_public_key(
    tmp_path: Path, job: str
) -> None:
    steps = _gh_steps(rendered("github", SIGNING, tmp_path), job)
    deploy = _index(steps, _runs("nox --no-dependencies -s deploy"))
    cosign = _index(steps, _uses("sigstore/cosign-installer@"))
    login = _index(steps, lambda s: "docker login" in str(s.get("run", "")))
    assert login < cosign < deploy
    assert steps[deploy]["env"] == {"COSIGN_PUBLIC_KEY": "${{ secrets.COSIGN_PUBLIC_KEY }}"}
    assert not any(_uses("anchore/")(s) for s in steps)  # the SBOM is made at push only


def test_github_without_signing_installs_nothing(tmp_path: Path) -> None:
    document = rendered("github", CiSigning(), tmp_path)
    text = json.dumps(document)
    assert "cosign" not in text and "syft" not in text and "COSIGN" not in text
    deploy = _gh_steps(document, "deploy")
    assert not any("docker login" in str(s.get("run", "")) for s in deploy)


def test_github_signing_without_sbom_installs_no_syft(tmp_path: Path) -> None:
    signing = CiSigning(sign=True, sbom=False, sign_secrets=("COSIGN_KEY",))
    steps = _gh_steps(rendered("github", signing, tmp_path), "build")
    assert any(_uses("sigstore/cosign-installer@")(s) for s in steps)
    assert not any(_uses("anchore/")(s) for s in steps)
    deploy = _gh_steps(rendered("github", signing, tmp_path), "deploy")
    assert not any(_uses("sigstore/")(s) for s in deploy)  # no deploy.verify: nothing to check


def _script(document: dict[str, Any], job: str) -> list[str]:
    return list(document[job]["script"])


def test_gitlab_push_downloads_checks_and_installs_before_pushing(tmp_path: Path) -> None:
    script = _script(rendered("gitlab", SIGNING, tmp_path), "build")
    push = script.index("nox --no-dependencies -s push")
    version = components.COSIGN_VERSION
    (cosign,) = [
        i for i, line in enumerate(script) if f"cosign/releases/download/{version}" in line
    ]
    (syft,) = [
        i
        for i, line in enumerate(script)
        if f"syft/releases/download/{components.SYFT_VERSION}" in line
    ]
    (key,) = [i for i, line in enumerate(script) if 'COSIGN_KEY="$(cat "$COSIGN_KEY")"' in line]
    assert cosign < syft < key < push
    for index in (cosign, syft):
        assert "sha256sum --check --strict -" in script[index]
    assert "/usr/local/bin/cosign" in script[cosign]
    assert "/usr/local/bin/syft" in script[syft]


@pytest.mark.parametrize("job", ["deploy", "deploy-production"])
def test_gitlab_deploy_installs_cosign_and_reads_the_public_key(tmp_path: Path, job: str) -> None:
    script = _script(rendered("gitlab", SIGNING, tmp_path), job)
    deploy = script.index("nox --no-dependencies -s deploy")
    (cosign,) = [i for i, line in enumerate(script) if "cosign-linux-amd64" in line]
    (login,) = [i for i, line in enumerate(script) if "~/.docker/config.json" in line]
    (key,) = [i for i, line in enumerate(script) if '"$(cat "$COSIGN_PUBLIC_KEY")"' in line]
    assert login < cosign < key < deploy


def test_gitlab_comments_name_the_secrets(tmp_path: Path) -> None:
    text = ci_templates.render("gitlab", options(SIGNING))
    assert "COSIGN_KEY and COSIGN_PASSWORD from masked, protected CI/CD variables" in text
    assert "Make COSIGN_KEY, COSIGN_PUBLIC_KEY File-type variables" in text


def _serve_release(root: Path, name: str, data: bytes, tampered: bool = False) -> tuple[str, str]:
    """A release file and its checksum file under root, as file:// URLs."""
    (root / name).write_bytes(data + (b"!" if tampered else b""))
    digest = hashlib.sha256(data).hexdigest()
    (root / "sums.txt").write_text(f"{'0' * 64}  other-file\n{digest}  {name}\n")
    return f"file://{root / name}", f"file://{root / 'sums.txt'}"


def _run(script: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["bash", "-c", script], capture_output=True, text=True, timeout=60, check=False
    )


def test_gitlab_download_check_installs_a_good_file_and_refuses_a_tampered_one(
    tmp_path: Path,
) -> None:
    installed = tmp_path / "bin" / "cosign"
    installed.parent.mkdir()
    served = tmp_path / "release"
    served.mkdir()
    name = "cosign-linux-amd64"
    install = f"install -m 0755 {name} {installed}"

    url, sums = _serve_release(served, name, b"#!/bin/sh\necho cosign\n")
    done = _run(ci_templates.download_checked(url, sums, name, install))
    assert done.returncode == 0, done.stderr
    assert _run(str(installed)).stdout == "cosign\n"

    installed.unlink()
    url, sums = _serve_release(served, name, b"#!/bin/sh\necho cosign\n", tampered=True)
    done = _run(ci_templates.download_checked(url, sums, name, install))
    assert done.returncode != 0 and "FAILED" in done.stdout + done.stderr
    assert not installed.exists()

    (served / "sums.txt").write_text(f"{'0' * 64}  other-file\n")  # no line for the file
    done = _run(ci_templates.download_checked(url, sums, name, install))
    assert done.returncode != 0 and not installed.exists()


def test_the_real_install_scripts_are_valid_shell() -> None:
    for script in (ci_templates.cosign_install_script(), ci_templates.syft_install_script()):
        done = subprocess.run(["bash", "-n", "-c", script], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr


# --- the step: from mlops.yaml to the options -----------------------------------------------

CONFIG: dict[str, Any] = {
    "apiVersion": "mlops/v1alpha1",
    "project": {"name": "shop"},
    "images": {
        "serve": {
            "registry": "registry.example.com/ml",
            "repository": "digits-serve",
            "base": {"variant": "cpu", "tensorflow": "2.21.0"},
            "sign": {"key": "env://COSIGN_KEY", "sbom": False},
        }
    },
    "models": {
        "digits": {
            "image": "serve",
            "deploy": {"namespace": "ml", "verify": {"key": "env://COSIGN_PUBLIC_KEY"}},
        }
    },
}


def test_mlops_ci_takes_signing_from_the_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "mlops.yaml").write_text(yaml.safe_dump(CONFIG))
    out = tmp_path / "workflow.yml"
    code = main(["ci", "github", "-c", str(tmp_path / "mlops.yaml"), "-o", str(out), "--json"])
    assert code == 0
    assert json.loads(capsys.readouterr().out)["warnings"] == []
    steps = [s for job in yaml.safe_load(out.read_text())["jobs"].values() for s in job["steps"]]
    secrets = {name for s in steps for name in s.get("env", {})}
    assert {"COSIGN_KEY", "COSIGN_PASSWORD", "COSIGN_PUBLIC_KEY"} <= secrets
    assert not any(_uses("anchore/")(s) for s in steps)  # sign.sbom: false


def test_mlops_ci_warns_about_a_signing_key_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = json.loads(json.dumps(CONFIG))
    doc["images"]["serve"]["sign"]["key"] = "keys/cosign.key"
    (tmp_path / "mlops.yaml").write_text(yaml.safe_dump(doc))
    out = tmp_path / "workflow.yml"
    code = main(["ci", "gitlab", "-c", str(tmp_path / "mlops.yaml"), "-o", str(out), "--json"])
    assert code == 0
    (warning,) = json.loads(capsys.readouterr().out)["warnings"]
    assert "keys/cosign.key" in warning and "env://COSIGN_KEY" in warning
