"""Anisotropic acquisitions: a volume seen as a stack of thick slices along one random axis, then resampled back."""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from monai.config import KeysCollection
from monai.networks.layers import gaussian_1d, separable_filtering
from monai.transforms import MapTransform, RandomizableTransform
from monai.utils import convert_to_dst_type, convert_to_tensor

FWHM_PER_SIGMA = 2.0 * np.sqrt(2.0 * np.log(2.0))  # a Gaussian slice profile whose full width at half maximum is
                                                   # the slice thickness


class RandThickSlicesd(RandomizableTransform, MapTransform):
    """Simulate thick slices (e.g. a sagittal MR stack of 3-6 mm slices) along one random axis.

    MONAI's ``RandSimulateLowResolutiond`` zooms every axis alike; this lowers the resolution of one axis only,
    as a 2D multi-slice acquisition does. With probability ``prob`` an axis is drawn from ``axes`` and a slice
    thickness from ``thickness_mm``; the image is blurred along that axis with a Gaussian slice profile whose full
    width at half maximum is the thickness, sampled once per slice, and interpolated back (linearly) to its grid,
    as the task's resampling does with a thick-slice scan. Thicknesses not above the voxel size change nothing.

    Args:
        keys: channel-first 3D images to degrade, all the same way.
        spacing: the voxel size of the images along each spatial axis, mm.
        thickness_mm: the range slice thicknesses are drawn from, mm.
        prob: the probability of degrading an image at all.
        axes: the spatial axes the slice axis is drawn from.
        allow_missing_keys: do not raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        spacing: Sequence[float],
        thickness_mm: tuple[float, float] = (3.0, 6.0),
        prob: float = 0.1,
        axes: Sequence[int] = (0, 1, 2),
        allow_missing_keys: bool = False,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(spacing) != 3 or min(spacing) <= 0:
            raise ValueError(f"spacing must be three positive mm values (one per spatial axis), got {spacing}")
        if len(thickness_mm) != 2 or not 0 < thickness_mm[0] <= thickness_mm[1]:
            raise ValueError(f"thickness_mm must be a (low, high) pair with 0 < low <= high, got {thickness_mm}")
        if not axes or set(axes) - {0, 1, 2}:
            raise ValueError(f"axes must be spatial axes among 0, 1, 2, got {axes}")
        self.spacing = tuple(float(s) for s in spacing)
        self.thickness_mm = thickness_mm
        self.axes = tuple(axes)
        self.axis = self.axes[0]
        self.thickness = 0.0

    def randomize(self, data: object = None) -> None:
        """Decide whether to degrade, and draw the slice axis and thickness."""
        super().randomize(None)
        self.axis = self.axes[self.R.randint(len(self.axes))]
        self.thickness = float(self.R.uniform(*self.thickness_mm))

    def __call__(self, data: Mapping[Hashable, torch.Tensor | np.ndarray]) -> dict[Hashable, torch.Tensor | np.ndarray]:
        """Degrade every key (or none) with the same axis and thickness."""
        d = dict(data)
        self.randomize()
        factor = self.thickness / self.spacing[self.axis]
        if not self._do_transform or factor <= 1.0:
            return d
        for key in self.key_iterator(d):
            d[key] = self._thick_slices(d[key], factor)
        return d

    def _thick_slices(self, image: torch.Tensor | np.ndarray, factor: float) -> torch.Tensor | np.ndarray:
        plain = convert_to_tensor(image, dtype=torch.float32, track_meta=False)
        identity = torch.ones(1)
        kernels = [identity, identity, identity]
        kernels[self.axis] = gaussian_1d(torch.tensor(factor / FWHM_PER_SIGMA), normalize=True)
        profile = separable_filtering(plain[None], kernels, mode="replicate")  # no dark rim at the volume's ends
        shape = list(plain.shape[1:])
        slices = list(shape)
        slices[self.axis] = max(1, round(shape[self.axis] / factor))
        stack = F.interpolate(profile, size=slices, mode="trilinear", align_corners=False)
        back = F.interpolate(stack, size=shape, mode="trilinear", align_corners=False)[0]
        return convert_to_dst_type(back, image)[0]
