"""Dice of a model version's weights on the frozen validation set, measured as the trainer validates: the same
pre-processing, sliding-window inference, post-processing and Dice metrics, on whole volumes."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from monai.data import DataLoader, Dataset
from monai.engines import SupervisedEvaluator
from monai.inferers import Inferer
from monai.transforms import Compose
from monailabel.tasks.train.utils import region_wise_metrics

from hope.models.promotion import FrozenScore
from hope.models.validation_set import DataItem

_MEAN = "frozen_mean_dice"


class FrozenSetScorer:
    """Scores weights files on a fixed list of image/label cases, with its own network (the trainer's stays as is).

    Args:
        network: a network of the weights' architecture; its weights are replaced by each scored file's.
        cases: image/label datalist items (the frozen set's current members).
        transforms: the trainer's validation pre-transforms.
        inferer: the trainer's validation inferer (sliding window over whole volumes).
        post_transforms: the trainer's validation post-transforms (one-hot prediction and label).
        labels: the structures to report Dice of (names and label values); the mean Dice counts every structure
            of the labels.
        device: where the network runs.
    """

    def __init__(self, *, network: torch.nn.Module, cases: Sequence[DataItem], transforms: Sequence[Callable],
                 inferer: Inferer, post_transforms: Sequence[Callable], labels: dict[str, int],
                 device: torch.device) -> None:
        self.network = network
        self.cases = [dict(case) for case in cases]
        self.transforms = Compose(transforms)
        self.inferer = inferer
        self.post_transforms = Compose(post_transforms)
        self.labels = labels
        self.device = device

    def __call__(self, weights: Path) -> FrozenScore:
        """Mean Dice and Dice per label of the weights in ``weights``: a ``{"model": state_dict}`` checkpoint (first
        versions) or the bare state dict a training run's checkpoint saver writes, as MONAI Label's infer task loads
        either."""
        checkpoint = torch.load(weights, map_location=self.device, weights_only=True)
        self.network.load_state_dict(checkpoint.get("model", checkpoint))
        evaluator = SupervisedEvaluator(
            device=self.device,
            val_data_loader=DataLoader(Dataset(self.cases, self.transforms), batch_size=1),
            network=self.network,
            inferer=self.inferer,
            postprocessing=self.post_transforms,
            key_val_metric=region_wise_metrics(self.labels, _MEAN, "frozen"),
        )
        evaluator.run()
        metrics = evaluator.state.metrics
        return FrozenScore(mean_dice=float(metrics[_MEAN]),
                           dice={name: float(metrics[f"frozen_{name}_mean_dice"]) for name in self.labels})
