"""Prototype segmentation: masked average pooling, ALPNet local prototypes, cosine-similarity prediction.

Support features are pooled under the support masks into foreground and background prototypes (one global pair
per support image, plus local prototypes pooled over windows the mask covers almost entirely, as in SSL-ALPNet);
every query pixel is scored by its cosine similarity to the prototypes of each class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hope.fewshot.episodes import SupportSet

#: Self-support matching: a query's first-pass lesion is where its lesion probability is above this, its background
#: the rest (SSP's own 0.7 / 0.6 confidence bands lifted the untrained encoder more than the shipped one, and scored
#: lower on the held-out phantom tumours: 0.704 against 0.731; README).
SELF_SUPPORT_THRESHOLD = 0.5


def masked_average_pooling(features: torch.Tensor, masks: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Mean feature under each mask: ``(B, C, h, w)`` features, ``(B, 1, H, W)`` weights in ``[0, 1]`` -> ``(B, C)``.

    A mask larger than the feature grid is area-averaged down to it (as in SSL-ALPNet), so a feature cell counts
    with the fraction of it the mask covers.
    """
    if masks.shape[-2:] != features.shape[-2:]:
        masks = F.interpolate(masks, size=features.shape[-2:], mode="area")
    return (features * masks).sum(dim=(-2, -1)) / (masks.sum(dim=(-2, -1)) + eps)


def local_prototypes(features: torch.Tensor, masks: torch.Tensor, window: int, min_fraction: float) -> torch.Tensor:
    """ALPNet local prototypes: ``(P, C)`` mean features of ``window`` x ``window`` feature cells (stride ``window``)
    whose mask coverage is at least ``min_fraction``. ``masks`` ``(B, 1, H, W)`` is area-averaged to the feature grid.
    """
    if masks.shape[-2:] != features.shape[-2:]:
        masks = F.interpolate(masks, size=features.shape[-2:], mode="area")
    pooled_mask = F.avg_pool2d(masks, window, stride=window)
    pooled = F.avg_pool2d(features * masks, window, stride=window) / (pooled_mask + 1e-5)
    keep = (pooled_mask >= min_fraction).flatten()
    return pooled.permute(0, 2, 3, 1).reshape(-1, features.shape[1])[keep]


def join_features(features: torch.Tensor, anatomy: torch.Tensor | None, weight: float) -> torch.Tensor:
    """Encoder ``features`` ``(B, C, h, w)`` joined with ``anatomy`` ``(B, K, H, W)`` (area-resampled to ``h, w``).

    Each part is made a unit vector per pixel and the anatomy part scaled by ``weight``, so the cosine similarity
    of two joined vectors is ``(cos_encoder + weight^2 cos_anatomy) / (1 + weight^2)``. Without anatomy (or with
    weight 0) the features are returned as they are.
    """
    if anatomy is None or weight == 0:
        return features
    anatomy = F.interpolate(anatomy.to(features), size=features.shape[-2:], mode="area")
    return torch.cat([F.normalize(features, dim=1), weight * F.normalize(anatomy, dim=1)], dim=1)


def class_scores(features: torch.Tensor, prototypes: torch.Tensor, scale: float, chunk: int = 1 << 16
                 ) -> torch.Tensor:
    """Score of one class at each pixel from its ``(P, C)`` prototypes: ``(B, C, h, w) -> (B, h, w)``.

    ``scale`` times the cosine similarity to each prototype, combined by a softmax-weighted mean over prototypes
    (SSL-ALPNet): with one prototype it is the plain scaled cosine similarity, with many it tends to the best match.
    Pixels are scored ``chunk`` at a time, so a batch of whole slices never holds a ``(B, P, h, w)`` array.
    """
    b, c, h, w = features.shape
    pixels = F.normalize(features, dim=1).permute(0, 2, 3, 1).reshape(-1, c)
    unit = F.normalize(prototypes, dim=1).T
    scores = []
    for start in range(0, len(pixels), chunk):
        sims = scale * (pixels[start : start + chunk] @ unit)
        scores.append((sims.softmax(dim=1) * sims).sum(dim=1))
    return torch.cat(scores).reshape(b, h, w)


