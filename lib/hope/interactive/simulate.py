"""A simulated annotator: scribbles drawn from the ground truth where a prediction of one structure is wrong.

Each call of :func:`next_scribble` looks at the errors of one structure (label ``value``): the false negatives
(structure in the ground truth, not in the prediction) and the false positives (the opposite). It takes the largest
connected error region and draws a short brush stroke in its interior, on one slice, the way an annotator corrects
a suggestion: a foreground scribble in a missed region, a background scribble in a wrongly included one.

The stroke is centred on the region's deepest voxel (Euclidean distance transform in mm, ties broken by ``rng``),
runs along a random in-slice direction for up to ``length_mm`` while it stays inside the region, and is widened
by an in-slice brush of radius ``brush_mm``, clipped to the region. The same ``rng`` state gives the same stroke.
Arrays may be in any axis order; ``spacing`` (mm) and ``slice_axis`` follow the arrays' axes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

Kind = Literal["auto", "foreground", "background"]


@dataclass(frozen=True)
class Scribble:
    """One simulated stroke: its voxels and whether it marks the structure (foreground) or not (background)."""

    mask: np.ndarray
    foreground: bool


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice overlap of two boolean masks; 1.0 when both are empty."""
    total = int(a.sum()) + int(b.sum())
    return 1.0 if total == 0 else 2.0 * int(np.logical_and(a, b).sum()) / total


def error_regions(prediction: np.ndarray, ground_truth: np.ndarray, value: int) -> tuple[np.ndarray, np.ndarray]:
    """False-negative and false-positive masks of label ``value``."""
    predicted, expected = prediction == value, ground_truth == value
    return expected & ~predicted, predicted & ~expected


def _largest_component(mask: np.ndarray) -> np.ndarray:
    """The largest 6-connected component of ``mask`` (empty if ``mask`` is)."""
    components, count = ndimage.label(mask)
    if count == 0:
        return mask.copy()
    sizes = np.bincount(components.ravel())[1:]
    return components == int(np.argmax(sizes)) + 1


def _brush(spacing: Sequence[float], radius_mm: float, slice_axis: int) -> np.ndarray:
    """An in-slice disc of ``radius_mm`` as a structuring element (one voxel thick along ``slice_axis``)."""
    half = [0 if axis == slice_axis else int(radius_mm // s) for axis, s in enumerate(spacing)]
    grids = np.meshgrid(*(np.arange(-h, h + 1) * s for h, s in zip(half, spacing, strict=True)), indexing="ij")
    return sum(g**2 for g in grids) <= radius_mm**2 + 1e-9


def _stroke(
    region: np.ndarray,
    rng: np.random.Generator,
    spacing: Sequence[float],
    length_mm: float,
    brush_mm: float,
    slice_axis: int,
) -> np.ndarray:
    """A brush stroke through the deepest voxel of ``region``, clipped to it (computed in its bounding box)."""
    hits = np.nonzero(region)
    box = tuple(slice(max(int(h.min()) - 1, 0), int(h.max()) + 2) for h in hits)
    inside = region[box]
    depth = ndimage.distance_transform_edt(inside, sampling=spacing)
    deepest = np.argwhere(depth >= depth.max() - 1e-6)
    centre = deepest[int(rng.integers(len(deepest)))].astype(float)
    in_plane = [axis for axis in range(region.ndim) if axis != slice_axis]
    angle = rng.uniform(0.0, np.pi)
    direction = np.zeros(region.ndim)
    direction[in_plane[0]], direction[in_plane[1]] = np.cos(angle), np.sin(angle)
    step_mm = min(spacing) / 2
    step = direction * step_mm / np.asarray(spacing, dtype=float)  # in voxels
    line = np.zeros_like(inside)
    line[tuple(centre.astype(int))] = True
    for sign in (1, -1):
        for k in range(1, int(length_mm / 2 / step_mm) + 1):
            voxel = tuple(np.rint(centre + sign * k * step).astype(int))
            if any(not 0 <= v < n for v, n in zip(voxel, inside.shape, strict=True)) or not inside[voxel]:
                break
            line[voxel] = True
    stroke = np.zeros_like(region)
    stroke[box] = ndimage.binary_dilation(line, structure=_brush(spacing, brush_mm, slice_axis)) & inside
    return stroke


def next_scribble(
    prediction: np.ndarray,
    ground_truth: np.ndarray,
    value: int,
    rng: np.random.Generator,
    spacing: Sequence[float] = (1.0, 1.0, 1.0),
    kind: Kind = "auto",
    length_mm: float = 15.0,
    brush_mm: float = 2.0,
    slice_axis: int = 0,
) -> Scribble | None:
    """The annotator's next stroke for label ``value``, or ``None`` when there is nothing left to correct.

    ``kind="auto"`` corrects the larger of the largest false-negative and largest false-positive regions
    (foreground on a tie); ``"foreground"`` and ``"background"`` only look at one of them.
    """
    if prediction.shape != ground_truth.shape:
        raise ValueError(f"prediction {prediction.shape} and ground truth {ground_truth.shape} differ in shape")
    missed, extra = (_largest_component(m) for m in error_regions(prediction, ground_truth, value))
    missed_size = int(missed.sum()) if kind != "background" else 0
    extra_size = int(extra.sum()) if kind != "foreground" else 0
    if missed_size == extra_size == 0:
        return None
    foreground = missed_size >= extra_size
    region = missed if foreground else extra
    return Scribble(_stroke(region, rng, spacing, length_mm, brush_mm, slice_axis), foreground)


def paint(scribbles: np.ndarray, scribble: Scribble, background: int, foreground: int) -> None:
    """In place: write ``scribble`` into a scribbles volume with the given scribble values (later strokes win)."""
    scribbles[scribble.mask] = foreground if scribble.foreground else background
