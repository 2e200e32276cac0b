"""``data.<name>.uri`` + ``sha256``: the third form of a data input, validated with the fix.

Each problem is located (file:line of the value) and names what to change; the schema's
patterns are kept equal to :mod:`mlops_sessions.config.s3uri`, and a property test checks
that every URI the rules accept is one S3 could name and every mutation that breaks an S3
rule is refused with a reason.
"""

from __future__ import annotations

import json
import string
import textwrap
from collections.abc import Callable, Iterator

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_sessions.config import s3uri
from mlops_sessions.config.loader import loads, schema
from mlops_sessions.errors import ConfigError, Problem

SHA = "ab" * 32
HEAD = "apiVersion: mlops/v1alpha1\nproject: {name: demo}\n"


@pytest.fixture(autouse=True, scope="module")
def _no_verdict_memo() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_NO_CACHE", "1")
        yield


def doc(entry: str) -> str:
    return HEAD + textwrap.dedent(f"""\
        data:
          blob: {entry}
        models:
          a:
            train: {{entrypoint: "m:train", inputs: [blob]}}
        """)


def problems(entry: str) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        loads(doc(entry), env={})
    return caught.value.problems


def one_problem(entry: str) -> Problem:
    found = problems(entry)
    assert len(found) == 1, [p.render() for p in found]
    return found[0]


def test_the_schema_patterns_are_the_rules_module_patterns() -> None:
    props = schema()["$defs"]["dataInput"]["properties"]
    assert props["uri"]["pattern"] == s3uri.OBJECT_URI_PATTERN
    assert props["sha256"]["pattern"] == s3uri.SHA256_PATTERN


@pytest.mark.parametrize(
    "uri",
    [
        "s3://data/digits.csv.gz",
        "s3://my-team.datasets/2026/01/points.csv",
        "s3://abc/a",
        "s3://" + "b" * 63 + "/k",
        "s3://bucket/deep/key with spaces/ünï.csv",
    ],
)
def test_good_uris_load_into_the_data_input(uri: str) -> None:
    config = loads(doc(f'{{uri: "{uri}", sha256: {SHA}, description: points}}'), env={})
    entry = config.data["blob"]
    assert (entry.uri, entry.sha256, entry.path, entry.package) == (uri, SHA, None, None)
    assert entry.description == "points"


@pytest.mark.parametrize(
    ("uri", "message", "hint"),
    [
        (
            "S3://data/x.csv",
            "starts with 'S3://'",
            "write s3:// (lower case), e.g. s3://data/x.csv",
        ),
        ("s3a://data/x.csv", "starts with 's3a://'", "write s3://"),
        ("https://data.example.com/x.csv", "is an HTTP URL", "store.endpoint"),
        ("data/x.csv", "is not a URI", "data.<name>.path instead"),
        ("gs://data/x.csv", "scheme 'gs'", "s3://bucket/path/to/file"),
        ("s3://data", "names a bucket but no object", "s3://bucket/path/to/file"),
        ("s3://data/", "names a bucket but no object", "one object"),
        ("s3:///x.csv", "names no bucket", "s3://bucket/path"),
        ("s3://data/folder/", "that is a folder, not one object", "pack a folder"),
        ("s3://Data/x.csv", "bucket 'Data' has upper-case letters", "lower case: 'data'"),
        ("s3://my_data/x.csv", "bucket 'my_data' holds '_'", "e.g. 'my-data'"),
        ("s3://ab/x.csv", "bucket 'ab' has 2 characters", "3 to 63 characters"),
        ("s3://" + "b" * 64 + "/x", "has 64 characters", "3 to 63"),
        ("s3://-data/x.csv", "does not start and end with a letter or digit", "leading"),
        ("s3://my..data/x.csv", "has two dots in a row", "no '..'"),
        ("s3://192.168.5.4/x.csv", "is an IP address", "store.endpoint"),
        ("s3://xn--data/x.csv", "starts with 'xn--', which S3 reserves", "real name"),
        ("s3://data-s3alias/x.csv", "ends with '-s3alias', which S3 reserves", "real name"),
        ("s3://data/a/..", "ends in '..', not a file name", "one object"),
    ],
)
def test_bad_uris_are_refused_with_the_reason_and_the_fix(
    uri: str, message: str, hint: str
) -> None:
    problem = one_problem(f'{{uri: "{uri}", sha256: {SHA}}}')
    assert problem.path == "data.blob.uri"
    assert problem.line == 4  # the entry's line in the document
    assert message in problem.message, problem.message
    assert hint in problem.hint, problem.hint


def test_a_key_with_a_control_character_is_refused() -> None:
    # A YAML escape puts a tab in the key: the schema pattern refuses it.
    problem = one_problem(f'{{uri: "s3://data/x\\t.csv", sha256: {SHA}}}')
    assert problem.path == "data.blob.uri"
    assert "control characters" in problem.message