class PrototypeSegmenter(nn.Module):
    """1-way few-shot segmenter: ``forward(support_images, support_masks, query_images)`` gives ``(Q, 2, H, W)``
    logits (channel 1: lesion) at the query's resolution.

    Foreground and background prototypes are the per-image masked averages plus local prototypes
    (``local_window`` feature cells, at least ``local_min_fraction`` covered). ``scale`` multiplies the cosine
    similarities (20 in PANet/ALPNet). Where support and query come with anatomy features, they are joined to the
    encoder's with ``anatomy_weight`` (:func:`join_features`). With ``self_support`` above 0, each query slice is
    matched a second time against its own prototypes at inference (:meth:`lesion_probability`).
    """

    def __init__(
        self,
        encoder: nn.Module,
        scale: float = 20.0,
        local_window: int = 4,
        local_min_fraction: float = 0.95,
        anatomy_weight: float = 0.0,
        support_ensemble: bool = False,
        self_support: float = 0.0,
    ) -> None:
        super().__init__()
        if not 0.0 <= self_support <= 1.0:
            raise ValueError(f"self_support is the self-support pass's share of the probabilities, in [0, 1]; got "
                             f"{self_support}")
        self.encoder = encoder
        self.scale = scale
        self.local_window = local_window
        self.local_min_fraction = local_min_fraction
        self.anatomy_weight = anatomy_weight
        self.support_ensemble = support_ensemble
        self.self_support = self_support

    def features(self, images: torch.Tensor, anatomy: torch.Tensor | None = None) -> torch.Tensor:
        """Encoder features of ``(B, 1, H, W)`` images, joined with their ``(B, K, H, W)`` anatomy features."""
        return join_features(self.encoder(images), anatomy, self.anatomy_weight)

    def prototypes(self, support_features: torch.Tensor, support_masks: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Foreground and background prototypes ``(P_fg, C)``, ``(P_bg, C)`` from support features and masks."""
        background = 1.0 - support_masks
        fg = [masked_average_pooling(support_features, support_masks)]
        bg = [masked_average_pooling(support_features, background)]
        if self.local_window:
            fg.append(local_prototypes(support_features, support_masks, self.local_window, self.local_min_fraction))
            bg.append(local_prototypes(support_features, background, self.local_window, self.local_min_fraction))
        return torch.cat(fg), torch.cat(bg)

    def logits_from_features(
        self, support_features: torch.Tensor, support_masks: torch.Tensor, query_features: torch.Tensor,
        size: tuple[int, int] | torch.Size,
    ) -> torch.Tensor:
        """``(Q, 2, *size)`` logits from already encoded support and query images (batched training).

        With ``support_ensemble``, each support image gives its own prototypes and prediction, and the logits are the
        log of their mean probabilities.
        """
        def logits(features: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
            fg, bg = self.prototypes(features, masks)
            scores = torch.stack([class_scores(query_features, p, self.scale) for p in (bg, fg)], dim=1)
            return F.interpolate(scores, size=size, mode="bilinear", align_corners=False)

        if not self.support_ensemble or len(support_features) == 1:
            return logits(support_features, support_masks)
        probabilities = torch.stack([logits(support_features[i : i + 1], support_masks[i : i + 1]).softmax(dim=1)
                                     for i in range(len(support_features))])
        return probabilities.mean(dim=0).clamp_min(1e-6).log()

    def lesion_probability(
        self, support_features: torch.Tensor, support_masks: torch.Tensor, query_features: torch.Tensor,
        size: tuple[int, int] | torch.Size,
    ) -> torch.Tensor:
        """``(Q, *size)`` lesion probability at inference: the match against the support
        (:meth:`logits_from_features`), then, with ``self_support``, :meth:`with_self_support`.

        Training matches without the self-support pass: meta-training through it lowered the held-out phantom
        types' 5-shot Dice (0.68 against 0.76 without it, after 300 steps from the shipped encoder, both served
        with it).
        """
        probabilities = self.logits_from_features(support_features, support_masks, query_features, size).softmax(dim=1)
        if self.self_support:
            probabilities = self.with_self_support(probabilities, query_features)
        return probabilities[:, 1]

    def with_self_support(self, probabilities: torch.Tensor, query_features: torch.Tensor) -> torch.Tensor:
        """``(Q, 2, H, W)`` probabilities mixed with a second match of each query slice against its own prototypes.

        Self-support matching (SSP, Fan et al., ECCV 2022): the query's features under its first-pass lesion (lesion
        probability above :data:`SELF_SUPPORT_THRESHOLD`) and under the rest, each averaged into one prototype,
        score every pixel of the same slice again, and the result takes ``self_support`` of the mixture. A query's
        own prototypes carry its own contrast, which a support of another sequence or patient does not. A slice
        whose first pass finds no lesion, or nothing else, keeps its first pass.
        """
        lesion = F.interpolate(probabilities[:, 1:2], size=query_features.shape[-2:], mode="area")
        lesion = lesion > SELF_SUPPORT_THRESHOLD
        regions = [(~lesion).to(query_features), lesion.to(query_features)]
        usable = torch.stack([r.flatten(1).sum(dim=1) > 0 for r in regions]).all(dim=0)
        norms = query_features.norm(dim=1).clamp_min(1e-12)  # cosines without a normalised copy of the features
        scores = torch.stack([self.scale * torch.einsum("qchw,qc->qhw", query_features,
                                                        F.normalize(masked_average_pooling(query_features, r), dim=1))
                              / norms for r in regions], dim=1)
        own = F.interpolate(scores, size=probabilities.shape[-2:], mode="bilinear", align_corners=False).softmax(dim=1)
        mixed = (1.0 - self.self_support) * probabilities + self.self_support * own
        return torch.where(usable[:, None, None, None], mixed, probabilities)

    def forward(
        self, support_images: torch.Tensor, support_masks: torch.Tensor, query_images: torch.Tensor
    ) -> torch.Tensor:
        """Lesion logits for the query images, channel 0 background and 1 lesion."""
        features = self.encoder(torch.cat([support_images, query_images]))
        k = len(support_images)
        return self.logits_from_features(features[:k], support_masks, features[k:], query_images.shape[-2:])

    @torch.no_grad()
    def segment(self, support: SupportSet, query_images: torch.Tensor, query_anatomy: torch.Tensor | None = None
                ) -> torch.Tensor:
        """Lesion probability ``(Q, H, W)`` for ``(Q, 1, H, W)`` query images, given a support set; a support set
        with anatomy features needs the query's ``(Q, K, H, W)`` ``query_anatomy`` (and one without refuses it)."""
        if (support.anatomy is None) != (query_anatomy is None):
            raise ValueError("give anatomy features to both the support set and the query, or to neither")
        device = next(self.parameters()).device
        support_features = self.features(support.images.to(device), support.anatomy)
        query_features = self.features(query_images.to(device), query_anatomy)
        return self.lesion_probability(support_features, support.masks.to(device), query_features,
                                       query_images.shape[-2:])
