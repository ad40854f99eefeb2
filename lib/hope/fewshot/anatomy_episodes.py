"""Contrast-randomised few-shot episodes of spine anatomy: support and query from two phantom subjects, each in a
random contrast of its own, so that the encoder learns to match anatomy rather than intensity.

The phantom tumour types (:mod:`hope.phantoms.tumor_types`) are CT lesions of one contrast. A site's first support
set is as likely to be a T2 sagittal stack and its query a T1 (or a CT), so beside them the encoder meets episodes
of the spine's own structures (``vertebra``, ``cord``, ``canal``, ``disc``) on axial slices of 3D phantom anatomies
(:mod:`hope.synthesis.anatomy`'s, at the slices' 1 mm in-plane spacing): the support slices of one subject and the
query slice of another, every subject's tissue map rendered with a new random Gaussian-mixture contrast, blur, bias
field, noise and gamma (MONAI's transforms and :class:`~hope.synthesis.mixture.RandGaussianMixtureFromLabelsd`),
then scaled to ``[0, 1]`` by its 1st-99th percentiles, as MR slices are served. Support slices are cut as serving
cuts them (:func:`hope.fewshot.volumes.lesion_cuts`); the query is the whole slice.

Measured on the real cross-patient pairs of ``scripts/bench_real.py``: half of 3,000 meta-training steps on these
episodes lowered the quick 5-shot Dice from 0.19 to 0.06 (phantom anatomy, like the supervised networks' phantoms,
does not transfer by itself), so the shipped encoder is trained without them (``pretrain_fewshot.py
--anatomy-share 0``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from monai.transforms import (
    Compose,
    RandAdjustContrastd,
    RandBiasFieldd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    ScaleIntensityRangePercentilesd,
)

from hope.config import TaskDefinition
from hope.fewshot.anatomy_features import kind_channels
from hope.fewshot.config import SliceSpec
from hope.fewshot.episodes import LabelledCase, SegmentationEpisode, build_support_set
from hope.fewshot.meta_train import EpisodeSource
from hope.fewshot.volumes import lesion_cuts
from hope.label_kinds import KINDS as ANATOMY_KINDS
from hope.label_kinds import kind_index, one_hot_kinds
from hope.phantoms import generate_neck_mr
from hope.synthesis.anatomy import ANATOMY_SPEC
from hope.synthesis.mixture import RandGaussianMixtureFromLabelsd

#: Structure kinds of the episodes, as the task's label names that form each.
KINDS: Mapping[str, Sequence[str]] = {
    "vertebra": ("C1", "C2", "C3", "C4", "C5", "C6", "C7"),
    "cord": ("cord",),
    "canal": ("cord", "canal"),
    "disc": ("disc_C2_C3", "disc_C3_C4", "disc_C4_C5", "disc_C5_C6", "disc_C6_C7", "disc_C7_T1"),
}
MIN_PIXELS = 20  # a slice holds a structure when it has at least this many of its pixels


@dataclass(frozen=True)
class AnatomySlices:
    """One phantom subject's axial slices: ``tissues`` ``(Z, H, W)`` tissue classes and each kind's ``(Z, H, W)``
    bool mask, with the slices that hold it (:data:`MIN_PIXELS`); ``kinds`` is each pixel's index in
    :data:`hope.label_kinds.KINDS`, the exact anatomy features (:mod:`hope.fewshot.anatomy_training`)."""

    tissues: np.ndarray
    masks: Mapping[str, np.ndarray]
    slices: Mapping[str, np.ndarray]
    kinds: np.ndarray


def anatomy_slices(task: TaskDefinition, seeds: Iterable[int]) -> list[AnatomySlices]:
    """The axial slices of the phantom anatomies of ``seeds`` (``task``: a task whose labels name every label of
    :data:`KINDS`, e.g. ``spine_mr``); the phantoms are at 1 mm in-plane, the few-shot slices' spacing."""
    missing = {name for names in KINDS.values() for name in names} - set(task.labels)
    if missing:
        raise ValueError(f"task {task.name} lacks the labels {sorted(missing)} that the episode kinds need")
    subjects = []
    for seed in seeds:
        phantom = generate_neck_mr(seed, task.labels, "T2", ANATOMY_SPEC)
        masks = {kind: np.isin(phantom.label, [task.labels[n] for n in names]) for kind, names in KINDS.items()}
        slices = {kind: np.flatnonzero(m.reshape(len(m), -1).sum(axis=1) >= MIN_PIXELS) for kind, m in masks.items()}
        kinds = kind_index({kind: np.isin(phantom.label, group)
                            for kind, group in zip(ANATOMY_KINDS[1:], kind_channels(task.labels)[1:], strict=True)})
        subjects.append(AnatomySlices(phantom.tissues, masks, slices, kinds))
    return subjects


