"""Pure functions on probability maps: uncertainty, tumour likelihood and a cheap feature vector.

Shapes: a probability map is ``(C, *spatial)`` (channel first, softmax over ``C``); a stack of ``S`` samples
(MC-dropout passes or test-time augmentations) is ``(S, C, *spatial)``; network inputs are batched
``(1, 1, *spatial)``. Entropies are in nats, so the entropy of a uniform ``C``-class distribution is ``log C``.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

# (network, batched input) -> logits (1, C, *spatial); e.g. a sliding-window inferer, or ``net(x)``.
Predictor = Callable[[nn.Module, torch.Tensor], torch.Tensor]

_DROPOUT = (nn.Dropout, nn.Dropout1d, nn.Dropout2d, nn.Dropout3d, nn.AlphaDropout, nn.FeatureAlphaDropout)
_EPS = 1e-12


def _direct(network: nn.Module, image: torch.Tensor) -> torch.Tensor:
    return network(image)


def entropy(probs: torch.Tensor, dim: int = 0) -> torch.Tensor:
    """Voxel-wise Shannon entropy (nats) of probabilities along ``dim``; ``0 log 0`` counts as 0."""
    return -(probs * torch.log(probs.clamp_min(_EPS))).sum(dim=dim)


def voxel_mean(values: torch.Tensor, top_fraction: float | None = None) -> float:
    """Mean of a voxel map; with ``top_fraction`` (0, 1], the mean of its largest values only.

    The top-fraction mean is insensitive to how much empty field of view surrounds the anatomy.
    """
    flat = values.flatten().float()
    if top_fraction is not None:
        if not 0.0 < top_fraction <= 1.0:
            raise ValueError(f"top_fraction must lie in (0, 1], got {top_fraction}")
        flat = flat.topk(max(1, round(top_fraction * flat.numel()))).values
    return float(flat.mean())


def predictive_entropy(samples: torch.Tensor) -> torch.Tensor:
    """Entropy of the mean of ``(S, C, *spatial)`` samples: a ``(*spatial)`` map (MONAI Label's epistemic score)."""
    return entropy(samples.mean(dim=0), dim=0)


def sample_variance(samples: torch.Tensor) -> torch.Tensor:
    """Variance across ``(S, C, *spatial)`` samples, summed over classes: a ``(*spatial)`` map."""
    return samples.var(dim=0, unbiased=False).sum(dim=0)


@contextmanager
def dropout_only(network: nn.Module) -> Iterator[nn.Module]:
    """Put ``network`` in eval mode except its Dropout modules; restore every module's mode on exit.

    Normalisation layers (BatchNorm, InstanceNorm with running stats, GroupNorm) stay in eval mode, so MC-dropout
    samples differ only by dropout and no running statistics are updated.
    """
    modes = {module: module.training for module in network.modules()}
    network.eval()
    for module in network.modules():
        if isinstance(module, _DROPOUT):
            module.train()
    try:
        yield network
    finally:
        for module, mode in modes.items():
            module.train(mode)


@torch.no_grad()
def mc_dropout_probs(
    network: nn.Module, image: torch.Tensor, samples: int, predictor: Predictor = _direct
) -> torch.Tensor:
    """``samples`` softmax maps ``(S, C, *spatial)`` of ``image`` ``(1, 1, *spatial)`` with dropout active."""
    if samples < 2:
        raise ValueError(f"MC dropout needs at least 2 samples, got {samples}")
    with dropout_only(network):
        return torch.cat([torch.softmax(predictor(network, image), dim=1) for _ in range(samples)])


def flip_sets(spatial_dims: int = 3) -> list[tuple[int, ...]]:
    """Every combination of flipped spatial axes of a batched tensor (axes ``2..``), the identity first."""
    axes = range(2, 2 + spatial_dims)
    return [combo for r in range(spatial_dims + 1) for combo in itertools.combinations(axes, r)]


@torch.no_grad()
def tta_probs(
    network: nn.Module,
    image: torch.Tensor,
    flips: Sequence[tuple[int, ...]],
    predictor: Predictor = _direct,
) -> torch.Tensor:
    """Softmax maps ``(S, C, *spatial)`` under each flip of ``flips`` (axes of the batched input), flipped back.

    The network runs in eval mode (no dropout); its previous mode is restored.
    """
    was_training = network.training
    network.eval()
    try:
        out = []
        for axes in flips:
            flipped = image.flip(axes) if axes else image
            logits = predictor(network, flipped)
            out.append(torch.softmax(logits.flip(axes) if axes else logits, dim=1))
        return torch.cat(out)
    finally:
        network.train(was_training)


def tumor_likelihood(probs: torch.Tensor, channel: int, kernel: int = 3) -> float:
    """How likely a tumour is present: the largest tumour probability after a ``kernel``-wide box average.

    ``probs`` is ``(C, *spatial)``. Averaging first means a single noisy voxel does not count as a tumour.
    """
    tumor = probs[channel][None, None].float()
    pool = {1: F.avg_pool1d, 2: F.avg_pool2d, 3: F.avg_pool3d}[tumor.dim() - 2]
    return float(pool(tumor, kernel, stride=1, padding=kernel // 2, count_include_pad=False).max())


def feature_vector(image: torch.Tensor, probs: torch.Tensor, bins: int = 16, grid: int = 4) -> torch.Tensor:
    """A unit-length descriptor of a scan for diversity: three equally weighted blocks, each of unit length.

    * square roots of the intensity histogram of ``image`` (``(*spatial)``, windowed to ``[0, 1]``);
    * a ``grid``-per-axis average-pooled thumbnail of the image, centred;
    * square roots of the mean class probabilities of ``probs`` (``(C, *spatial)``).

    Euclidean distances between two vectors lie in ``[0, 2]``; near-duplicate scans are close to 0.
    """
    image = image.float()
    hist = torch.histc(image.clamp(0.0, 1.0), bins=bins, min=0.0, max=1.0)
    hist = (hist / hist.sum().clamp_min(_EPS)).sqrt()
    pool = {1: F.adaptive_avg_pool1d, 2: F.adaptive_avg_pool2d, 3: F.adaptive_avg_pool3d}[image.dim()]
    thumb = pool(image[None, None], grid).flatten()
    thumb = thumb - thumb.mean()
    thumb = thumb / thumb.norm().clamp_min(_EPS)
    classes = probs.float().flatten(1).mean(dim=1)
    classes = (classes / classes.sum().clamp_min(_EPS)).sqrt()
    return torch.cat([hist, thumb, classes]) / 3**0.5


def dice_per_label(reference: torch.Tensor, prediction: torch.Tensor, labels: Sequence[int]) -> dict[int, float]:
    """Dice of each label value between two integer label volumes; labels absent from both are left out."""
    out = {}
    for value in labels:
        ref, pred = reference == value, prediction == value
        total = int(ref.sum()) + int(pred.sum())
        if total:
            out[int(value)] = 2.0 * int((ref & pred).sum()) / total
    return out
