"""Class 6 (issue 12): CLI arguments are checked before anything is written.

Every free-form option that ends up in a generated file, a URL, a name, a port or a path
has an argparse ``type=`` validator (:mod:`mlops_sessions.console.argtypes`). A bad value is
refused while the command line is parsed: exit code 2, one line naming the option with a
hint, no traceback, and no file created — checked here through ``mlops_sessions.frontends.
cli.main`` with a table of known-bad values per option and hypothesis-generated ones
(ports, hosts, branch names, Make prefixes, URLs). Values the validators accept are
checked to be the valid ones (round trips over generated IPs, hostnames and branches).
"""

from __future__ import annotations

import argparse
import ipaddress
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mlops_sessions.console import argtypes

CONFIG = """\
apiVersion: mlops/v1alpha1
project: {name: shop}
models:
  digits:
    deploy: {namespace: ml}
"""
SHA = "a" * 64
# The rest of a valid command line around the option under test.
COMMANDS: dict[str, list[str]] = {
    "ci": ["ci", "github"],
    "make": ["make"],
    "fetch-model": ["fetch-model", "--uri", "s3://bucket/m.tar.gz", "--sha256", SHA, "--dest", "d"],
    "serve": ["serve"],
    "deploy": ["deploy"],
    "rollback": ["rollback"],
    "status": ["status"],
    "render": ["render"],
    "evaluate": ["evaluate"],
}
BAD: list[tuple[str, str, list[str]]] = [
    (
        "ci",
        "--branch",
        ["", " ", "feature branch", "a..b", "-x", "bad'quote", 'x"y', "$HOME", "a/", "a//b"],
    ),
    ("ci", "--branch", ["x.lock", ".hidden", "@", "a@{1}", "tab\tbranch", "new\nline", "a\\b"]),
    ("ci", "--output", ["", "{dir}", "new\nline"]),
    ("ci", "--production-profile", ["Prod", "has space", "", "-x", "a" * 64]),
    ("ci", "--install", ["", " ", 'pkg"; rm -rf /', "a$b", "`id`", "new\nline"]),
    ("make", "--prefix", ["bad prefix:", "a:b", "x#", "a=b", "$(X)", "a;b", "tab\t", "%"]),
    ("make", "--output", ["", "{dir}"]),
    (
        "fetch-model",
        "--endpoint",
        ["not-a-url", "ftp://x.example", "http://", "http://bad host", "http://x:99999"],
    ),
    ("fetch-model", "--endpoint", ["https://-x-/", "http://a..b", "//x.example", "http://x:port"]),
    ("fetch-model", "--dest", ["", "a\x00b"]),
    ("serve", "--port", ["-1", "65536", "abc", "8_501", "", "1.5", "80 80", "+80", "0x50"]),
    ("serve", "--host", ["", "bad host", "999.1.1.1", "-x.com", "a..b", "x" * 300, "h_st"]),
    ("serve", "--version", ["", "a/b", "../x", "v 1", ".hidden", "a:b"]),
    ("serve", "--run", ["../../etc", "a b", "", "x/y"]),
    ("serve", "--model-dir", ["", " "]),
    ("deploy", "--api-timeout", ["0", "-1", "nan", "inf", "x", ""]),
    ("deploy", "--api-retries", ["0", "-3", "1.5", "x", "1_0"]),
    ("deploy", "--api-backoff", ["-0.1", "nan", "-inf", "x"]),
    ("deploy", "--kubeconfig", ["", "a\nb"]),
    ("status", "--kubeconfig", [""]),
    ("rollback", "--to", ["0", "-1", "x", "1.0"]),
    ("render", "--out", ["", "x\ny"]),
    ("evaluate", "--run", ["../x", "", "a/b"]),
]
CASES = [(cmd, opt, value) for cmd, opt, values in BAD for value in values]


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*"))


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "project"
    root.mkdir()
    (root / "mlops.yaml").write_text(CONFIG)
    (root / "existing-dir").mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return root


def refused(
    root: Path, command: str, option: str, value: str, capsys: pytest.CaptureFixture[str]
) -> str:
    """Run the CLI with option=value; assert it is an argparse refusal; return the line."""
    from mlops_sessions.frontends.cli import main

    before = _files(root)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exited:
        main([*COMMANDS[command], f"{option}={value}"])
    err = capsys.readouterr().err
    assert exited.value.code == 2, err
    assert "Traceback" not in err
    last = err.rstrip("\n").splitlines()[-1]
    assert re.match(rf"mlops {command}: error: argument (-\w/)?{option}: ", last), err
    # The whole refusal (after the usage lines) is that one line.
    assert err.rstrip("\n").split("\n")[-1] == last and "usage:" in err
    assert _files(root) == before, "a file was written before the arguments were checked"
    return last


