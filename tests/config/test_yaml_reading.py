"""YAML is read as YAML (issue 12 §2): merge keys, duplicates, tags, keys, bytes, limits.

- a merge key with a local override works, the local key winning (generated over keys);
- a key written twice by hand is still a located duplicate;
- ``!!python/...`` and local tags on values, collections and keys, complex keys
  (``? [a, b]``), non-UTF-8 bytes (generated positions) and control characters each get
  a located error;
- a file over the size limit, or nested past the depth limit (generated depths), is
  refused at once with a size/depth error, before the parser runs.
"""

from __future__ import annotations

import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from mlops_sessions.config import yamlpos
from mlops_sessions.config.loader import load, loads
from mlops_sessions.errors import ConfigError

HEAD = "apiVersion: mlops/v1alpha1\nproject: {name: demo}\n"


@pytest.fixture(autouse=True, scope="module")
def _no_verdict_memo() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("MLOPS_NO_CACHE", "1")
        yield


def problems_of(text: str) -> list[tuple[int | None, int | None, str, str]]:
    with pytest.raises(ConfigError) as caught:
        loads(text, env={})
    return [(p.line, p.column, p.message, p.hint) for p in caught.value.problems]


# --- merge keys ---------------------------------------------------------------------------


def test_merge_key_with_a_local_override() -> None:
    text = HEAD + textwrap.dedent("""\
        models:
          a:
            deploy: &base {replicas: 2, namespace: ml}
          b:
            deploy:
              <<: *base
              replicas: 4
    """)
    config = loads(text, env={})
    assert (config.models["b"].deploy.replicas, config.models["b"].deploy.namespace) == (4, "ml")
    assert config.models["a"].deploy.replicas == 2


def test_the_first_of_several_merged_mappings_wins() -> None:
    text = HEAD + textwrap.dedent("""\
        models:
          a: {deploy: &one {replicas: 1}}
          b: {deploy: &two {replicas: 2, namespace: two}}
          c:
            deploy:
              <<: [*one, *two]
    """)
    deploy = loads(text, env={}).models["c"].deploy
    assert (deploy.replicas, deploy.namespace) == (1, "two")


@settings(max_examples=40, deadline=None, database=None)
@given(
    merged=st.dictionaries(
        st.sampled_from(["replicas", "network_policy", "protected"]),
        st.booleans(),
        min_size=1,
    ),
    local=st.dictionaries(
        st.sampled_from(["replicas", "network_policy", "protected"]), st.booleans()
    ),
)
def test_merge_keeps_yaml_semantics(merged: dict[str, bool], local: dict[str, bool]) -> None:
    """The local keys win; merged keys fill the rest; no override is a duplicate."""

    def value(key: str, flag: bool) -> object:
        return int(flag) + 1 if key == "replicas" else flag

    anchor = ", ".join(f"{k}: {str(value(k, v)).lower()}" for k, v in merged.items())
    lines = "".join(f"      {k}: {str(value(k, v)).lower()}\n" for k, v in local.items())
    text = HEAD + f"models:\n  a: {{deploy: &d {{{anchor}}}}}\n  b:\n    deploy:\n"
    text += "      <<: *d\n" + lines
    deploy = loads(text, env={}).models["b"].deploy
    expected = {k: value(k, v) for k, v in {**merged, **local}.items()}
    assert {k: getattr(deploy, k) for k in expected} == expected


def test_a_key_written_twice_is_still_a_duplicate() -> None:
    text = HEAD + "models:\n  a: {deploy: &d {replicas: 2}}\n  b:\n    deploy:\n"
    text += "      <<: *d\n      replicas: 3\n      replicas: 4\n"
    ((line, column, message, hint),) = problems_of(text)
    assert (line, column) == (9, 7)
    assert message == "duplicate key 'replicas'" and "keeps only the last" in hint


# --- tags and keys ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "at"),
    [
        ("models:\n  a:\n    image: !!python/name:os.system\n", (5, 12)),
        ("models: !!python/object:os.system {a: {}}\n", (3, 9)),
        ("models:\n  a:\n    deploy:\n      tolerations: !!python/tuple [1]\n", (6, 20)),
        ("models:\n  !!python/str a: {}\n", (4, 3)),
        ("models:\n  a: !local {}\n", (4, 6)),
    ],
    ids=["value", "mapping", "list", "key", "local-tag"],
)
def test_foreign_tags_are_located_errors(body: str, at: tuple[int, int]) -> None:
    ((line, column, message, hint),) = problems_of(HEAD + body)
    assert (line, column) == at
    assert "could not determine a constructor for the tag" in message
    assert "no tags" in hint


