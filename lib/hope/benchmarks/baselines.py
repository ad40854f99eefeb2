"""Supervised baselines for the few-shot benchmark: train on base types, then fine-tune on the k support cases.

The segmentation baseline is a small 2D MONAI SegResNet, a stand-in for HOPE's supervised ``spine_ct`` tumour
model (a 3D SegResNet); the grading baseline is a lesion embedder with a linear grade head.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.networks.nets import SegResNet
from torch import nn

from hope.fewshot.episodes import GRADES, LabelledCase, SupportSet, build_support_set
from hope.fewshot.grading import LesionEmbedder, crop_lesion, stack_crops
from hope.fewshot.meta_train import TrainConfig, augment_crops, run_steps, segmentation_loss
from hope.fewshot.ssl import AugmentConfig, augment

_MILD = AugmentConfig(rotate=0.15, scale=0.1, translate=0.05, gamma=(0.85, 1.2), noise=0.01)


def supervised_segmenter() -> SegResNet:
    """A small 2D SegResNet (8 initial filters), two output channels (background, lesion)."""
    return SegResNet(spatial_dims=2, in_channels=1, out_channels=2, init_filters=8, blocks_down=(1, 2, 2),
                     blocks_up=(1, 1))


def _fit_segmenter(net: nn.Module, cases: SupportSet, steps: int, batch_size: int, lr: float,
                   rng: np.random.Generator, progress: bool, desc: str) -> list[float]:
    """Adam on Dice-CE over random augmented batches of ``cases``; returns the loss per step."""
    device = next(net.parameters()).device

    def step_loss() -> torch.Tensor:
        pick = rng.integers(len(cases), size=batch_size)
        images, masks = augment(cases.images[pick], cases.masks[pick], rng, _MILD)
        return segmentation_loss(net(images.to(device)), masks.to(device))

    return run_steps(net, torch.optim.Adam(net.parameters(), lr=lr), step_loss, steps, desc, progress)


def train_supervised_segmenter(net: nn.Module, cases: Sequence[LabelledCase], config: TrainConfig,
                               batch_size: int = 8, progress: bool = True) -> list[float]:
    """Supervised training on all (base-type) cases pooled as one lesion class; returns the loss per step."""
    return _fit_segmenter(net, build_support_set(cases), config.steps, batch_size, config.lr,
                          np.random.default_rng(config.seed), progress, "supervised seg")


def finetune_segmenter(net: nn.Module, support: SupportSet, steps: int = 20, lr: float = 1e-3,
                       seed: int = 0) -> nn.Module:
    """A copy of ``net`` fine-tuned on the support cases (augmented batches of 2 to 4); ``net`` is unchanged."""
    tuned = copy.deepcopy(net)
    _fit_segmenter(tuned, support, steps, min(4, max(2, len(support))), lr, np.random.default_rng(seed), False,
                   "fine-tune")
    return tuned


class GradeClassifier(nn.Module):
    """Lesion crops ``(N, 2, S, S)`` -> grade logits ``(N, n_grades)``: a lesion embedder and a linear head."""

    def __init__(self, n_grades: int = len(GRADES)) -> None:
        super().__init__()
        self.embedder = LesionEmbedder()
        self.head = nn.Linear(self.embedder.dim, n_grades)

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Grade logits of lesion crops."""
        return self.head(F.relu(self.embedder(crops)))


def _fit_classifier(net: GradeClassifier, crops: torch.Tensor, targets: torch.Tensor, steps: int, batch_size: int,
                    lr: float, rng: np.random.Generator, progress: bool, desc: str) -> list[float]:
    """Adam on cross-entropy over random augmented batches; returns the loss per step."""
    device = next(net.parameters()).device

    def step_loss() -> torch.Tensor:
        pick = torch.from_numpy(rng.integers(len(crops), size=batch_size))
        return F.cross_entropy(net(augment_crops(crops[pick], rng).to(device)), targets[pick].to(device))

    return run_steps(net, torch.optim.Adam(net.parameters(), lr=lr), step_loss, steps, desc, progress)


def _crops_and_grades(cases: Sequence[LabelledCase]) -> tuple[torch.Tensor, torch.Tensor]:
    crops = stack_crops([crop_lesion(c) for c in cases])
    return crops, torch.tensor([GRADES.index(c.grade) for c in cases])


def train_supervised_grader(net: GradeClassifier, cases: Sequence[LabelledCase], config: TrainConfig,
                            batch_size: int = 16, progress: bool = True) -> list[float]:
    """Supervised grade classification on all (base-type) lesions; returns the loss per step."""
    crops, targets = _crops_and_grades(cases)
    return _fit_classifier(net, crops, targets, config.steps, batch_size, config.lr,
                           np.random.default_rng(config.seed), progress, "supervised grading")


def finetune_grader(net: GradeClassifier, support: Sequence[LabelledCase], steps: int = 20, lr: float = 1e-3,
                    seed: int = 0) -> GradeClassifier:
    """A copy of ``net`` fine-tuned on the graded support lesions; ``net`` is unchanged."""
    tuned = copy.deepcopy(net)
    crops, targets = _crops_and_grades(support)
    _fit_classifier(tuned, crops, targets, steps, min(16, len(support)), lr, np.random.default_rng(seed), False,
                    "fine-tune")
    return tuned


@torch.no_grad()
def grade_probabilities(net: GradeClassifier, cases: Sequence[LabelledCase]) -> np.ndarray:
    """``(N, n_grades)`` softmax probabilities of the classifier for the lesions of ``cases``."""
    device = next(net.parameters()).device
    crops = stack_crops([crop_lesion(c) for c in cases]).to(device)
    return net(crops).softmax(dim=1).cpu().numpy()
