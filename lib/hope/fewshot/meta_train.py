"""Episodic meta-training on base types: the prototype segmenter (and the loop SSL shares) and the lesion grader."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss
from tqdm.auto import tqdm

from hope.fewshot.episodes import (
    ClassificationEpisode,
    LabelledCase,
    SegmentationEpisode,
    sample_grading_episode,
    sample_segmentation_episode,
    sample_type_episode,
)
from hope.fewshot.grading import (
    LesionEmbedder,
    class_prototypes,
    crop_lesion,
    fit_temperature,
    prototype_logits,
    stack_crops,
)
from hope.fewshot.prototypes import PrototypeSegmenter, join_features

EpisodeSource = Callable[[np.random.Generator], SegmentationEpisode]

_LOSS = DiceCELoss(to_onehot_y=True, softmax=True)


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings of an episodic training run (Adam with a cosine learning-rate decay)."""

    steps: int = 1000
    episodes_per_step: int = 4
    lr: float = 1e-3
    weight_decay: float = 1e-4
    seed: int = 0


def segmentation_loss(logits: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Dice + cross-entropy of ``(B, 2, H, W)`` logits against ``(B, 1, H, W)`` binary masks."""
    return _LOSS(logits, masks)


def episodes_loss(segmenter: PrototypeSegmenter, episodes: Sequence[SegmentationEpisode]) -> torch.Tensor:
    """Mean segmentation loss over episodes, with the images of every episode encoded in one batch per image size
    (the encoder's instance normalisation makes that the same as encoding each alone). Sets with anatomy features
    have them joined to the encoder's (:func:`~hope.fewshot.prototypes.join_features`), as serving does."""
    device = next(segmenter.parameters()).device
    sets = [s for e in episodes for s in (e.support, e.query)]
    stacks = [s.images.to(device) for s in sets]
    features = [join_features(f, s.anatomy, segmenter.anatomy_weight)
                for f, s in zip(_encode_by_size(segmenter.encoder, stacks), sets, strict=True)]
    loss = torch.zeros((), device=device)
    for i, episode in enumerate(episodes):
        support_features, query_features = features[2 * i], features[2 * i + 1]
        logits = segmenter.logits_from_features(
            support_features, episode.support.masks.to(device), query_features, stacks[2 * i + 1].shape[-2:]
        )
        loss = loss + segmentation_loss(logits, episode.query.masks.to(device))
    return loss / len(episodes)


def _encode_by_size(encoder: torch.nn.Module, stacks: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """The features of each ``(n, 1, H, W)`` stack, the stacks of one ``(H, W)`` encoded together."""
    by_size: dict[tuple[int, ...], list[int]] = {}
    for i, stack in enumerate(stacks):
        by_size.setdefault(tuple(stack.shape[-2:]), []).append(i)
    features: list[torch.Tensor] = [torch.empty(0)] * len(stacks)
    for indices in by_size.values():
        encoded = encoder(torch.cat([stacks[i] for i in indices]))
        start = 0
        for i in indices:
            features[i] = encoded[start : start + len(stacks[i])]
            start += len(stacks[i])
    return features


def optimise(
    module: torch.nn.Module,
    step_loss: Callable[[], torch.Tensor],
    config: TrainConfig,
    desc: str,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> list[float]:
    """``config.steps`` AdamW steps (cosine-decayed learning rate) on ``step_loss()``, with ``module`` in train
    mode and back in eval mode after; returns the loss per step. ``callback(step, loss)`` follows each step."""
    optimiser = torch.optim.AdamW(module.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimiser, T_max=config.steps)
    return run_steps(module, optimiser, step_loss, config.steps, desc, progress, schedule, callback)


def run_steps(
    module: torch.nn.Module,
    optimiser: torch.optim.Optimizer,
    step_loss: Callable[[], torch.Tensor],
    steps: int,
    desc: str,
    progress: bool = True,
    schedule: torch.optim.lr_scheduler.LRScheduler | None = None,
    callback: Callable[[int, float], None] | None = None,
) -> list[float]:
    """The training loop every few-shot network shares: ``steps`` optimiser steps on ``step_loss()`` with a tqdm
    bar of the recent mean loss; ``module`` trains meanwhile and is left in eval mode. Returns the loss per step."""
    module.train()
    losses: list[float] = []
    bar = tqdm(range(steps), desc=desc, disable=not progress, leave=False)
    for step in bar:
        loss = step_loss()
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()
        if schedule is not None:
            schedule.step()
        losses.append(loss.item())
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
        if callback is not None:
            callback(step, losses[-1])
    module.eval()
    return losses


def train_episodic(
    segmenter: PrototypeSegmenter,
    episodes: EpisodeSource,
    config: TrainConfig,
    desc: str = "episodic training",
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``segmenter`` in place on episodes drawn from ``episodes(rng)``; returns the loss per step.

    ``callback(step, loss)`` is called after each optimiser step.
    """
    rng = np.random.default_rng(config.seed)
    return optimise(
        segmenter,
        lambda: episodes_loss(segmenter, [episodes(rng) for _ in range(config.episodes_per_step)]),
        config,
        desc,
        progress,
        callback,
    )


def labelled_episodes(
    cases_by_type: Mapping[str, Sequence[LabelledCase]],
    max_shots: int = 5,
    n_query: int = 1,
    types: Sequence[str] | None = None,
) -> EpisodeSource:
    """An episode source over labelled cases: 1-way episodes of a random type with 1..``max_shots`` supports."""

    def sample(rng: np.random.Generator) -> SegmentationEpisode:
        shots = int(rng.integers(1, max_shots + 1))
        return sample_segmentation_episode(cases_by_type, shots, n_query, rng, types)

    return sample


def meta_train_segmenter(
    segmenter: PrototypeSegmenter,
    cases_by_type: Mapping[str, Sequence[LabelledCase]],
    config: TrainConfig,
    max_shots: int = 5,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Meta-train on labelled cases grouped by (base) type: 1-way, 1..``max_shots``-shot episodes, one query each."""
    return train_episodic(segmenter, labelled_episodes(cases_by_type, max_shots), config, desc="meta-train",
                          progress=progress, callback=callback)


def augment_crops(crops: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random left-right mirroring and intensity gain/offset of ``(N, 2, S, S)`` lesion crops (a new tensor)."""
    crops = crops.clone()
    mirror = torch.from_numpy(rng.random(len(crops)) < 0.5)
    crops[mirror] = crops[mirror].flip(-1)
    gain = torch.from_numpy(rng.uniform(0.85, 1.15, (len(crops), 1, 1)).astype(np.float32))
    offset = torch.from_numpy(rng.uniform(-0.05, 0.05, (len(crops), 1, 1)).astype(np.float32))
    crops[:, 0] = crops[:, 0] * gain + offset
    return crops


def episode_logits(embedder: LesionEmbedder, episode: ClassificationEpisode, rng: np.random.Generator | None = None
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Prototype logits ``(Q, n_classes)`` (temperature 1) of an episode's queries, and their class indices.

    The episode's cases must be lesion crops (:func:`~hope.fewshot.grading.crop_lesion`); with ``rng`` they are
    augmented (:func:`augment_crops`).
    """
    device = next(embedder.parameters()).device
    crops = stack_crops([*episode.support, *episode.query])
    if rng is not None:
        crops = augment_crops(crops, rng)
    embeddings = embedder(crops.to(device))
    k = len(episode.support)
    prototypes = class_prototypes(embeddings[:k], [getattr(c, episode.label) for c in episode.support],
                                  episode.classes)
    targets = torch.tensor(episode.targets(episode.query), device=device)
    return prototype_logits(embeddings[k:], prototypes), targets


def meta_train_grader(
    embedder: LesionEmbedder,
    cases_by_type: Mapping[str, Sequence[LabelledCase]],
    config: TrainConfig,
    max_shots: int = 5,
    n_query: int = 3,
    type_fraction: float = 0.5,
    progress: bool = True,
) -> list[float]:
    """Train a prototypical lesion embedding on base types; returns the loss per step.

    A ``type_fraction`` of the episodes are 3..5-way over base tumour types, the rest 3-way over grades (support
    and query of a grade may come from different types), each 1..``max_shots``-shot with ``n_query`` queries per
    class. Type episodes keep the embedding able to tell lesions apart in general (what a new type needs); grade
    episodes teach what the types of a grade share. Lesions are cropped once up front and augmented per episode.
    """
    crops = {t: [crop_lesion(c) for c in group] for t, group in cases_by_type.items()}
    max_way = min(5, len(crops))
    rng = np.random.default_rng(config.seed)

    def step_loss() -> torch.Tensor:
        episode_losses = []
        for _ in range(config.episodes_per_step):
            shots = int(rng.integers(1, max_shots + 1))
            if rng.random() < type_fraction:
                n_way = int(rng.integers(min(3, max_way), max_way + 1))
                episode = sample_type_episode(crops, n_way, shots, n_query, rng)
            else:
                episode = sample_grading_episode(crops, shots, n_query, rng)
            episode_losses.append(F.cross_entropy(*episode_logits(embedder, episode, rng)))
        return torch.stack(episode_losses).mean()

    return optimise(embedder, step_loss, config, "meta-train grading", progress)


@torch.no_grad()
def calibrate_grader(
    embedder: LesionEmbedder,
    cases_by_type: Mapping[str, Sequence[LabelledCase]],
    shots: int = 5,
    episodes: int = 50,
    n_query: int = 4,
    seed: int = 0,
) -> float:
    """Fit the grading temperature on grade episodes of (base-type, ideally held-aside) cases; returns ``T``."""
    crops = {t: [crop_lesion(c) for c in group] for t, group in cases_by_type.items()}
    rng = np.random.default_rng(seed)
    embedder.eval()
    pairs = [episode_logits(embedder, sample_grading_episode(crops, shots, n_query, rng)) for _ in range(episodes)]
    return fit_temperature(torch.cat([p[0] for p in pairs]).cpu(), torch.cat([p[1] for p in pairs]).cpu())
