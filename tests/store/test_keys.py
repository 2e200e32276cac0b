"""The key table: local paths and remote keys are spelled by one module and agree."""

from __future__ import annotations

from pathlib import Path

from mlops_sessions.records import blessings, evaluations, keys, runs


def test_local_path_of_a_key_is_under_the_root(tmp_path: Path) -> None:
    assert keys.local(tmp_path, keys.run_file("r1")) == tmp_path / "runs" / "r1" / "run.json"
    assert keys.local(tmp_path, keys.evaluation_file("r1", "e1", keys.VERDICT)) == (
        tmp_path / "runs" / "r1" / "eval" / "e1" / "verdict.json"
    )


def test_record_modules_take_their_paths_from_the_table(tmp_path: Path) -> None:
    assert runs.run_file(tmp_path, "r1") == keys.local(tmp_path, keys.run_file("r1"))
    assert runs.cache_entry(tmp_path, "train", "k") == keys.local(
        tmp_path, keys.cache_entry("train", "k")
    )
    assert blessings.blessed_file(tmp_path, "m") == keys.local(tmp_path, keys.blessed("m"))
    assert blessings.log_file(tmp_path, "m") == keys.local(tmp_path, keys.blessings_log("m"))
    assert evaluations.eval_dir(tmp_path, "r1") == keys.local(tmp_path, keys.evaluations("r1"))


def test_key_shapes_are_recognised() -> None:
    assert keys.is_run_file(keys.run_file("r1"))
    assert not keys.is_run_file(keys.model_manifest("r1"))
    assert keys.is_verdict(keys.evaluation_file("r1", "e1", keys.VERDICT))
    assert not keys.is_verdict(keys.evaluation_file("r1", "e1", keys.METRICS))
    # the verdict is published last: an evaluation is complete once it exists
    assert keys.EVAL_PUBLISH_ORDER[-1] == keys.VERDICT


def test_target_names_are_file_name_safe() -> None:
    assert keys.target_name("kind-ci", "ns") == "kind-ci--ns"
    assert keys.target_name("arn:aws:eks/x", "ns") == "arn_aws_eks_x--ns"
    assert keys.deployment_revision(keys.deployment_target("m", "c", "n"), 7) == (
        "deployments/m/c--n/revisions/r000007.json"
    )


def test_cluster_record_names() -> None:
    assert keys.history_configmap("app") == "app-mlops-history"
    assert keys.deploy_lease("app") == "app-mlops-deploy"
    assert keys.rollout_configmap("m") == "m-mlops-rollout"
