"""A patch of a larger scan: after the scan's own normalisation its intensities fill only part of ``[0, 1]``."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform


class RandSubranged(RandomizableTransform, MapTransform):
    """Map ``[0, 1]`` linearly onto a random sub-range ``[low, high]``, as a patch of a whole scan sees it.

    A training patch is normalised on its own voxels (its darkest and brightest tissues become 0 and 1), but the
    served network normalises a whole scan at once and slides its window over the result: around the spine of an
    abdominal CT, whose 0.5th percentile is the air outside the body, fat and muscle sit near 0.5 and nothing in the
    window is darker. Measured on the real thoracolumbar CTs, the shipped ``spine_ct`` found half of the thecal sac
    of the whole scan (Dice 0.59) and all of it in a crop around the spine (0.76). With probability ``prob`` this
    draws ``low`` from ``low_range`` and ``high`` from ``high_range`` and applies ``x -> low + (high - low) * x``.

    Args:
        keys: images in ``[0, 1]``, all mapped the same way.
        low_range: the range the sub-range's lower end is drawn from.
        high_range: the range its upper end is drawn from; its low end must exceed ``low_range``'s high end.
        prob: the probability of mapping an image at all.
        allow_missing_keys: do not raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        low_range: tuple[float, float] = (0.0, 0.6),
        high_range: tuple[float, float] = (0.7, 1.0),
        prob: float = 0.3,
        allow_missing_keys: bool = False,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys, allow_missing_keys)
        if not 0.0 <= low_range[0] <= low_range[1] < high_range[0] <= high_range[1] <= 1.0:
            raise ValueError(f"need 0 <= low_range <= high_range <= 1 with low_range below high_range, got "
                             f"{low_range} and {high_range}")
        self.low_range = low_range
        self.high_range = high_range
        self.low, self.high = 0.0, 1.0

    def randomize(self, data: object = None) -> None:
        """Decide whether to map, and draw the sub-range."""
        super().randomize(None)
        self.low = float(self.R.uniform(*self.low_range))
        self.high = float(self.R.uniform(*self.high_range))

    def __call__(self, data: Mapping[Hashable, torch.Tensor | np.ndarray]) -> dict[Hashable, torch.Tensor | np.ndarray]:
        """Map every key (or none) onto the same sub-range."""
        d = dict(data)
        self.randomize()
        if self._do_transform:
            for key in self.key_iterator(d):
                d[key] = self.low + (self.high - self.low) * d[key]
        return d
