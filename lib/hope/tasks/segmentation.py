"""TaskConfig for supervised segmentation tasks (``spine_ct`` and any task YAML of the same shape)."""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

import torch
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

from hope.config import REPO_ROOT, TaskDefinition, load_task
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
        """The first version: the shipped phantom-pretrained weights, or a seeded untrained network without them."""
        shipped = REPO_ROOT / self.definition.network.pretrained if self.definition.network.pretrained else None
        if shipped is not None and shipped.exists():
            report = shipped.with_suffix(".json")
            dice = json.loads(report.read_text()).get("held_out_dice", {}) if report.exists() else {}
            self.registry.add(
                shipped,
                started_by="scripts/pretrain_phantoms.py",
                metrics={f"phantom_{k}_dice": v for k, v in dice.items()},
                training_data=[],
                params={},
                note="pretrained on synthetic phantoms (shipped)",
            )
            logger.info(f"{self.name}: kept the shipped phantom-pretrained model {shipped} as the first version")
            return
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
