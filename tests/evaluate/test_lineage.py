"""`mlops lineage`: from a run id, a model-hash prefix or a commit to the whole chain."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.filterwarnings("error")


def test_lineage_by_run_id_model_hash_prefix_and_commit(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    run = project.add_run("good")
    assert project.cli("evaluate")[0] == 0
    commit = run["lineage"]["git"]["commit"]

    code, out, _ = project.cli("lineage", run["run_id"])
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"run {run['run_id']} (model tiny; matched by run id)"
    text = "\n".join(lines)
    assert f"commit        {commit} on main" in text
    assert f"model hash    {run['model_hash']}" in text
    assert f"config hash   {run['lineage']['config_hash']}" in text
    assert "params        epochs=3 (seed 7)" in text
    assert f"points {run['lineage']['data_hashes']['points']}" in text
    assert "environment   devices CPU, platform linux, python 3.11, tensorflow 2.21.0" in text
    assert "metrics       accuracy=" in text and "model_size_mb=" in text
    assert "verdict       PASS (first run: relative thresholds not checked)" in text
    assert "blessing      blessed " in text and "(current blessed model)" in text

    code, result = _json(project, run["model_hash"][:10])
    assert code == 0
    (chain,) = result["runs"]
    assert chain["matched"] == "model hash" and chain["run_id"] == run["run_id"]
    assert chain["evaluation"]["passed"] is True and chain["blessed_now"] is True
    assert chain["data_hashes"] == run["lineage"]["data_hashes"]
    assert chain["requirements_hash"] is None
    assert chain["environment"]["tensorflow"] == "2.21.0"

    code, result = _json(project, commit[:7])
    assert [c["matched"] for c in result["runs"]] == ["git commit"]
    code, result = _json(project, "HEAD")  # any ref git resolves
    assert [c["run_id"] for c in result["runs"]] == [run["run_id"]]
    assert result["runs"][0]["matched"] == "git commit (HEAD)"


def test_lineage_of_several_runs_at_one_commit_and_an_unevaluated_run(make_project) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    first = project.add_run("good")
    second = project.add_run("weak", current=False)
    assert project.cli("evaluate", "--run", second["run_id"])[0] == 1
    code, result = _json(project, first["lineage"]["git"]["commit"][:8])
    assert code == 0
    assert [c["run_id"] for c in result["runs"]] == [first["run_id"], second["run_id"]]
    unevaluated, failed = result["runs"]
    assert unevaluated["evaluation"] is None and unevaluated["blessings"] == []
    assert failed["evaluation"]["passed"] is False
    assert failed["evaluation"]["failures"][0].startswith("FAIL accuracy: ")
    _, out, _ = project.cli("lineage", second["run_id"])
    assert "verdict       FAIL" in out and "blessing      not blessed" in out
    _, out, _ = project.cli("lineage", first["run_id"])
    assert "metrics       not evaluated yet" in out


@pytest.mark.parametrize("ref", ["ffffffff", "abc", "no-such-ref"])
def test_lineage_without_a_match_is_a_clear_error(make_project, ref: str) -> None:  # type: ignore[no-untyped-def]
    project = make_project()
    project.add_run("good")
    code, out, err = project.cli("lineage", ref)
    assert code == 1 and not out
    assert f"no run in {project.store.runs} matches '{ref}'" in err
    if len(ref) < 4:
        assert "at least 4 characters" in err


def _json(project, ref: str):  # type: ignore[no-untyped-def]
    code, out, err = project.cli("lineage", "--json", ref)
    assert out, err
    return code, json.loads(out)
