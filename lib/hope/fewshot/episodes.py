"""Labelled cases, support sets and few-shot episodes: 1-way k-shot segmentation, N-way k-shot classification of
lesions by grade or by tumour type."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

GRADES = ("benign", "borderline", "malignant")


@dataclass(frozen=True)
class LabelledCase:
    """One annotated 2D slice: ``image`` ``(H, W)`` float, lesion ``mask`` ``(H, W)`` {0, 1}, its type and grade.

    Images are expected roughly in ``[0, 1]`` (a fixed CT window scaled to unit range). ``anatomy``, when given,
    is the slice's ``(K, H, W)`` anatomy features (:mod:`hope.fewshot.anatomy_features`).
    """

    image: np.ndarray
    mask: np.ndarray
    tumor_type: str
    grade: str | None = None
    anatomy: np.ndarray | None = None


@dataclass(frozen=True)
class SupportSet:
    """Stacked cases as tensors: ``images`` and ``masks`` ``(k, 1, H, W)`` float32, plus each case's type and grade,
    and ``anatomy`` ``(k, K, H, W)`` when every case has anatomy features."""

    images: torch.Tensor
    masks: torch.Tensor
    tumor_types: tuple[str, ...]
    grades: tuple[str | None, ...]
    anatomy: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device | str) -> SupportSet:
        """The same set with its tensors on ``device``."""
        anatomy = None if self.anatomy is None else self.anatomy.to(device)
        return SupportSet(self.images.to(device), self.masks.to(device), self.tumor_types, self.grades, anatomy)


@dataclass(frozen=True)
class SegmentationEpisode:
    """A 1-way k-shot episode: support and query cases of one tumour type (disjoint)."""

    tumor_type: str
    support: SupportSet
    query: SupportSet


@dataclass(frozen=True)
class ClassificationEpisode:
    """An N-way k-shot lesion episode: support and query cases, the class names, and the case attribute
    (``"grade"`` or ``"tumor_type"``) that is the class."""

    support: tuple[LabelledCase, ...]
    query: tuple[LabelledCase, ...]
    classes: tuple[str, ...]
    label: Literal["grade", "tumor_type"]

    def targets(self, cases: Sequence[LabelledCase]) -> list[int]:
        """Class index of each case."""
        return [self.classes.index(getattr(c, self.label)) for c in cases]


def group_by_type(cases: Sequence[LabelledCase]) -> dict[str, list[LabelledCase]]:
    """Cases grouped by tumour type, in input order."""
    groups: dict[str, list[LabelledCase]] = defaultdict(list)
    for case in cases:
        groups[case.tumor_type].append(case)
    return dict(groups)


def build_support_set(cases: Sequence[LabelledCase]) -> SupportSet:
    """Stack labelled cases (each with a non-empty mask) into a :class:`SupportSet`.

    Cases cut to different sizes (:func:`hope.fewshot.volumes.support_size` sizes each case's cut to its lesion)
    are padded to the largest, centred: images and anatomy features with their edge values, masks with background.
    The set has anatomy features when every case has them; a mix is refused.
    """
    if not cases:
        raise ValueError("a support set needs at least one labelled case")
    if any(c.image.shape != c.mask.shape for c in cases):
        raise ValueError("each support case's image and mask must have one size, got "
                         f"{sorted({(c.image.shape, c.mask.shape) for c in cases})}")
    if any(c.anatomy is not None and c.anatomy.shape[1:] != c.image.shape for c in cases):
        raise ValueError("each support case's anatomy features must be (K, H, W) over its image's (H, W)")
    if any(not np.any(c.mask) for c in cases):
        raise ValueError("every support case needs a non-empty lesion mask")
    size = tuple(max(c.image.shape[i] for c in cases) for i in range(2))
    images = torch.from_numpy(np.stack([_pad_to(c.image, size, "edge") for c in cases]).astype(np.float32))[:, None]
    masks = torch.from_numpy(np.stack([_pad_to(c.mask > 0, size, "constant") for c in cases]).astype(np.float32))
    with_anatomy = {c.anatomy is not None for c in cases}
    if len(with_anatomy) > 1:
        raise ValueError("some support cases have anatomy features and some do not; give them to all or none")
    features = [c.anatomy for c in cases if c.anatomy is not None]
    anatomy = None
    if features:
        padded = [_pad_to(f, (f.shape[0], *size), "edge") for f in features]
        anatomy = torch.from_numpy(np.stack(padded).astype(np.float32))
    return SupportSet(images, masks[:, None], tuple(c.tumor_type for c in cases), tuple(c.grade for c in cases),
                      anatomy)


def _pad_to(array: np.ndarray, size: tuple[int, ...], mode: str) -> np.ndarray:
    """``array`` padded (``mode``) to ``size``, centred."""
    pads = [((n - m) // 2, n - m - (n - m) // 2) for m, n in zip(array.shape, size, strict=True)]
    return np.pad(array, pads, mode=mode)  # type: ignore[call-overload]


def sample_segmentation_episode(
    cases_by_type: Mapping[str, Sequence[LabelledCase]],
    shots: int,
    n_query: int,
    rng: np.random.Generator,
    types: Sequence[str] | None = None,
) -> SegmentationEpisode:
    """Pick a type from ``types`` (default: all), then ``shots`` support and ``n_query`` other query cases of it."""
    names = sorted(types if types is not None else cases_by_type)
    tumor_type = names[int(rng.integers(len(names)))]
    support, query = _draw(cases_by_type[tumor_type], shots, n_query, rng, f"type {tumor_type!r}")
    return SegmentationEpisode(tumor_type, build_support_set(support), build_support_set(query))


def _draw(pool: Sequence[LabelledCase], shots: int, n_query: int, rng: np.random.Generator, name: str
          ) -> tuple[list[LabelledCase], list[LabelledCase]]:
    """``shots`` support and ``n_query`` query cases drawn from ``pool`` without replacement."""
    if len(pool) < shots + n_query:
        raise ValueError(f"{name} has {len(pool)} cases; an episode needs {shots + n_query}")
    pick = rng.choice(len(pool), shots + n_query, replace=False)
    return [pool[i] for i in pick[:shots]], [pool[i] for i in pick[shots:]]


def sample_grading_episode(
    cases_by_type: Mapping[str, Sequence[LabelledCase]],
    shots: int,
    n_query: int,
    rng: np.random.Generator,
    grades: Sequence[str] = GRADES,
) -> ClassificationEpisode:
    """``shots`` support and ``n_query`` query lesions per grade, drawn from every type of that grade.

    Support and query lesions of one grade may come from different types, so an embedding trained on such
    episodes has to capture what the types of a grade share rather than what identifies one type.
    """
    by_grade: dict[str | None, list[LabelledCase]] = defaultdict(list)
    for group in cases_by_type.values():
        for case in group:
            by_grade[case.grade].append(case)
    support: list[LabelledCase] = []
    query: list[LabelledCase] = []
    for grade in grades:
        s, q = _draw(by_grade[grade], shots, n_query, rng, f"grade {grade!r}")
        support += s
        query += q
    return ClassificationEpisode(tuple(support), tuple(query), tuple(grades), "grade")


def sample_type_episode(
    cases_by_type: Mapping[str, Sequence[LabelledCase]],
    n_way: int,
    shots: int,
    n_query: int,
    rng: np.random.Generator,
) -> ClassificationEpisode:
    """An ``n_way``-way episode over tumour types: ``n_way`` random types, ``shots`` + ``n_query`` cases of each."""
    types = [str(t) for t in rng.choice(sorted(cases_by_type), n_way, replace=False)]
    support: list[LabelledCase] = []
    query: list[LabelledCase] = []
    for name in types:
        s, q = _draw(cases_by_type[name], shots, n_query, rng, f"type {name!r}")
        support += s
        query += q
    return ClassificationEpisode(tuple(support), tuple(query), tuple(types), "tumor_type")