def random_contrast(seed: int) -> Compose:
    """A pipeline from ``{"tissues": (1, k, H, W)}`` to ``image`` in ``[0, 1]``: one random contrast for the whole
    stack (one subject, one sequence), blurred, shaded, noisy and gamma-adjusted, then percentile-scaled."""
    pipeline = Compose([
        RandGaussianMixtureFromLabelsd(keys="tissues", image_key="image", std_range=(0.0, 0.08), merge_prob=0.03),
        RandGaussianSmoothd(keys="image", prob=0.5, sigma_x=(0.0, 0.0), sigma_y=(0.3, 1.2), sigma_z=(0.3, 1.2)),
        RandBiasFieldd(keys="image", prob=0.5, coeff_range=(-0.15, 0.15)),
        RandGaussianNoised(keys="image", prob=0.8, std=0.04),
        RandAdjustContrastd(keys="image", prob=0.5, gamma=(0.5, 2.0)),
        ScaleIntensityRangePercentilesd(keys="image", lower=1, upper=99, b_min=0.0, b_max=1.0, clip=True),
    ])
    pipeline.set_random_state(seed=seed)
    return pipeline


def _render(subject: AnatomySlices, chosen: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The ``chosen`` slices of ``subject`` in one new random contrast: ``(k, H, W)`` float32."""
    pipeline = random_contrast(int(rng.integers(2**31)))
    out = pipeline({"tissues": subject.tissues[chosen][None].astype(np.float32)})
    return np.asarray(out["image"][0], dtype=np.float32)


def anatomy_episodes(subjects: Sequence[AnatomySlices], spec: SliceSpec, max_shots: int = 5) -> EpisodeSource:
    """Episodes of a random kind: 1..``max_shots`` support slices of one subject (cut as serving cuts them) and the
    whole query slice of another, each subject in its own random contrast, both with their exact anatomy features
    (:func:`hope.fewshot.anatomy_training.with_anatomy_errors` gives them errors)."""
    if len(subjects) < 2:
        raise ValueError(f"cross-subject episodes need two subjects or more, got {len(subjects)}")

    def sample(rng: np.random.Generator) -> SegmentationEpisode:
        kind = list(KINDS)[int(rng.integers(len(KINDS)))]
        a, b = (subjects[i] for i in rng.choice(len(subjects), 2, replace=False))
        shots = min(int(rng.integers(1, max_shots + 1)), len(a.slices[kind]))
        chosen = np.sort(rng.choice(a.slices[kind], shots, replace=False))
        pixels, masks = _render(a, chosen, rng), a.masks[kind][chosen]
        features = one_hot_kinds(a.kinds[chosen]).swapaxes(0, 1)
        cuts = lesion_cuts(masks, shots, spec.support_window, spec.support_context)
        support = [cut.case(pixels, masks, kind, anatomy=features) for cut in cuts]
        z = int(rng.choice(b.slices[kind]))
        query = LabelledCase(_render(b, np.asarray([z]), rng)[0], b.masks[kind][z].astype(np.float32), kind,
                             anatomy=one_hot_kinds(b.kinds[z]))
        return SegmentationEpisode(kind, build_support_set(support), build_support_set([query]))

    return sample


def mixed_episodes(sources: Sequence[tuple[EpisodeSource, float]]) -> EpisodeSource:
    """An episode source that draws from one of ``sources`` at random, in proportion to its weight."""
    weights = np.asarray([w for _, w in sources], dtype=np.float64)
    if not len(sources) or (weights < 0).any() or weights.sum() <= 0:
        raise ValueError(f"mixed_episodes needs sources with non-negative weights summing above 0, got {weights}")
    weights = weights / weights.sum()

    def sample(rng: np.random.Generator) -> SegmentationEpisode:
        return sources[int(rng.choice(len(sources), p=weights))][0](rng)

    return sample