@pytest.mark.parametrize(("command", "option", "value"), CASES)
def test_bad_value_is_refused_with_a_hint_before_any_write(
    command: str,
    option: str,
    value: str,
    project: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    value = value.replace("{dir}", str(project / "existing-dir"))
    line = refused(project, command, option, value, capsys)
    message = line.split(f"{option}: ", 1)[1]
    # A hint says what is expected: an example or the rule (every validator gives one).
    assert any(word in message for word in ("e.g.", "use ", "expected", "name ")), line


def test_issue_examples(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert "git branch name" in refused(project, "ci", "--branch", "", capsys)
    assert "mlops-" in refused(project, "make", "--prefix", "bad prefix:", capsys)
    assert "http" in refused(project, "fetch-model", "--endpoint", "not-a-url", capsys)
    assert "0 to 65535" in refused(project, "serve", "--port", "70000", capsys)
    assert "IP address or hostname" in refused(project, "serve", "--host", "no such host", capsys)


# --- generated bad values through the CLI ------------------------------------------------

bad_ports = st.one_of(
    st.integers(max_value=-1).map(str),
    st.integers(min_value=65536).map(str),
    st.text(max_size=8).filter(lambda s: not s.strip().isdigit()),
)
bad_branches = st.text(min_size=1, max_size=20).filter(
    lambda s: any(c in s for c in " '\"$\\~^:?*[#`,;") or s.startswith("-")
)
bad_prefixes = st.text(min_size=1, max_size=12).filter(
    lambda s: any(not (c.isascii() and (c.isalnum() or c in "._-")) for c in s)
)
bad_urls = st.one_of(
    st.text(max_size=30).filter(lambda s: not s.startswith(("http://", "https://"))),
    st.builds(
        lambda h: f"http://{h}/", st.text(min_size=1, max_size=12).filter(lambda h: " " in h)
    ),
)
GENERATED = {
    ("serve", "--port"): bad_ports,
    ("ci", "--branch"): bad_branches,
    ("make", "--prefix"): bad_prefixes,
    ("fetch-model", "--endpoint"): bad_urls,
}


@pytest.mark.parametrize(("command", "option"), list(GENERATED))
def test_generated_bad_values_are_refused(
    command: str, option: str, project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    @settings(
        max_examples=120,
        deadline=None,
        database=None,
        derandomize=True,
        suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.filter_too_much],
    )
    @given(value=GENERATED[command, option])
    def check(value: str) -> None:
        if "\x00" in value:  # not passable on a real command line (argv is C strings)
            return
        refused(project, command, option, value, capsys)

    check()


# --- what the validators accept ------------------------------------------------------------

label_chars = st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789")
host_labels = st.builds(
    lambda first, middle, last: first + middle + last,
    label_chars,
    st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-"), max_size=20),
    label_chars,
)


@settings(max_examples=300, deadline=None, database=None, derandomize=True)
@given(
    port=st.integers(0, 65535),
    ip=st.ip_addresses(),
    labels=st.lists(host_labels, min_size=1, max_size=4),
    tld=st.sampled_from(["com", "internal", "local", "svc"]),
)
def test_valid_values_are_accepted_unchanged(
    port: int, ip: ipaddress.IPv4Address | ipaddress.IPv6Address, labels: list[str], tld: str
) -> None:
    assert argtypes.port(str(port)) == port
    assert argtypes.host(str(ip)) == str(ip)
    hostname = ".".join([*labels, tld])
    assert argtypes.host(hostname) == hostname
    assert argtypes.http_url(f"https://{hostname}:{port or 1}/path") == (
        f"https://{hostname}:{port or 1}/path"
    )
    assert argtypes.http_url(f"http://[{ip}]:9000" if ip.version == 6 else f"http://{ip}:9000")


@pytest.mark.parametrize(
    "value", ["main", "release/1.2", "feature/x_y-z", "v1.0+build", "user@host", "a.b/c"]
)
def test_valid_branches_are_accepted(value: str) -> None:
    assert argtypes.branch(value) == value


GOOD = [
    (argtypes.make_prefix, ""),
    (argtypes.make_prefix, "mlops-"),
    (argtypes.label, "20261201T144500Z-0a1b2c-deadbeef"),
    (argtypes.dns_label, "prod"),
    (argtypes.pip_requirement, "mlops-sessions[serve]>=1.2,<2"),
    (argtypes.positive_float, "0.5"),
    (argtypes.non_negative_float, "0"),
]


@pytest.mark.parametrize(("validator", "value"), GOOD)
def test_common_good_values_pass(validator: object, value: str) -> None:
    assert callable(validator)
    validator(value)


def test_refusals_are_argparse_errors_on_one_line() -> None:
    for validator, value in [
        (argtypes.port, "99999"),
        (argtypes.branch, "a\nb"),
        (argtypes.host, "x\ny"),
        (argtypes.label, "\n"),
    ]:
        with pytest.raises(argparse.ArgumentTypeError) as caught:
            validator(value)
        assert "\n" not in str(caught.value)
