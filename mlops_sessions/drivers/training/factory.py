"""The one place that picks a model's :class:`Trainer` from its config.

``train.effective_backend`` says where a run happens (``local``, ``container`` or
``kubernetes``), and on Kubernetes ``train.operator`` says what runs it: a plain Job or
Kubeflow's TFJob.
"""

from __future__ import annotations

from mlops_sessions.config import Config, ModelConfig
from mlops_sessions.drivers.training.base import Trainer
from mlops_sessions.drivers.training.container import ContainerTrainer
from mlops_sessions.drivers.training.kube import JobTrainer, TFJobTrainer
from mlops_sessions.drivers.training.local import LocalTrainer
from mlops_sessions.records.store import Store


def trainer_for(config: Config, store: Store, model: ModelConfig) -> Trainer:
    """The trainer of model (which has a ``train`` section)."""
    train = model.train
    assert train is not None, f"model '{model.name}' has no train section"
    if train.effective_backend == "kubernetes":
        cluster = TFJobTrainer if train.operator == "tfjob" else JobTrainer
        return cluster(config, store, model)
    if train.effective_backend == "container":
        return ContainerTrainer(config, store, model)
    return LocalTrainer(config, store, model)
