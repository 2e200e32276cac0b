"""Class 4 (issue 12): never the wrong cluster — kubeconfig resolution and loading.

- A kubeconfig named by ``--kubeconfig`` or ``$KUBECONFIG`` that does not exist is an
  error naming the path; nothing falls back to in-cluster credentials (even in a pod).
- Without any kubeconfig, in-cluster login is tried only inside a pod.
- A malformed kubeconfig — generated here by hypothesis: garbage bytes, broken YAML, wrong
  shapes, contexts naming missing clusters or users, mutated valid files — is only ever a
  :class:`KubeconfigError`: one line, naming the file. Through the CLI: exit 1, one line
  on stderr, no traceback.
- ``deploy.context`` pins the cluster: a kubeconfig without that context is refused
  naming both contexts (tests/kube/test_deploy_policy_real.py shows no write reaches the API).

The real ``kubernetes`` client loads every file that passes the checks, so a check that
lets a bad file through shows up as a foreign exception here.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_sessions.executors.kube.client import KubeconfigError, connect

pytest.importorskip("kubernetes")

VALID: dict[str, Any] = {
    "apiVersion": "v1",
    "kind": "Config",
    "clusters": [{"name": "lab", "cluster": {"server": "https://127.0.0.1:6443"}}],
    "users": [{"name": "me", "user": {"token": "not-a-secret"}}],
    "contexts": [{"name": "lab", "context": {"cluster": "lab", "user": "me", "namespace": "ml"}}],
    "current-context": "lab",
}
CASES: dict[str, int] = {}  # cases tried per test, reported by the last test


@pytest.fixture(autouse=True)
def _no_ambient_login(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No KUBECONFIG, no ~/.kube/config, not a pod: each test sets what it needs."""
    monkeypatch.delenv("KUBECONFIG", raising=False)
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))


def _one_line_naming(exc: KubeconfigError, path: Path | str) -> None:
    message = str(exc)
    assert "\n" not in message, message
    assert str(path) in message, message


