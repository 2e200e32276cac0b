"""The Trainer factory: one trainer per backend, picked from the model's train section.

The trainers themselves run for real elsewhere (test_train_step: local, images/
test_train_container: container, test_cluster_train / test_cluster_tfjob: Job and TFJob);
here: the pick, that it agrees with the plan's backend, and what each describes for
``--dry-run`` without building, creating or contacting anything.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from mlops_sessions.config import Config
from mlops_sessions.config.loader import load
from mlops_sessions.drivers.training.base import Trainer
from mlops_sessions.drivers.training.container import ContainerTrainer
from mlops_sessions.drivers.training.factory import trainer_for
from mlops_sessions.drivers.training.kube import JobTrainer, TFJobTrainer
from mlops_sessions.drivers.training.local import LocalTrainer
from mlops_sessions.planning.training import plan_training
from mlops_sessions.records.store import Store

CONFIG = """\
apiVersion: mlops/v1alpha1
project: {name: p}
data:
  points: {path: data/points.csv}
images:
  trainer:
    kind: train
    repository: p-train
    base: {image: "python:3.11-slim"}
    tag: {policy: date}
models:
  m:
    train:
      source: src
      entrypoint: m:train
      inputs: [points]
      image: trainer
"""


@pytest.fixture
def config(tmp_path: Path) -> Config:
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "m.py").write_text("def train(ctx):\n    return None\n")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "points.csv").write_text("1,2\n")
    (tmp_path / "mlops.yaml").write_text(CONFIG)
    return load(str(tmp_path / "mlops.yaml"))


def with_train(config: Config, **changes: object) -> Config:
    model = config.models["m"]
    assert model.train is not None
    train = dataclasses.replace(model.train, **changes)  # type: ignore[arg-type]
    models = {**config.models, "m": dataclasses.replace(model, train=train)}
    return dataclasses.replace(config, models=models)


@pytest.mark.parametrize(
    ("changes", "expected", "fetches_here"),
    [
        ({}, LocalTrainer, True),
        ({"container": True}, ContainerTrainer, True),
        ({"backend": "container"}, ContainerTrainer, True),
        ({"backend": "kubernetes"}, JobTrainer, False),
        ({"backend": "kubernetes", "operator": "tfjob"}, TFJobTrainer, False),
    ],
)
def test_the_factory_picks_the_backend_the_plan_names(
    config: Config,
    changes: dict[str, object],
    expected: type[Trainer],
    fetches_here: bool,
) -> None:
    changed = with_train(config, **changes)
    model = changed.models["m"]
    trainer = trainer_for(changed, Store(changed.store_path), model)
    assert type(trainer) is expected
    # The trainer and the plan agree on where the run happens (run.json's backend).
    assert trainer.backend == plan_training(changed, model).backend
    # A cluster pod fetches its s3:// inputs itself: --offline does not stop it.
    assert trainer.fetches_inputs_here is fetches_here


def test_local_run_describes_nothing_more(config: Config) -> None:
    model = config.models["m"]
    trainer = trainer_for(config, Store(config.store_path), model)
    assert trainer.describe(plan_training(config, model)) == {}


@pytest.mark.parametrize(("operator", "kind"), [("job", "Job"), ("tfjob", "TFJob")])
def test_a_cluster_run_describes_its_kind_without_a_pushed_image(
    config: Config, operator: str, kind: str
) -> None:
    changed = with_train(config, backend="kubernetes", operator=operator, workers=2)
    model = changed.models["m"]
    described = trainer_for(changed, Store(changed.store_path), model).describe(
        plan_training(changed, model)
    )
    job = described["kubernetes_job"]
    assert (job["kind"], job["workers"]) == (kind, 2)
    assert job["image"].startswith("(not pushed yet")  # nothing was built or pushed
    assert not changed.store_path.exists()  # a dry run writes nothing
