"""TaskConfig for supervised segmentation tasks (``spine_ct`` and any task YAML of the same shape)."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random

from hope.config import TaskDefinition, load_task
from hope.infers.segmentation import SegmentationInfer
from hope.models.registry import ModelRegistry
from hope.networks import build_network
from hope.trainers.segmentation import SegmentationTrainer

logger = logging.getLogger(__name__)


class SegmentationTaskConfig(TaskConfig):
    """Wires one segmentation task: its network, its published weights, and its infer and train tasks.

    Weights are served from ``<model_dir>/<task>.pt``. When no weights exist yet (a fresh install), a seeded
    initial model is written there, so the loop runs end to end without downloading anything; the first
    training run replaces it.
    """

    definition: TaskDefinition
    publish_path: Path

    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs: Any) -> None:
        """Load ``configs/tasks/<name>.yaml`` and make sure a servable model file exists."""
        super().init(name, model_dir, conf, planner, **kwargs)
        self.definition = load_task(name)
        self.labels = self.definition.labels
        self.network = build_network(self.definition)
        self.registry = ModelRegistry(name, Path(model_dir))
        self.publish_path = self.registry.served_path
        self.path = [str(self.publish_path)]
        if not self.registry.versions():
            self._keep_initial_model()
        self.registry.apply()

    def _keep_initial_model(self) -> None:
        torch.manual_seed(0)
        initial = build_network(self.definition)
        with tempfile.TemporaryDirectory() as tmp:
            weights = Path(tmp) / "model.pt"
            torch.save({"model": initial.state_dict()}, weights)
            self.registry.add(
                weights,
                started_by="hope",
                metrics={},
                training_data=[],
                params={},
                note="seeded initial model, untrained",
            )
        logger.info(f"{self.name}: no trained model yet; kept a seeded initial model as the first version")

    def infer(self) -> InferTask:
        """The automatic segmentation infer task."""
        return SegmentationInfer(self.definition, self.path, self.network)

    def trainer(self) -> TrainTask:
        """The fine-tuning trainer, publishing to the served path."""
        return SegmentationTrainer(self.definition, Path(self.model_dir), self.network, self.registry)

    def strategy(self) -> dict[str, Strategy]:
        """Baseline active-learning strategies."""
        return {"random": Random(), "first": First()}