@pytest.mark.parametrize(
    ("body", "kind"),
    [("models:\n  ? [a, b]\n  : {}\n", "list"), ("models:\n  ? {a: 1}\n  : {}\n", "mapping")],
)
def test_complex_keys_are_located_errors(body: str, kind: str) -> None:
    ((line, column, message, hint),) = problems_of(HEAD + body)
    assert (line, column) == (4, 5)
    assert message == f"a {kind} cannot be a key"
    assert "write the key as a string" in hint


# --- bytes --------------------------------------------------------------------------------


@settings(max_examples=25, deadline=None, database=None)
@given(
    where=st.integers(min_value=0, max_value=len(HEAD) - 1),
    byte=st.sampled_from([0x80, 0xC3, 0xE9, 0xFF]),
)
def test_non_utf8_bytes_are_located(
    tmp_path_factory: pytest.TempPathFactory, where: int, byte: int
) -> None:
    data = (HEAD + "models: {a: {}}\n").encode()
    data = data[:where] + bytes([byte]) + data[where:]
    if byte == 0xC3 and data[where + 1 : where + 2] and 0x80 <= data[where + 1] <= 0xBF:
        return  # C3 followed by a continuation byte is valid UTF-8
    path = tmp_path_factory.mktemp("bytes") / "mlops.yaml"
    path.write_bytes(data)
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    (problem,) = caught.value.problems
    assert problem.message.startswith("the file is not UTF-8")
    assert problem.line == data[:where].count(b"\n") + 1
    assert problem.column == where - (data.rfind(b"\n", 0, where) + 1) + 1
    assert "UTF-8" in problem.hint


def test_control_characters_are_located() -> None:
    ((line, column, message, _),) = problems_of(HEAD + "models:\n  a: {}\nx: \x07\n")
    assert (line, column) == (5, 4)
    assert "is not allowed in a YAML file" in message


# --- limits -------------------------------------------------------------------------------


@settings(max_examples=15, deadline=None, database=None)
@given(
    depth=st.integers(min_value=yamlpos.MAX_DEPTH + 1, max_value=400_000),
    opener=st.sampled_from(["[", "{a: "]),
)
def test_deep_flow_nesting_is_refused_quickly(depth: int, opener: str) -> None:
    closer = "]" if opener == "[" else "}"
    text = HEAD + "models: " + opener * depth + closer * depth + "\n"
    if len(text.encode()) > yamlpos.MAX_BYTES:
        text = text[: yamlpos.MAX_BYTES]  # the depth scan must still answer first
    start = time.perf_counter()
    ((_line, _column, message, hint),) = problems_of(text)
    assert time.perf_counter() - start < 1.0
    assert "nested too deeply" in message or "limited to" in message
    assert "levels of nesting" in hint


def test_deep_block_nesting_is_refused() -> None:
    body = "".join("  " * i + f"k{i}:\n" for i in range(yamlpos.MAX_DEPTH + 2))
    text = HEAD + "models:\n  a:\n    train:\n      entrypoint: m:f\n      params:\n"
    text += textwrap.indent(body, " " * 8)
    ((_line, _column, message, _hint),) = problems_of(text)
    assert "nested too deeply" in message


def test_brackets_inside_quotes_and_comments_do_not_count() -> None:
    deep = "[" * (yamlpos.MAX_DEPTH + 5)
    text = HEAD + f"project: {{name: demo, description: '{deep}'}}\n# {deep}\n"
    text = text.replace("project: {name: demo}\n", "", 1)
    text += f'models:\n  a: {{description: "{deep}\\" {deep}"}}\n'
    assert loads(text, env={}).models["a"].description.startswith("[[[")


def test_a_file_over_the_size_limit_is_refused_unread(tmp_path: Path) -> None:
    path = tmp_path / "mlops.yaml"
    path.write_text(HEAD + "models: {a: {}}\n" + "# filler\n" * (yamlpos.MAX_BYTES // 9 + 10))
    start = time.perf_counter()
    with pytest.raises(ConfigError) as caught:
        load(path, env={})
    assert time.perf_counter() - start < 1.0
    (problem,) = caught.value.problems
    assert "limited to 1 MiB" in problem.message
    assert "1 MiB" in problem.hint


def test_the_limits_are_far_above_real_files() -> None:
    repo = Path(__file__).resolve().parents[2]
    text = (repo / "mlops.yaml").read_text()
    assert len(text.encode()) * 20 < yamlpos.MAX_BYTES
    yamlpos.check_limits(text)
    assert yaml.safe_load(text)
