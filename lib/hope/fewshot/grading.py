"""Few-shot lesion grading: a prototypical network over support lesions with calibrated grade probabilities.

A lesion is embedded from a fixed-size crop centred on its mask (image and mask as two channels, no resizing, so
size is kept): encoder features are pooled inside the lesion, in a ring around it (the margin) and over the
whole crop, then projected. Grade probabilities are a softmax over negative squared distances to the mean
embedding of each grade's support lesions, divided by a temperature fitted on base types (temperature scaling);
the nearest known tumour types are ranked the same way against per-type prototypes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from hope.fewshot.encoder import ConvEncoder
from hope.fewshot.episodes import GRADES, LabelledCase

CROP_SIZE = 32


def crop_lesion(case: LabelledCase, size: int = CROP_SIZE) -> LabelledCase:
    """The ``size`` x ``size`` window of ``case`` centred on its lesion's centroid (zero-padded at the border)."""
    ys, xs = np.nonzero(case.mask)
    if len(ys) == 0:
        raise ValueError("cannot crop a lesion from an empty mask")
    top, left = round(ys.mean()) - size // 2, round(xs.mean()) - size // 2
    pad = size
    image = np.pad(case.image, pad, mode="edge")[top + pad : top + pad + size, left + pad : left + pad + size]
    mask = np.pad(case.mask, pad)[top + pad : top + pad + size, left + pad : left + pad + size]
    return LabelledCase(image.astype(np.float32), (mask > 0).astype(np.float32), case.tumor_type, case.grade)


def stack_crops(crops: Sequence[LabelledCase]) -> torch.Tensor:
    """``(N, 2, size, size)``: image and mask channels of lesion crops (from :func:`crop_lesion`)."""
    return torch.from_numpy(np.stack([np.stack([c.image, c.mask]) for c in crops]).astype(np.float32))


class LesionEmbedder(nn.Module):
    """``(N, 2, S, S)`` lesion crops (image, mask) -> ``(N, dim)`` embeddings.

    Features (a :class:`~hope.fewshot.encoder.ConvEncoder`) are averaged inside the lesion, in a ``ring``-pixel
    band around it, and over the crop; the three averages are concatenated and projected linearly.
    """

    def __init__(self, dim: int = 64, channels: Sequence[int] = (16, 32), ring: int = 3) -> None:
        super().__init__()
        self.encoder = ConvEncoder(in_channels=2, channels=channels, out_channels=channels[-1])
        self.project = nn.Linear(3 * channels[-1], dim)
        self.ring = ring
        self.dim = dim

    def forward(self, crops: torch.Tensor) -> torch.Tensor:
        """Embed lesion crops."""
        features = self.encoder(crops)
        mask = F.interpolate(crops[:, 1:2], size=features.shape[-2:], mode="area")
        grown = F.max_pool2d(mask, 2 * self.ring + 1, stride=1, padding=self.ring)
        pooled = [
            (features * w).sum(dim=(-2, -1)) / (w.sum(dim=(-2, -1)) + 1e-5) for w in (mask, grown - mask)
        ]
        return self.project(torch.cat([*pooled, features.mean(dim=(-2, -1))], dim=1))


def prototype_logits(queries: torch.Tensor, prototypes: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    """``(Q, P)`` logits: negative squared Euclidean distances divided by ``temperature``."""
    return -torch.cdist(queries, prototypes).pow(2) / temperature


def class_prototypes(embeddings: torch.Tensor, labels: Sequence[str], classes: Sequence[str]) -> torch.Tensor:
    """``(len(classes), D)``: the mean embedding of each class (every class must occur in ``labels``)."""
    missing = [c for c in classes if c not in labels]
    if missing:
        raise ValueError(f"no support lesion for {missing}")
    index = np.asarray(labels)
    return torch.stack([embeddings[torch.from_numpy(index == c).to(embeddings.device)].mean(dim=0) for c in classes])


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, steps: int = 100) -> float:
    """Temperature scaling: the ``T > 0`` that minimises the NLL of ``softmax(logits / T)`` (LBFGS on ``log T``)."""
    log_t = torch.zeros((), requires_grad=True)
    optimiser = torch.optim.LBFGS([log_t], lr=0.1, max_iter=steps)

    def closure() -> torch.Tensor:
        optimiser.zero_grad()
        loss = F.cross_entropy(logits.detach() / log_t.exp(), targets)
        loss.backward()
        return loss

    optimiser.step(closure)
    return log_t.detach().exp().item()


@dataclass(frozen=True)
class GradeResult:
    """Grade probabilities of one lesion, its most likely grade, and the nearest known types ``(type, prob)``."""

    probabilities: dict[str, float]
    grade: str
    nearest_types: list[tuple[str, float]]


class LesionGrader:
    """Grades lesions against a support set of graded, typed lesions (a prototypical network).

    ``temperature`` divides the negative squared distances before the softmax; fit it with :func:`fit_temperature`
    on base-type episodes (see :func:`hope.fewshot.meta_train.calibrate_grader`).
    """

    def __init__(self, embedder: LesionEmbedder, temperature: float = 1.0, grades: Sequence[str] = GRADES) -> None:
        self.embedder = embedder
        self.temperature = temperature
        self.grades = tuple(grades)
        self.grade_prototypes: torch.Tensor | None = None
        self.type_prototypes: torch.Tensor | None = None
        self.types: tuple[str, ...] = ()

    @torch.no_grad()
    def embed(self, cases: Sequence[LabelledCase]) -> torch.Tensor:
        """Embeddings ``(N, D)`` of the lesions of ``cases`` (full images and masks; cropped here)."""
        self.embedder.eval()
        device = next(self.embedder.parameters()).device
        return self.embedder(stack_crops([crop_lesion(c) for c in cases]).to(device)).cpu()

    def fit(self, support: Sequence[LabelledCase]) -> LesionGrader:
        """Build grade and type prototypes from support lesions, each with a grade and a type; returns ``self``."""
        embeddings = self.embed(support)
        self.grade_prototypes = class_prototypes(embeddings, [c.grade for c in support], self.grades)
        self.types = tuple(sorted({c.tumor_type for c in support}))
        self.type_prototypes = class_prototypes(embeddings, [c.tumor_type for c in support], self.types)
        return self

    def probabilities(self, cases: Sequence[LabelledCase]) -> np.ndarray:
        """``(N, n_grades)`` calibrated grade probabilities, columns in the order of ``self.grades``."""
        if self.grade_prototypes is None:
            raise RuntimeError("call fit() with support lesions first")
        logits = prototype_logits(self.embed(cases), self.grade_prototypes, self.temperature)
        return logits.softmax(dim=1).numpy()

    def predict(self, cases: Sequence[LabelledCase], top_types: int = 3) -> list[GradeResult]:
        """Grade each lesion and list its ``top_types`` nearest support types with their probabilities."""
        if self.grade_prototypes is None or self.type_prototypes is None:
            raise RuntimeError("call fit() with support lesions first")
        embeddings = self.embed(cases)
        grade_p = prototype_logits(embeddings, self.grade_prototypes, self.temperature).softmax(dim=1).numpy()
        type_p = prototype_logits(embeddings, self.type_prototypes, self.temperature).softmax(dim=1).numpy()
        results = []
        for g, t in zip(grade_p, type_p, strict=True):
            order = np.argsort(-t)[:top_types]
            results.append(GradeResult(
                probabilities={name: float(p) for name, p in zip(self.grades, g, strict=True)},
                grade=self.grades[int(np.argmax(g))],
                nearest_types=[(self.types[i], float(t[i])) for i in order],
            ))
        return results
