"""Supervised 3D segmentation training for a task defined in ``configs/tasks/<name>.yaml``."""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch
from monai.handlers import StatsHandler, ValidationHandler, from_engine
from monai.inferers import Inferer
from monai.losses import DiceCELoss
from monai.transforms import Activationsd, AsDiscreted, EnsureTyped
from monailabel.interfaces.datastore import Datastore
from monailabel.tasks.train.basic_train import BasicTrainTask, Context
from monailabel.tasks.train.utils import region_wise_metrics

from hope.config import TaskDefinition
from hope.models.evaluation import FrozenSetScorer
from hope.models.promotion import PromotionJudge
from hope.models.registry import RUN_KEY, ModelRegistry
from hope.models.validation_set import DataItem, FrozenValidationSet, label_ref
from hope.sliding_window import served_inferer
from hope.trainers.publish import LossGuard, ProgressAndPublish
from hope.transforms import train_transforms, val_transforms

logger = logging.getLogger(__name__)

TRAIN_PARAMS = ("max_epochs", "val_split", "learning_rate", "early_stop_patience", "train_batch_size", "gpus")
#: The request key :meth:`SegmentationTrainer.pre_process` puts the frozen validation set's current cases under.
FROZEN_KEY = "frozen_validation"


class SegmentationTrainer(BasicTrainTask):
    """Fine-tunes the served model on the task's final labels read back from the store, except those of its frozen
    validation set (:mod:`hope.models.validation_set`); a run's ``val_split`` is drawn from the others.

    A finished run's version serves only when it is not worse on the frozen set than the version serving
    (:mod:`hope.models.promotion`).
    Trains on CUDA when a GPU is present (with AMP when the task's profile asks for it), otherwise on the CPU; the
    profile's ``training.dataset`` says whether pre-processed cases are cached between epochs. Experiment tracking
    is off on purpose: progress goes to ``GET /train/`` and ``train_stats.json``, and MLflow's file store is not used.
    """

    def __init__(
        self, task: TaskDefinition, model_dir: Path, network: torch.nn.Module, registry: ModelRegistry
    ) -> None:
        self.task = task
        self._network = network
        self.registry = registry
        publish_path = registry.served_path
        defaults = task.training
        super().__init__(
            model_dir=str(model_dir),
            description=f"Train {task.name}: {task.description}",
            amp=defaults.amp and torch.cuda.is_available(),
            load_path=str(publish_path),
            publish_path=str(publish_path),
            stats_path=str(Path(model_dir) / task.name / "train_stats.json"),
            config={
                "max_epochs": defaults.max_epochs,
                "val_split": defaults.val_split,
                "train_batch_size": defaults.train_batch_size,
                "learning_rate": defaults.learning_rate,
                "dataset": defaults.dataset,
                "dataloader": "DataLoader",
                "multi_gpu": False,
                "tracking": ["None"],
            },
            tracking=None,
            find_unused_parameters=False,
        )

    def network(self, context: Context) -> torch.nn.Module:
        """The task's network (weights are loaded from the served model by the base class)."""
        return self._network

    def optimizer(self, context: Context) -> torch.optim.Optimizer:
        """AdamW at the request's (or the task's default) learning rate."""
        lr = float(context.request.get("learning_rate", self.task.training.learning_rate))
        return torch.optim.AdamW(context.network.parameters(), lr=lr, weight_decay=1e-5)

    def loss_function(self, context: Context) -> torch.nn.Module:
        """Dice + cross-entropy over one-hot labels."""
        return DiceCELoss(to_onehot_y=True, softmax=True)

    def lr_scheduler_handler(self, context: Context) -> None:
        """No scheduler: runs are short fine-tunes."""
        return None

    def train_handlers(self, context: Context) -> list[Any]:
        """Loss logging and periodic validation; no TensorBoard or MLflow writers (tracking is off on purpose)."""
        handlers: list[Any] = []
        if context.local_rank == 0:
            handlers.append(StatsHandler(tag_name="train_loss", output_transform=from_engine(["loss"], first=True)))
        if context.evaluator:
            handlers.append(ValidationHandler(self._val_interval, validator=context.evaluator, epoch_level=True))
        return handlers

    def val_handlers(self, context: Context) -> list[Any] | None:
        """Epoch-level metric logging on rank 0."""
        return [StatsHandler(output_transform=lambda _: None, iteration_log=False)] if context.local_rank == 0 else None

    def train_data_loader(self, context: Context, num_workers: int = 0, shuffle: bool = True) -> Any:
        """Shuffle the training cases every epoch."""
        return super().train_data_loader(context, num_workers, True)

    def train_pre_transforms(self, context: Context) -> Sequence[Callable]:
        """See :func:`hope.transforms.train_transforms`."""
        return train_transforms(self.task)

    def train_post_transforms(self, context: Context) -> Sequence[Callable]:
        """One-hot prediction and label for the Dice metrics (the base class reuses them for validation)."""
        return [
            EnsureTyped(keys="pred", device=context.device),
            Activationsd(keys="pred", softmax=True),
            AsDiscreted(keys=("pred", "label"), argmax=(True, False), to_onehot=self.task.num_classes),
        ]

    def val_pre_transforms(self, context: Context) -> Sequence[Callable]:
        """See :func:`hope.transforms.val_transforms`."""
        return val_transforms(self.task)

    def val_inferer(self, context: Context) -> Inferer:
        """The served sliding window (:func:`hope.sliding_window.served_inferer`) over whole validation volumes."""
        return served_inferer(self.task)

    def train_key_metric(self, context: Context) -> dict[str, Any]:
        """Mean Dice and Dice per label on training crops."""
        return region_wise_metrics(self.task.labels, "train_mean_dice", "train")

    def val_key_metric(self, context: Context) -> dict[str, Any]:
        """Mean Dice and Dice per label on validation volumes (never training cases)."""
        return region_wise_metrics(self.task.labels, "val_mean_dice", "val")

    def finalize(self, context: Context) -> None:
        """Replace the stock publisher: report every epoch, publish only a completed run, guard the loss."""
        if context.local_rank == 0:
            params = {k: context.request.get(k) for k in TRAIN_PARAMS if k in context.request}
            frozen = context.request[FROZEN_KEY]
            ProgressAndPublish(
                stats_path=Path(self._stats_path),
                registry=self.registry,
                best_checkpoint=Path(context.output_dir) / self._key_metric_filename,
                start_ts=context.start_ts,
                trainer=context.trainer,
                evaluator=context.evaluator,
                started_by=str(context.request.get("started_by", "unknown")),
                training_data=[label_ref(d) for d in context.datalist],
                params=params,
                run=str(context.request.get(RUN_KEY, "")),
                decide=PromotionJudge(self.registry, self.task.training.validation, frozen,
                                      self.frozen_scorer(context, frozen)),
            ).attach()
        LossGuard().attach(context.trainer)

    def frozen_scorer(self, context: Context, cases: list[DataItem]) -> FrozenSetScorer:
        """Scores weights on ``cases`` as this trainer validates, with a copy of the run's network; Dice is
        reported for each structure the cases' labels hold."""
        present = {name for case in cases for name in label_structures(case["label"], self.task.labels)}
        return FrozenSetScorer(
            network=copy.deepcopy(context.network), cases=cases, transforms=self.val_pre_transforms(context),
            inferer=self.val_inferer(context), post_transforms=self.val_post_transforms(context),
            labels={name: value for name, value in self.task.labels.items() if name in present}, device=context.device,
        )

    def pre_process(self, request: dict[str, Any], datastore: Datastore) -> list[dict[str, Any]]:
        """The final labels of the store this task trains on, less the frozen validation set's (which go to
        ``request[FROZEN_KEY]``); fail with a clear reason when none is left."""
        datalist, skipped = training_cases(datastore.datalist(), self.task)
        trained = {ref for version in self.registry.versions() for ref in version.training_data}
        split = FrozenValidationSet(self.registry.validation_dir, self.task.training.validation).partition(
            datalist, trained)
        if not split.training:
            raise ValueError(
                f"no final labels to train {self.task.name} on ({len(skipped)} lesion-only label(s) skipped, "
                f"{len(split.frozen)} in the frozen validation set): save at least one label with tag 'final' that "
                "shows the task's structures first"
            )
        logger.info(f"training {self.task.name} on {len(split.training)} labelled series ({len(split.frozen)} in "
                    f"the frozen validation set, {len(skipped)} lesion-only labels skipped)")
        request[FROZEN_KEY] = split.frozen
        return split.training


def label_structures(path: str, labels: Mapping[str, int]) -> list[str]:
    """Names of the task's structures present in the label file at ``path``."""
    values = set(np.unique(sitk.GetArrayFromImage(sitk.ReadImage(path))).tolist())  # a view would outlive its image
    return [name for name, value in labels.items() if value in values]


def training_cases(datalist: list[dict[str, Any]], task: TaskDefinition
                   ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split image/label pairs into those ``task`` trains on and those it skips (:meth:`TaskDefinition.trains_on`).

    Pairs of another modality (an item's ``modality``, when it has one) are neither: their labels are another task's.
    """
    kept, skipped = [], []
    for item in datalist:
        if item.get("modality") not in (None, *task.modalities):
            continue
        (kept if task.trains_on(label_structures(item["label"], task.labels)) else skipped).append(item)
    return kept, skipped
