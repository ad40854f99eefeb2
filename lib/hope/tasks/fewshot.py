"""TaskConfigs of the few-shot tasks: ``fewshot_tumor`` (segmentation) and ``tumor_grade`` (grading).

Each keeps its model versions in a :class:`~hope.models.registry.ModelRegistry` like the supervised tasks. The
first version is the shipped phantom-pretrained checkpoint (``scripts/pretrain_fewshot.py``) or, without it, an
untrained network; neither is downloaded. The collaborators an infer task needs from the running app (the support
library, the case vocabulary, the store's final labels) are passed to :meth:`init` as keyword arguments.
"""

from __future__ import annotations

import json
import logging
import tempfile
from abc import abstractmethod
from pathlib import Path
from typing import Any

import torch
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

from hope.config import REPO_ROOT
from hope.fewshot.checkpoint import build_embedder, build_segmenter, load_grader, load_segmenter, save_checkpoint
from hope.fewshot.config import FewShotDefinition, load_fewshot_task
from hope.infers.fewshot_common import ServedModel
from hope.infers.fewshot_tumor import FewShotTumorInfer
from hope.infers.tumor_grade import TumorGradeInfer
from hope.models.registry import ModelRegistry
from hope.trainers.fewshot import FewShotTrainer

logger = logging.getLogger(__name__)


class FewShotTaskConfig(TaskConfig):
    """What both few-shot tasks share: the definition, the registry and the first model version."""

    definition: FewShotDefinition
    registry: ModelRegistry

    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, **kwargs: Any) -> None:
        """Load ``configs/tasks/<name>.yaml`` and make sure a servable model version exists."""
        super().init(name, model_dir, conf, planner, **kwargs)
        self.definition = load_fewshot_task(name)
        self.registry = ModelRegistry(name, Path(model_dir))
        self.path = [str(self.registry.served_path)]
        if not self.registry.versions():
            self._keep_initial_model()
        self.registry.apply()

    @abstractmethod
    def _untrained(self) -> torch.nn.Module:
        """A freshly initialised network of this task (the first version when no weights are shipped)."""

    def _keep_initial_model(self) -> None:
        shipped = REPO_ROOT / self.definition.pretrained if self.definition.pretrained else None
        if shipped is not None and shipped.exists():
            report = shipped.with_suffix(".json")
            found = json.loads(report.read_text()) if report.exists() else {}
            metrics = {k: v for k, v in found.items() if k.startswith("heldout_") and isinstance(v, int | float)}
            self.registry.add(shipped, started_by="scripts/pretrain_fewshot.py", metrics=metrics, training_data=[],
                              params={}, note="meta-trained on synthetic phantom tumour types (shipped)")
            logger.info(f"{self.name}: kept the shipped phantom-pretrained model {shipped} as the first version")
            return
        torch.manual_seed(0)
        with tempfile.TemporaryDirectory() as tmp:
            weights = save_checkpoint(Path(tmp) / "model.pt", self.definition, self._untrained(), {"untrained": True})
            self.registry.add(weights, started_by="hope", metrics={}, training_data=[], params={},
                              note="seeded initial model, untrained")
        logger.warning(f"{self.name}: no shipped weights at {shipped}; serving an untrained network "
                       "(run scripts/pretrain_fewshot.py)")

    def trainer(self) -> TrainTask | None:
        """No trainer by default: a few-shot task learns a new type from its support set at inference time."""
        return None


class FewShotTumorTaskConfig(FewShotTaskConfig):
    """``fewshot_tumor``: needs ``library``, ``vocabulary``, ``list_images`` and ``load_image`` keyword arguments
    at :meth:`init`."""

    def _untrained(self) -> torch.nn.Module:
        return build_segmenter(self.definition)

    def infer(self) -> InferTask:
        """The few-shot segmentation infer task."""
        model = ServedModel(self.registry.served_path, lambda p: load_segmenter(p, self.definition))
        return FewShotTumorInfer(self.definition, model, self.kwargs["library"], self.kwargs["vocabulary"])

    def trainer(self) -> TrainTask | None:
        """The admin-started refresh of the encoder on the store, when the task YAML has a ``training`` section."""
        if self.definition.training is None:
            return None
        return FewShotTrainer(self.definition, self.registry, self.kwargs["library"], self.kwargs["list_images"],
                              self.kwargs["load_image"])


class TumorGradeTaskConfig(FewShotTaskConfig):
    """``tumor_grade``: needs ``library``, ``final_label`` and ``segment`` keyword arguments at :meth:`init`."""

    def _untrained(self) -> torch.nn.Module:
        return build_embedder(self.definition)

    def infer(self) -> InferTask:
        """The lesion grading infer task."""
        model = ServedModel(self.registry.served_path, lambda p: load_grader(p, self.definition))
        return TumorGradeInfer(self.definition, model, self.kwargs["library"], self.kwargs["final_label"],
                               self.kwargs["segment"])


TASK_CONFIGS: dict[str, type[FewShotTaskConfig]] = {
    "fewshot_segmentation": FewShotTumorTaskConfig,
    "lesion_grading": TumorGradeTaskConfig,
}
