"""Voxel-grid helpers of scribble corrections: bounding boxes and nearest-label filling, in numpy."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import ndimage


def bounding_box(mask: np.ndarray, margin: Sequence[int]) -> tuple[slice, ...]:
    """The slices of ``mask``'s bounding box grown by ``margin`` voxels per axis, clipped to the array.

    ``mask`` must hold at least one voxel.
    """
    box = []
    for axis, size in enumerate(mask.shape):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(hits[0]) - margin[axis], 0), min(int(hits[-1]) + 1 + margin[axis], size)))
    return tuple(box)


def fill_nearest(values: np.ndarray, unknown: np.ndarray, sources: np.ndarray, sampling: Sequence[float]) -> None:
    """In place: every ``unknown`` voxel takes the value of the nearest ``sources`` voxel (0 if there is none).

    Works on the bounding box of ``unknown`` grown by one voxel, so thin scribbles cost little on large volumes.
    ``sampling`` is the voxel size along the arrays' axes (distances in mm).
    """
    if not unknown.any():
        return
    box = bounding_box(unknown, [1] * unknown.ndim)
    window, holes, wells = values[box], unknown[box], sources[box]
    if not wells.any():
        window[holes] = 0
        return
    nearest = ndimage.distance_transform_edt(~wells, sampling=sampling, return_distances=False, return_indices=True)
    window[holes] = window[tuple(index[holes] for index in nearest)]
