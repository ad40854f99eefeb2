"""TaskConfigs of the few-shot tasks: ``fewshot_tumor`` (segmentation) and ``tumor_grade`` (grading).

Each keeps its model versions in a :class:`~hope.models.registry.ModelRegistry` like the supervised tasks. The
first version is the shipped phantom-pretrained checkpoint (``scripts/pretrain_fewshot.py``) or, without it, an
untrained network; neither is downloaded. What an infer task needs from the running server (the support library,
the case vocabulary, the store's images and final labels) comes as one typed :class:`FewShotWiring`, built by the
composition root (:mod:`hope.server.collaborators`).
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import SimpleITK as sitk
import torch
from monailabel.interfaces.config import TaskConfig
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

from hope.cases.vocabulary import CaseVocabulary
from hope.config import REPO_ROOT
from hope.fewshot.checkpoint import build_embedder, build_segmenter, load_grader, load_segmenter, save_checkpoint
from hope.fewshot.config import FewShotDefinition
from hope.fewshot.support_library import SupportLibrary
from hope.infers.fewshot_common import ReloadingModel
from hope.infers.fewshot_tumor import FewShotTumorInfer
from hope.infers.tumor_grade import TumorGradeInfer
from hope.models.initial import ensure_first_version
from hope.models.registry import ModelRegistry
from hope.trainers.fewshot import FewShotTrainer


@dataclass(frozen=True)
class FewShotWiring:
    """What a few-shot task needs from the running server.

    Args:
        library: support sets from the case records and the store's final labels.
        vocabulary: the tumour types and verdicts (``configs/cases.yaml``).
        list_images: the store's image series of the task's modalities.
        load_image: a series as a SimpleITK image.
        final_label: the local file of a series' final label, or ``None`` when it has none.
        segment: the infer task that finds a lesion when a request gives none (``inference.segment_with``).
        modality_of: a series' modality (``None`` when the store has no such series).
    """

    library: SupportLibrary
    vocabulary: CaseVocabulary
    list_images: Callable[[], list[str]]
    load_image: Callable[[str], sitk.Image]
    final_label: Callable[[str], str | None]
    segment: InferTask | None = None
    modality_of: Callable[[str], str | None] | None = None


class FewShotTaskConfig(TaskConfig):
    """What both few-shot tasks share: the definition, the wiring, the registry and the first model version."""

    definition: FewShotDefinition
    wiring: FewShotWiring
    registry: ModelRegistry

    def init(self, name: str, model_dir: str, conf: dict[str, str], planner: Any, *,
             definition: FewShotDefinition, wiring: FewShotWiring, **kwargs: Any) -> None:
        """Wire the task ``definition`` (parsed once by the composition root) and make sure a version serves."""
        super().init(name, model_dir, conf, planner, **kwargs)
        self.definition = definition
        self.wiring = wiring
        self.registry = ModelRegistry(name, Path(model_dir))
        self.path = [str(self.registry.served_path)]

        def write_untrained(path: Path) -> None:
            save_checkpoint(path, definition, self._untrained(), {"untrained": True})

        ensure_first_version(
            self.registry,
            shipped=REPO_ROOT / definition.pretrained if definition.pretrained else None,
            shipped_by="scripts/pretrain_fewshot.py",
            shipped_note=lambda report: "meta-trained on synthetic phantom tumour types"
                                        + (" and contrast-randomised phantom spine anatomy"
                                           if report.get("anatomy_episodes", {}).get("share") else "")
                                        + " (shipped)",
            shipped_metrics=lambda report: {k: v for k, v in report.items()
                                            if k.startswith("heldout_") and isinstance(v, int | float)},
            write_untrained=write_untrained,
        )

    @abstractmethod
    def _untrained(self) -> torch.nn.Module:
        """A freshly initialised network of this task (the first version when no weights are shipped)."""

    def trainer(self) -> TrainTask | None:
        """No trainer by default: a few-shot task learns a new type from its support set at inference time."""
        return None


class FewShotTumorTaskConfig(FewShotTaskConfig):
    """``fewshot_tumor``: segments a lesion against the labelled cases of a type."""

    def _untrained(self) -> torch.nn.Module:
        return build_segmenter(self.definition)

    def infer(self) -> InferTask:
        """The few-shot segmentation infer task."""
        model = ReloadingModel(self.registry.served_path, lambda p: load_segmenter(p, self.definition))
        return FewShotTumorInfer(self.definition, model, self.wiring.library, self.wiring.vocabulary,
                                 self.wiring.modality_of)

    def trainer(self) -> TrainTask | None:
        """The admin-started refresh of the encoder on the store, when the task YAML has a ``training`` section."""
        if self.definition.training is None:
            return None
        return FewShotTrainer(self.definition, self.registry, self.wiring.library, self.wiring.list_images,
                              self.wiring.load_image)


class TumorGradeTaskConfig(FewShotTaskConfig):
    """``tumor_grade``: grades a lesion; its wiring must name the task that segments one when none is given."""

    def _untrained(self) -> torch.nn.Module:
        return build_embedder(self.definition)

    def infer(self) -> InferTask:
        """The lesion grading infer task."""
        if self.wiring.segment is None:
            raise ValueError(f"{self.name}: the wiring has no segmentation task (inference.segment_with)")
        model = ReloadingModel(self.registry.served_path, lambda p: load_grader(p, self.definition))
        return TumorGradeInfer(self.definition, model, self.wiring.library, self.wiring.final_label,
                               self.wiring.segment)


TASK_CONFIGS: dict[str, type[FewShotTaskConfig]] = {
    "fewshot_segmentation": FewShotTumorTaskConfig,
    "lesion_grading": TumorGradeTaskConfig,
}