def test_missing_kubeconfig_option_names_the_path_even_in_a_pod(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # In a pod, in-cluster credentials are available: a typo must not silently use them.
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    missing = tmp_path / "prod-kubeconfig.yaml"
    with pytest.raises(KubeconfigError) as caught:
        connect(None, None, kubeconfig=str(missing))
    _one_line_naming(caught.value, missing)
    assert "--kubeconfig" in str(caught.value)


@pytest.mark.parametrize("value", ["{missing}", "{valid}:{missing}", "{missing}:{valid}"])
def test_missing_file_in_kubeconfig_variable_names_it(
    value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    valid = tmp_path / "valid.yaml"
    valid.write_text(yaml.safe_dump(VALID))
    missing = tmp_path / "gone.yaml"
    monkeypatch.setenv("KUBECONFIG", value.format(missing=missing, valid=valid))
    with pytest.raises(KubeconfigError) as caught:
        connect(None, None)
    _one_line_naming(caught.value, missing)
    assert "$KUBECONFIG" in str(caught.value)


def test_a_directory_is_not_a_kubeconfig(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError) as caught:
        connect(None, None, kubeconfig=str(tmp_path))
    _one_line_naming(caught.value, tmp_path)


def test_no_kubeconfig_outside_a_pod_is_an_error_not_in_cluster(tmp_path: Path) -> None:
    with pytest.raises(KubeconfigError) as caught:
        connect(None, None)
    assert ".kube/config" in str(caught.value)
    assert "not a pod" in str(caught.value)


def test_pinned_context_is_never_replaced_by_in_cluster_login(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", "10.0.0.1")
    with pytest.raises(KubeconfigError) as caught:
        connect("prod", None)
    assert "'prod'" in str(caught.value) and "in-cluster" in str(caught.value)


def test_pinned_context_missing_from_the_kubeconfig_names_both(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(VALID))
    with pytest.raises(KubeconfigError) as caught:
        connect("prod", None, kubeconfig=str(path))
    message = str(caught.value)
    assert "'prod'" in message and "'lab'" in message and "refusing" in message


def test_valid_kubeconfig_selects_context_server_and_namespace(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(VALID))
    cluster = connect(None, None, kubeconfig=str(path))
    assert (cluster.context, cluster.server, cluster.namespace) == (
        "lab",
        "https://127.0.0.1:6443",
        "ml",
    )
    pinned = connect("lab", "other", kubeconfig=str(path))
    assert (pinned.context, pinned.namespace) == ("lab", "other")


# --- generated malformed kubeconfigs --------------------------------------------------------

KEYS = ["name", "cluster", "server", "user", "context", "namespace", "token", "clusters"]
scalars = st.one_of(
    st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.sampled_from(["lab", "me"])
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner),
    max_leaves=8,
)
# Paths into VALID that a mutation replaces or deletes.
PATHS: list[tuple[Any, ...]] = [
    ("clusters",),
    ("clusters", 0),
    ("clusters", 0, "name"),
    ("clusters", 0, "cluster"),
    ("clusters", 0, "cluster", "server"),
    ("users",),
    ("users", 0, "name"),
    ("users", 0, "user"),
    ("contexts",),
    ("contexts", 0),
    ("contexts", 0, "name"),
    ("contexts", 0, "context"),
    ("contexts", 0, "context", "cluster"),
    ("contexts", 0, "context", "user"),
    ("contexts", 0, "context", "namespace"),
    ("current-context",),
]


def _mutate(path: tuple[Any, ...], value: Any, delete: bool) -> dict[str, Any]:
    document = copy.deepcopy(VALID)
    parent: Any = document
    for step in path[:-1]:
        parent = parent[step]
    if delete:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return document


def _dump(document: Any) -> bytes:
    return yaml.safe_dump(document, allow_unicode=True).encode()


texts = st.text(max_size=200).map(str.encode)
broken_yaml = st.sampled_from(
    [
        b"clusters: [",
        b"{{{",
        b"contexts:\n  - name: a\n bad-indent: 1\n",
        b"\tclusters: []",
        b"key: 'unterminated",
        b"- just\n- a\n- list\n",
        b"42",
        b"!!python/object:os.system {}",
        b"current-context: [a]\n",
        b"\xff\xfe\x00garbage",
        b"",
    ]
)
mutated = st.builds(_mutate, st.sampled_from(PATHS), values, st.booleans()).map(_dump)
dangling = st.sampled_from(
    [
        # A context naming a cluster that is not defined, a user that is not, no cluster.
        _dump({**VALID, "clusters": [{"name": "other", "cluster": {"server": "https://x"}}]}),
        _dump({**VALID, "users": []}),
        _dump({**VALID, "contexts": [{"name": "lab", "context": {"user": "me"}}]}),
        _dump({**VALID, "current-context": "nowhere"}),
        _dump({k: v for k, v in VALID.items() if k != "current-context"}),
        _dump({**VALID, "clusters": [{"name": "lab", "cluster": {}}]}),
        _dump(
            {
                **VALID,
                "clusters": [
                    {
                        "name": "lab",
                        "cluster": {"server": "https://x", "certificate-authority-data": "%%"},
                    }
                ],
            }
        ),
    ]
)
kubeconfigs = st.one_of(st.binary(max_size=200), texts, broken_yaml, mutated, dangling)


def test_generated_kubeconfigs_load_or_fail_with_one_line_naming_the_file(
    tmp_path: Path,
) -> None:
    path = tmp_path / "generated-kubeconfig"
    outcomes = {"loaded": 0, "refused": 0}

    @settings(
        max_examples=500,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(content=kubeconfigs)
    def check(content: bytes) -> None:
        path.write_bytes(content)
        for pinned in (None, "lab"):
            try:
                cluster = connect(pinned, None, kubeconfig=str(path))
            except KubeconfigError as exc:
                _one_line_naming(exc, path)
                outcomes["refused"] += 1
            else:
                assert cluster.server and cluster.context == "lab"
                outcomes["loaded"] += 1

    check()
    CASES["generated kubeconfigs"] = sum(outcomes.values())
    assert outcomes["refused"] > 100 and outcomes["loaded"] > 0, outcomes


# --- through the CLI ----------------------------------------------------------------------

CONFIG = """\
apiVersion: mlops/v1alpha1
project: {name: shop}
models:
  digits:
    deploy: {namespace: ml%s}
"""


@pytest.mark.parametrize(
    ("name", "content", "pinned"),
    [
        ("missing", None, ""),
        ("garbage", b"\x00\x9f\x92\x96 not yaml", ""),
        ("bad yaml", b"clusters: [\n", ""),
        ("a list", b"- a\n- b\n", ""),
        ("dangling cluster", _dump({**VALID, "clusters": []}), ""),
        ("pinned elsewhere", _dump(VALID), ", context: prod"),
    ],
)
@pytest.mark.parametrize("command", ["rollback", "status"])
def test_cli_refuses_a_bad_kubeconfig_in_one_line(
    command: str,
    name: str,
    content: bytes | None,
    pinned: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from mlops_sessions.frontends.cli import main

    project = tmp_path / "project"  # HOME (a schema cache) is beside it, not in it
    project.mkdir()
    monkeypatch.chdir(project)
    config = project / "mlops.yaml"
    config.write_text(CONFIG % pinned)
    kubeconfig = project / "kubeconfig"
    if content is not None:
        kubeconfig.write_bytes(content)
    argv = [command, "-c", str(config), "--kubeconfig", str(kubeconfig), "--api-retries", "1"]
    before = sorted(p.name for p in project.iterdir())
    code = main(argv)
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert code == 1, err
    assert len(lines) == 1 and "Traceback" not in err, err
    assert str(kubeconfig) in lines[0]
    if pinned:
        assert "'prod'" in lines[0] and "'lab'" in lines[0]
    assert sorted(p.name for p in project.iterdir()) == before  # nothing written
