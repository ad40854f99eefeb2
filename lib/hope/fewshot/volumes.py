"""From 3D series to the 2D axial slices the few-shot networks see, and back.

The few-shot networks work on axial slices at a fixed in-plane pixel spacing, windowed to ``[0, 1]``
(:class:`~hope.fewshot.config.SliceSpec`). :func:`to_slices` makes that stack from an image (reoriented to LPS,
resampled in-plane, slice positions kept); :func:`mask_on_slices` puts a label on the same grid; and
:func:`probability_on_image` brings a probability stack back onto the original image grid.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hope.fewshot.config import SliceSpec
from hope.fewshot.episodes import LabelledCase


@dataclass(frozen=True)
class SliceStack:
    """``pixels`` ``(Z, H, W)`` float32 in ``[0, 1]`` on ``grid`` (an image carrying the stack's geometry)."""

    pixels: np.ndarray
    grid: sitk.Image


def _slice_grid(image: sitk.Image, spec: SliceSpec) -> sitk.Image:
    """``image`` reoriented to LPS and resampled (linearly) to the spec's in-plane spacing."""
    image = sitk.DICOMOrient(image, "LPS")
    spacing = image.GetSpacing()
    target = (spec.pixel_spacing_mm, spec.pixel_spacing_mm, spacing[2])
    if np.allclose(spacing, target, rtol=1e-3):
        return image
    size = [max(1, round(n * s / t)) for n, s, t in zip(image.GetSize(), spacing, target, strict=True)]
    return sitk.Resample(image, size, sitk.Transform(), sitk.sitkLinear, image.GetOrigin(), target,
                         image.GetDirection(), 0.0, sitk.sitkFloat32)


def to_slices(image: sitk.Image, spec: SliceSpec) -> SliceStack:
    """The axial slice stack of ``image`` at the spec's in-plane spacing, windowed to ``[0, 1]``."""
    grid = _slice_grid(sitk.Cast(image, sitk.sitkFloat32), spec)
    lo, hi = spec.intensity_range
    pixels = np.clip((sitk.GetArrayFromImage(grid) - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return SliceStack(pixels, grid)


def mask_on_slices(mask: sitk.Image, stack: SliceStack) -> np.ndarray:
    """A binary mask (on its image's grid) resampled, nearest neighbour, onto the stack: ``(Z, H, W)`` uint8."""
    resampled = sitk.Resample(sitk.Cast(mask > 0, sitk.sitkUInt8), stack.grid, sitk.Transform(),
                              sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    return sitk.GetArrayFromImage(resampled)


def probability_on_image(probability: np.ndarray, stack: SliceStack, image: sitk.Image) -> np.ndarray:
    """``(Z, H, W)`` probabilities on the stack, resampled linearly onto ``image``'s grid (``(z, y, x)`` array)."""
    on_stack = sitk.GetImageFromArray(probability.astype(np.float32))
    on_stack.CopyInformation(stack.grid)
    back = sitk.Resample(on_stack, image, sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    return sitk.GetArrayFromImage(back)


def _window(array: np.ndarray, centre: tuple[int, int], size: int, mode: str) -> np.ndarray:
    """The ``size`` x ``size`` window of a 2D array centred on ``centre``, padded (``mode``) at the border."""
    top, left = centre[0] - size // 2, centre[1] - size // 2
    padded = np.pad(array, size, mode=mode)  # type: ignore[call-overload]
    return padded[top + size : top + 2 * size, left + size : left + 2 * size]


def support_size(masks: Sequence[np.ndarray], window: int, context: float) -> int:
    """The side of the square support cut for 2D lesion ``masks``: ``window`` pixels, or, when it is more,
    ``context`` times the largest lesion extent among them rounded up to a multiple of 8 (the encoder's stride).

    A fixed window is a tumour-sized cut; a vertebra or a whole cord section needs its surroundings too, or the
    background prototypes never see what borders it in the query.
    """
    extent = 0
    for mask in masks:
        ys, xs = np.nonzero(mask)
        if len(ys):
            extent = max(extent, int(np.ptp(ys)) + 1, int(np.ptp(xs)) + 1)
    wanted = math.ceil(context * extent)
    return window if wanted <= window else -(-wanted // 8) * 8


@dataclass(frozen=True)
class LesionCut:
    """Slice ``z`` of a stack, cut (when ``size``) to a ``size`` x ``size`` square centred on ``centre``."""

    z: int
    centre: tuple[int, int]
    size: int

    def apply(self, array: np.ndarray, mode: str) -> np.ndarray:
        """The cut of a ``(H, W)`` or ``(C, H, W)`` slice, padded (``mode``) at the border; the slice whole when
        ``size`` is 0."""
        if not self.size:
            return array
        if array.ndim == 3:
            return np.stack([_window(channel, self.centre, self.size, mode) for channel in array])
        return _window(array, self.centre, self.size, mode)

    def case(self, pixels: np.ndarray, mask: np.ndarray, tumor_type: str, grade: str | None = None,
             anatomy: np.ndarray | None = None) -> LabelledCase:
        """The cut of slice ``z`` of a ``(Z, H, W)`` stack, its mask and its ``(Z, K, H, W)`` anatomy features
        (when given) as a :class:`LabelledCase`: the image and the features edge-padded, the mask zero-padded."""
        return LabelledCase(self.apply(pixels[self.z], "edge").astype(np.float32),
                            self.apply((mask[self.z] > 0).astype(np.float32), "constant"), tumor_type, grade,
                            None if anatomy is None else self.apply(anatomy[self.z], "edge"))


def lesion_cuts(mask: np.ndarray, count: int, window: int | None = None, context: float = 0.0) -> list[LesionCut]:
    """The ``count`` slices of a ``(Z, H, W)`` ``mask`` with the largest lesion area, largest first, and where to
    cut them: with ``window``, a square centred on each slice's lesion, of :func:`support_size` of the chosen slices'
    lesions, ``window`` and ``context`` (so every cut of one call has one size). Slices without lesion are never
    chosen."""
    areas = (mask > 0).reshape(len(mask), -1).sum(axis=1).astype(np.int64)
    chosen = [int(z) for z in np.argsort(-areas, kind="stable")[:count] if areas[z] > 0]
    size = support_size([mask[z] > 0 for z in chosen], window, context) if window else 0
    cuts = []
    for z in chosen:
        ys, xs = np.nonzero(mask[z] > 0)
        cuts.append(LesionCut(z, (round(float(ys.mean())), round(float(xs.mean()))), size))
    return cuts


def lesion_slices(pixels: np.ndarray, mask: np.ndarray, count: int, window: int | None = None,
                  context: float = 0.0) -> list[tuple[np.ndarray, np.ndarray]]:
    """The ``count`` slices with the largest lesion area, largest first, as ``(image, mask)`` 2D pairs, cut as
    :func:`lesion_cuts` says (the image edge-padded, the mask zero-padded at the border)."""
    cases = (cut.case(pixels, mask, "") for cut in lesion_cuts(mask, count, window, context))
    return [(case.image, case.mask) for case in cases]


def largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 26-connected component of a binary volume (empty stays empty)."""
    labelled, count = ndimage.label(mask > 0, structure=np.ones((3,) * mask.ndim))
    if count <= 1:
        return (labelled > 0).astype(np.uint8)
    sizes = np.bincount(labelled.ravel())[1:]
    return (labelled == 1 + int(np.argmax(sizes))).astype(np.uint8)
