"""TaskConfig for supervised segmentation tasks (``spine_ct`` and any task YAML of the same shape)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

from hope.config import REPO_ROOT, TaskDefinition
from hope.infers.segmentation import SegmentationInfer
from hope.models.initial import ensure_first_version
from hope.models.registry import ModelRegistry, ProfileStamp
from hope.networks import build_network
from hope.trainers.segmentation import SegmentationTrainer


class SegmentationTaskConfig(TaskConfig):
    """Wires one segmentation task: its network, its published weights, and its infer and train tasks.

    Weights are served from ``<model_dir>/<task>.pt``. When no weights exist yet (a fresh install), the shipped
    phantom-pretrained weights, or a seeded initial model, become the first version, so the loop runs end to end
    without downloading anything; the first training run replaces it. Versions are stamped with the task's network
    profile in effect, and only versions of a profile with the same network and spacing serve.
    """

    definition: TaskDefinition
    registry: ModelRegistry

    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, *,
             definition: TaskDefinition, **kwargs: Any) -> None:
        """Wire the task ``definition`` (parsed once by the composition root) and make sure a version serves."""
        super().init(name, model_dir, conf, planner, **kwargs)
        self.definition = definition
        self.labels = definition.labels
        self.network = build_network(definition)
        profile = definition.active_profile
        self.registry = ModelRegistry(name, Path(model_dir), ProfileStamp(profile.name, profile.signature))
        self.path = [str(self.registry.served_path)]
        pretrained = definition.network.pretrained
        ensure_first_version(
            self.registry,
            shipped=REPO_ROOT / pretrained if pretrained else None,
            shipped_by="scripts/pretrain_synthesis.py",
            shipped_note=lambda report: "pretrained by synthesis (shipped): "
                                        + report.get("training_data", "no report beside the weights"),
            shipped_metrics=lambda report: {f"phantom_{k}_dice": v for k, v in report.get("held_out_dice", {}).items()},
            write_untrained=lambda path: torch.save({"model": build_network(definition).state_dict()}, path),
        )

    def infer(self) -> InferTask:
        """The automatic segmentation infer task."""
        return SegmentationInfer(self.definition, self.path, self.network)

    def trainer(self) -> TrainTask:
        """The fine-tuning trainer, publishing to the served path."""
        return SegmentationTrainer(self.definition, Path(self.model_dir), self.network, self.registry)