@pytest.mark.parametrize(
    ("sha", "message", "hint"),
    [
        ("AB" * 32, "upper-case hex digits", f"lower case: {SHA}"),
        (f"sha256:{SHA}", "has a 'sha256:' prefix", f"the digits alone: {SHA}"),
        ("ab" * 31, "is not a sha256 (62 characters)", "sha256sum"),
        ("zz" * 32, "is not a sha256 (64 characters)", "64 hex digits"),
    ],
)
def test_bad_sha256_is_refused_with_the_fix(sha: str, message: str, hint: str) -> None:
    problem = one_problem(f'{{uri: "s3://data/x.csv", sha256: "{sha}"}}')
    assert problem.path == "data.blob.sha256"
    assert message in problem.message and hint in problem.hint


def test_uri_without_sha256_names_the_missing_key() -> None:
    problem = one_problem('{uri: "s3://data/x.csv"}')
    assert problem.path == "data.blob"
    assert "incomplete: give one of 'path', 'package' + 'resource' or 'uri' + 'sha256'" in (
        problem.message
    )
    assert problem.hint.startswith("add 'sha256': sha256 of the uri's object")


@pytest.mark.parametrize(
    ("entry", "found"),
    [
        (f'{{uri: "s3://data/x.csv", sha256: {SHA}, path: x.csv}}', "path, sha256, uri"),
        (
            f'{{uri: "s3://data/x.csv", sha256: {SHA}, package: sklearn, resource: x.csv}}',
            "package, resource, sha256, uri",
        ),
        (f"{{path: x.csv, sha256: {SHA}}}", "path, sha256"),
    ],
)
def test_forms_cannot_be_mixed(entry: str, found: str) -> None:
    problem = one_problem(entry)
    assert problem.path == "data.blob"
    assert "give one of 'path', 'package' + 'resource' or 'uri' + 'sha256', not" in (
        problem.message
    )
    assert f"(found: {found})" in problem.message


def test_a_misspelt_key_gets_a_did_you_mean() -> None:
    found = problems(f'{{url: "s3://data/x.csv", sha256: {SHA}}}')
    unknown = [p for p in found if p.path == "data.blob.url"]
    assert unknown and unknown[0].hint == "did you mean 'uri'?"


# --- the rules as a property ----------------------------------------------------------------

_LABEL = st.text(string.ascii_lowercase + string.digits, min_size=1, max_size=12)
_BUCKETS = st.builds(
    lambda first, rest, sep: sep.join([first, *rest]),
    _LABEL,
    st.lists(_LABEL, max_size=3),
    st.sampled_from([".", "-"]),
).filter(lambda b: 3 <= len(b) <= 63 and not b.startswith(("xn--", "sthree-")))
_KEYS = st.lists(
    st.text(string.ascii_letters + string.digits + "-_.() ", min_size=1, max_size=20).filter(
        lambda s: s not in (".", "..")
    ),
    min_size=1,
    max_size=4,
).map("/".join)


@settings(max_examples=300, deadline=None)
@given(bucket=_BUCKETS, key=_KEYS)
def test_every_well_formed_uri_is_accepted_and_splits_back(bucket: str, key: str) -> None:
    uri = f"s3://{bucket}/{key}"
    if s3uri.bucket_problem(bucket) is not None:
        return  # e.g. an all-digit dotted quad: covered below
    assert s3uri.object_uri_problem(uri) is None
    assert s3uri.split(uri) == (bucket, key)


_BREAKS: list[Callable[[str, str], str]] = [
    lambda b, k: f"S3://{b}/{k}",
    lambda b, k: f"s3://{b.upper()}X/{k}",
    lambda b, k: f"s3://{b}_x/{k}",
    lambda b, k: f"s3://{b}..x/{k}",
    lambda b, k: f"s3://-{b}/{k}",
    lambda b, k: f"s3://{b}-/{k}",
    lambda b, k: f"s3://{b}",
    lambda b, k: f"s3://{b}/",
    lambda b, k: f"s3://{b}/{k}/",
    lambda b, k: f"s3://{b}/{k}\n",
    lambda b, k: f"s3://{b}/{k}\x00x",
    lambda b, k: f"s3://{'a' * 64}/{k}",
    lambda b, k: f"s3://{b}/{'k' * 1025}",
    lambda b, k: f"https://{b}/{k}",
    lambda b, k: f"{b}/{k}",
]


@settings(max_examples=300, deadline=None)
@given(bucket=_BUCKETS, key=_KEYS, breaking=st.sampled_from(_BREAKS))
def test_every_malformed_uri_is_refused_with_a_reason(
    bucket: str, key: str, breaking: Callable[[str, str], str]
) -> None:
    uri = breaking(bucket, key)
    found = s3uri.object_uri_problem(uri)
    assert found is not None, uri
    message, hint = found
    assert message and hint


@settings(max_examples=60, deadline=None)
@given(bucket=_BUCKETS, key=_KEYS, breaking=st.sampled_from(_BREAKS))
def test_the_loader_refuses_every_malformed_uri_at_its_line(
    bucket: str, key: str, breaking: Callable[[str, str], str]
) -> None:
    uri = breaking(bucket, key)
    with pytest.raises(ConfigError) as caught:
        # JSON string syntax is YAML's double-quoted string syntax: any character survives.
        loads(doc(f"{{uri: {json.dumps(uri)}, sha256: {SHA}}}"), env={})
    (problem,) = caught.value.problems
    assert problem.path == "data.blob.uri" and problem.line == 4
    assert problem.hint, problem
