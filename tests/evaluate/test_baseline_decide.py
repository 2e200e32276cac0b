"""planning.baseline decides on facts alone: no store, no git, the same errors by name."""

from __future__ import annotations

import pytest

from mlops_sessions.errors import StepError
from mlops_sessions.planning.baseline import (
    BaselineEvaluation,
    BaselineFacts,
    decide_baseline,
)

EVAL = BaselineEvaluation("e1", {"accuracy": 0.9}, "d" * 64)
RUN = {"run_id": "r1", "model": "tiny", "model_hash": "h", "lineage": {"git": {"commit": "c"}}}


def test_no_blessing_yet_is_no_baseline_not_an_error() -> None:
    baseline = decide_baseline(BaselineFacts("blessed", "tiny"))
    assert not baseline.available
    assert baseline.label == "no blessed model of 'tiny' yet"


def test_blessed_takes_the_values_of_its_evaluation() -> None:
    blessing = {"run_id": "r1", "eval_id": "e1", "model_hash": "h", "git_commit": "c"}
    baseline = decide_baseline(BaselineFacts("blessed", "tiny", blessing=blessing, evaluation=EVAL))
    assert (baseline.run_id, baseline.eval_id, baseline.metrics) == ("r1", "e1", {"accuracy": 0.9})
    assert baseline.label == "blessed run r1"
    assert baseline.dataset_sha256 == "d" * 64


def test_a_blessing_whose_evaluation_is_gone_names_where_it_looked() -> None:
    facts = BaselineFacts(
        "blessed", "tiny", blessing={"run_id": "r1", "eval_id": "e1"}, evaluations_at="/s/eval"
    )
    with pytest.raises(StepError, match="missing from /s/eval"):
        decide_baseline(facts)


@pytest.mark.parametrize(
    ("facts", "message"),
    [
        (BaselineFacts("run:r9", "tiny", runs_at="/s/runs"), "not in the store \\(/s/runs\\)"),
        (BaselineFacts("run:r1", "other", run=RUN), "trained model 'tiny', not 'other'"),
        (BaselineFacts("run:r1", "tiny", run=RUN), "has never been evaluated"),
        (BaselineFacts("git:nope", "tiny", repository="/repo"), "cannot resolve 'nope' in /repo"),
        (BaselineFacts("latest", "tiny"), "is not understood"),
    ],
)
def test_impossible_specs_are_one_line_errors(facts: BaselineFacts, message: str) -> None:
    with pytest.raises(StepError, match=message):
        decide_baseline(facts)


def test_run_and_git_specs() -> None:
    baseline = decide_baseline(BaselineFacts("run:r1", "tiny", run=RUN, evaluation=EVAL))
    assert (baseline.label, baseline.git_commit, baseline.model_hash) == ("run r1", "c", "h")
    none_there = decide_baseline(BaselineFacts("git:main", "tiny", commit="0123456789abcdef"))
    assert not none_there.available
    assert none_there.git_commit == "0123456789abcdef"
    assert "at git main (0123456789ab)" in none_there.label
