"""Fast adaptation of a prototype segmenter to one support set: a few first-order MAML inner-loop steps.

The parameters are copied into a dictionary and updated functionally (``torch.func.functional_call``), so the
module itself is never modified and one meta-trained segmenter can serve many support sets. The inner loss
needs no query label: with two or more shots each support image is segmented from the others (leave-one-out);
with one shot the support is segmented from an augmented copy of itself. Gradients are not propagated through
the updates (first order).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.func import functional_call

from hope.fewshot.episodes import SupportSet
from hope.fewshot.meta_train import segmentation_loss
from hope.fewshot.prototypes import PrototypeSegmenter, join_features
from hope.fewshot.ssl import augment_with_anatomy

Params = dict[str, torch.Tensor]


def _encoder_params(params: Params) -> Params:
    """The encoder's entries of a segmenter's parameter dictionary, without the ``encoder.`` prefix."""
    return {name.removeprefix("encoder."): p for name, p in params.items() if name.startswith("encoder.")}


def support_loss(segmenter: PrototypeSegmenter, params: Params, support: SupportSet,
                 rng: np.random.Generator) -> torch.Tensor:
    """The label-free inner loss of ``support`` under ``params``: leave-one-out with k >= 2, self-support at k = 1.
    Anatomy features, when the set has them, are joined as in serving (and warped with the augmented copy)."""
    images, masks, anatomy = support.images, support.masks, support.anatomy
    if len(support) == 1:
        augmented, augmented_masks, augmented_anatomy = augment_with_anatomy(images, masks, anatomy, rng)
        images, masks = torch.cat([images, augmented]), torch.cat([masks, augmented_masks])
        anatomy = None if anatomy is None else torch.cat([anatomy.to(augmented), augmented_anatomy])
    encoded = functional_call(segmenter.encoder, _encoder_params(params), (images,))
    features = join_features(encoded, anatomy, segmenter.anatomy_weight)
    k = len(images)
    losses = []
    for i in range(k):
        others = [j for j in range(k) if j != i]
        logits = segmenter.logits_from_features(features[others], masks[others], features[i : i + 1],
                                                images.shape[-2:])
        losses.append(segmentation_loss(logits, masks[i : i + 1]))
    return torch.stack(losses).mean()


def adapt(segmenter: PrototypeSegmenter, support: SupportSet, steps: int = 3, lr: float = 0.01,
          seed: int = 0) -> Params:
    """Parameters of ``segmenter`` after ``steps`` first-order SGD steps on the support set's inner loss.

    ``segmenter`` is left untouched; use the result with :func:`segment_adapted`.
    """
    device = next(segmenter.parameters()).device
    support = support.to(device)
    rng = np.random.default_rng(seed)
    params = {name: p.detach().clone().requires_grad_(True) for name, p in segmenter.named_parameters()}
    for _ in range(steps):
        loss = support_loss(segmenter, params, support, rng)
        grads = torch.autograd.grad(loss, list(params.values()), allow_unused=True)
        params = {
            name: (p - lr * g if g is not None else p).detach().requires_grad_(True)
            for (name, p), g in zip(params.items(), grads, strict=True)
        }
    return {name: p.detach() for name, p in params.items()}


@torch.no_grad()
def segment_adapted(segmenter: PrototypeSegmenter, params: Params, support: SupportSet,
                    query_images: torch.Tensor) -> torch.Tensor:
    """Lesion probability ``(Q, H, W)`` of ``query_images`` with adapted ``params`` (from :func:`adapt`)."""
    device = next(segmenter.parameters()).device
    logits = functional_call(
        segmenter, params, (support.images.to(device), support.masks.to(device), query_images.to(device))
    )
    return logits.softmax(dim=1)[:, 1]
