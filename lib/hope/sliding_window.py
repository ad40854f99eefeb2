"""The sliding window every segmentation network of a task is run with: serving, validation, anatomy features and
pretraining reports all see a volume through :func:`served_inferer`.

A ``percentile`` task's network learnt from patches each scaled to its own percentiles
(:func:`hope.synthesis.pipeline.synthesis_transforms` crops, then normalises). A whole scan scaled once to its own
percentiles gives a window other statistics than a patch has: on a 512² CT the 0.5th and 99.5th percentiles are
the air around the body and the densest bone or the table, and soft tissue ends in a narrow band. So such a task's
inferer scales each window to the percentiles of the real voxels in it (never of the padding that fills a window
beyond a small volume), as its training patches were. A ``window`` task's fixed Hounsfield range is the same in
every window, and its windows are left as they come.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from monai.inferers import Inferer, SlidingWindowInferer
from monai.utils import convert_to_dst_type, convert_to_tensor

from hope.config import TaskDefinition


def scale_to_percentiles(images: torch.Tensor, inside: torch.Tensor, percentiles: tuple[float, float]
                         ) -> torch.Tensor:
    """Each of ``(B, 1, ...)`` ``images`` scaled so that its ``percentiles`` (of the voxels where ``inside``) become
    0 and 1, clipped to ``[0, 1]``; a window without an inside voxel (never made by :class:`PercentileWindowInferer`)
    is a ``ValueError``. A constant window becomes all zeros."""
    low, high = (p / 100.0 for p in percentiles)
    scaled = []
    for image, mask in zip(images, inside, strict=True):
        values = image[mask]
        if values.numel() == 0:
            raise ValueError("a window holds no voxel of the image: it cannot be scaled to its percentiles")
        quantiles = torch.quantile(values.float(), torch.tensor([low, high], device=values.device))
        span = (quantiles[1] - quantiles[0]).clamp_min(torch.finfo(torch.float32).eps)
        scaled.append(((image - quantiles[0]) / span).clamp(0.0, 1.0))
    return torch.stack(scaled)


class _ScaledWindows(torch.nn.Module):
    """``network`` applied to windows of two channels (the image, and 1 where it is real rather than padding), each
    first scaled to its own percentiles."""

    def __init__(self, network: Callable[[torch.Tensor], torch.Tensor], percentiles: tuple[float, float]) -> None:
        super().__init__()
        self.network = network
        self.percentiles = percentiles

    def forward(self, windows: torch.Tensor) -> torch.Tensor:
        return self.network(scale_to_percentiles(windows[:, :1], windows[:, 1:] > 0.5, self.percentiles))


class PercentileWindowInferer(Inferer):
    """Gaussian-weighted sliding window in which the network sees each window scaled to its own percentiles.

    A volume smaller than a window is first padded to it by replicating its edges (as
    :class:`~monai.inferers.SlidingWindowInferer` pads, and as a training patch smaller than the network's is padded
    after its normalisation); the padding is left out of the percentiles, and out of the answer.

    Args:
        roi_size: the window, in voxels.
        sw_batch_size: windows run at once.
        overlap: the share of a window its neighbours overlap.
        percentiles: the lower and upper percentiles (0-100) that become 0 and 1.
    """

    def __init__(self, roi_size: Sequence[int], sw_batch_size: int, overlap: float,
                 percentiles: tuple[float, float]) -> None:
        super().__init__()
        self.roi_size = tuple(roi_size)
        self.percentiles = percentiles
        self.window = SlidingWindowInferer(roi_size=self.roi_size, sw_batch_size=sw_batch_size, overlap=overlap,
                                           mode="gaussian", padding_mode="replicate")

    def __call__(self, inputs: torch.Tensor, network: Callable[..., torch.Tensor], *args: Any, **kwargs: Any
                 ) -> torch.Tensor:
        """Logits of ``network`` for ``(B, 1, *spatial)`` ``inputs``, of the inputs' spatial shape (and type)."""
        spatial = inputs.shape[2:]
        pads: list[int] = []  # F.pad's order: last axis first, (before, after) each
        for size, window in reversed(list(zip(spatial, self.roi_size, strict=True))):
            missing = max(window - size, 0)
            pads += [missing // 2, missing - missing // 2]
        image = convert_to_tensor(inputs, track_meta=False)
        inside = torch.ones_like(image)
        padded = torch.cat([F.pad(image, pads, mode="replicate"), F.pad(inside, pads)], dim=1)
        logits = self.window(padded, _ScaledWindows(network, self.percentiles), *args, **kwargs)
        befores = pads[::2][::-1]
        crop = tuple(slice(before, before + size) for before, size in zip(befores, spatial, strict=True))
        logits = convert_to_tensor(logits, track_meta=False)[(slice(None), slice(None), *crop)]
        return convert_to_dst_type(logits, inputs, device=logits.device)[0]


def served_inferer(task: TaskDefinition) -> Inferer:
    """The sliding window of ``task``'s profile: :class:`PercentileWindowInferer` for a ``percentile`` task, a plain
    Gaussian-weighted :class:`~monai.inferers.SlidingWindowInferer` for a ``window`` one."""
    pre, inference = task.preprocessing, task.inference
    if pre.normalisation == "percentile":
        return PercentileWindowInferer(pre.patch_size, inference.sw_batch_size, inference.overlap, pre.percentiles)
    return SlidingWindowInferer(roi_size=pre.patch_size, sw_batch_size=inference.sw_batch_size,
                                overlap=inference.overlap, mode="gaussian", padding_mode="replicate")
