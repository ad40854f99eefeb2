"""Few-shot segmentation of a whole slice stack against one support set per tumour type.

The query slices are encoded once (in batches) and compared with the prototypes of each type's support set, so
segmenting against every known type costs one encoding plus a cheap prototype match per type.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import torch

from hope.fewshot.episodes import SupportSet
from hope.fewshot.prototypes import PrototypeSegmenter


@torch.no_grad()
def encode(segmenter: PrototypeSegmenter, images: torch.Tensor, batch: int, anatomy: torch.Tensor | None = None
           ) -> torch.Tensor:
    """Features of ``(N, 1, H, W)`` images (joined with their ``(N, K, H, W)`` ``anatomy`` features when given),
    ``batch`` at a time (on the segmenter's device)."""
    device = next(segmenter.parameters()).device
    segmenter.eval()
    return torch.cat([
        segmenter.features(images[i : i + batch].to(device),
                           None if anatomy is None else anatomy[i : i + batch].to(device))
        for i in range(0, len(images), batch)
    ])


@torch.no_grad()
def lesion_probabilities(
    segmenter: PrototypeSegmenter, supports: Mapping[str, SupportSet], slices: np.ndarray, batch: int = 16,
    anatomy: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Lesion probability ``(Z, H, W)`` of each slice of ``slices`` against each named support set.

    Support and query slices may differ in size: support sets are encoded on their own. ``anatomy`` is the
    slices' ``(Z, K, H, W)`` anatomy features, needed when (and only when) the support sets have them.
    """
    queries = torch.from_numpy(np.ascontiguousarray(slices, dtype=np.float32))[:, None]
    query_anatomy = None if anatomy is None else torch.from_numpy(np.ascontiguousarray(anatomy, dtype=np.float32))
    for name, support in supports.items():
        if (support.anatomy is None) != (query_anatomy is None):
            raise ValueError(f"support set {name!r} {'has' if support.anatomy is not None else 'lacks'} anatomy "
                             "features and the query slices do not match it; give them to both or neither")
    query_features = encode(segmenter, queries, batch, query_anatomy)
    device = query_features.device
    result = {}
    for name, support in supports.items():
        support_features = encode(segmenter, support.images, batch, support.anatomy)
        probabilities = []
        for start in range(0, len(query_features), batch):
            probabilities.append(segmenter.lesion_probability(
                support_features, support.masks.to(device), query_features[start : start + batch], slices.shape[-2:]
            ).cpu())
        result[name] = torch.cat(probabilities).numpy()
    return result
