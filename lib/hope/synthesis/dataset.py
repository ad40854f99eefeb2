"""An endless, seeded stream of synthetic training batches from a pool of anatomies."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.data import DataLoader, Dataset
from monai.transforms import Compose
from torch.utils.data import RandomSampler


def mix_pool(pool: Sequence[dict[str, Any]], extra: Sequence[dict[str, Any]], share: float
             ) -> list[dict[str, Any]]:
    """``pool`` and ``extra`` in one pool from which a uniform draw is an item of ``extra`` with probability about
    ``share`` (``extra``'s items repeated, by reference, as often as that needs; at least once each; ``extra`` alone
    for a share of 1)."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"share must lie in [0, 1], got {share}")
    if not extra or share == 0.0:
        return list(pool)
    if share == 1.0:
        return list(extra)
    copies = max(1, round(share * len(pool) / ((1.0 - share) * len(extra))))
    return [*pool, *(item for _ in range(copies) for item in extra)]


def synthetic_loader(
    pool: Sequence[dict[str, Any]],
    transforms: Sequence[Callable],
    *,
    batch_size: int,
    batches: int,
    workers: int = 0,
    seed: int = 0,
) -> DataLoader:
    """``batches`` batches of ``batch_size`` images, each synthesised anew from a random anatomy of ``pool``.

    Anatomies are drawn with replacement; the random transforms make every draw a new image, so the pool can be
    small. MONAI's loader seeds the transforms (of each worker process, if any) from the generator that ``seed``
    starts, so the stream is a function of ``seed`` (and of ``workers``).

    Args:
        pool: training items, e.g. :func:`hope.synthesis.anatomy.anatomy_pool`.
        transforms: the per-item pipeline, e.g. :func:`hope.synthesis.pipeline.synthesis_transforms`.
        batch_size: images per batch.
        batches: how many batches the loader yields.
        workers: worker processes synthesising batches ahead of the training step (0: synthesise in-line).
        seed: seeds the choice of anatomies and the transforms.
    """
    if not pool:
        raise ValueError("the anatomy pool is empty")
    if batch_size < 1 or batches < 1:
        raise ValueError(f"batch_size and batches must be >= 1, got {batch_size} and {batches}")
    generator = torch.Generator().manual_seed(seed)
    sampler = RandomSampler(range(len(pool)), replacement=True, num_samples=batch_size * batches, generator=generator)
    dataset = Dataset(list(pool), Compose(transforms))
    return DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers, generator=generator,
                      persistent_workers=workers > 0)
