"""Images drawn from label maps: every label value gets a random Gaussian intensity (SynthSeg's generative model)."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, Randomizable
from monai.utils import convert_to_dst_type, convert_to_numpy

Range = tuple[float, float]


class RandGaussianMixtureFromLabelsd(Randomizable, MapTransform):
    """Synthesise ``image_key`` from the integer label map under ``keys``, with a new random contrast each call.

    Every label value ``c`` (0 included: background is a class too) draws a mean ``mu_c`` from ``mean_range`` and a
    standard deviation ``sigma_c`` from ``std_range``; each voxel of class ``c`` becomes ``mu_c + sigma_c * n`` with
    ``n`` standard normal, independently per voxel. With ``std_range=(0, 0)`` the image is constant within every
    class. With probability ``merge_prob`` a class takes the mean and deviation of another random class, so some
    boundaries vanish (as when two tissues look alike in a real sequence). No class order is imposed, so one call
    may make bone bright and the next dark. The image is a float32 array of the label map's type and metadata.

    Args:
        keys: the one key of the label map (channel-first, non-negative integer values, any array type).
        image_key: where the synthesised image is written.
        mean_range: the range class means are drawn from.
        std_range: the range the within-class standard deviations are drawn from.
        merge_prob: per class, the probability of copying another class's intensity distribution.
        allow_missing_keys: do not raise if the label map is missing (no image is made then).
    """

    def __init__(
        self,
        keys: KeysCollection,
        image_key: str = "image",
        mean_range: Range = (0.0, 1.0),
        std_range: Range = (0.0, 0.1),
        merge_prob: float = 0.0,
        allow_missing_keys: bool = False,
    ) -> None:
        MapTransform.__init__(self, keys, allow_missing_keys)
        if len(self.keys) != 1:
            raise ValueError(f"RandGaussianMixtureFromLabelsd synthesises one image from one label map, got keys "
                             f"{self.keys}")
        _check_range("mean_range", mean_range, low=-np.inf)
        _check_range("std_range", std_range, low=0.0)
        if not 0.0 <= merge_prob <= 1.0:
            raise ValueError(f"merge_prob must lie in [0, 1], got {merge_prob}")
        self.image_key = image_key
        self.mean_range = mean_range
        self.std_range = std_range
        self.merge_prob = merge_prob
        self.means = np.zeros(0, dtype=np.float32)
        self.stds = np.zeros(0, dtype=np.float32)

    def randomize(self, num_classes: int) -> None:
        """Draw the mean and standard deviation of classes ``0..num_classes - 1``, then merge some of them."""
        means = self.R.uniform(*self.mean_range, size=num_classes)
        stds = self.R.uniform(*self.std_range, size=num_classes)
        merged = self.R.random_sample(num_classes) < self.merge_prob
        for c in np.flatnonzero(merged):
            other = self.R.randint(num_classes)
            means[c], stds[c] = means[other], stds[other]
        self.means, self.stds = means.astype(np.float32), stds.astype(np.float32)

    def __call__(self, data: Mapping[Hashable, torch.Tensor | np.ndarray]) -> dict[Hashable, torch.Tensor | np.ndarray]:
        """Add ``image_key``: one random contrast of the label map."""
        d = dict(data)
        for key in self.key_iterator(d):
            classes = _class_indices(d[key], key)
            self.randomize(int(classes.max()) + 1)
            noise = self.R.standard_normal(classes.shape).astype(np.float32)
            image = self.means[classes] + self.stds[classes] * noise
            d[self.image_key] = convert_to_dst_type(image, d[key], dtype=torch.float32)[0]
        return d


def _class_indices(label: torch.Tensor | np.ndarray, key: Hashable) -> np.ndarray:
    """The label map as non-negative integer class indices (a ``ValueError`` for anything else)."""
    values = convert_to_numpy(label)
    classes = np.rint(values).astype(np.int64)
    if classes.size == 0 or classes.min() < 0 or not np.array_equal(classes, values):
        raise ValueError(f"{key!r} must be a non-empty map of non-negative integer labels")
    return classes


def _check_range(name: str, bounds: Range, low: float) -> None:
    if len(bounds) != 2 or not low <= bounds[0] <= bounds[1]:
        raise ValueError(f"{name} must be a (low, high) pair with {low} <= low <= high, got {bounds}")
