"""Short CT stacks through a phantom tumour (:mod:`hope.phantoms.tumor_types`), to store in Orthanc as series.

A 2D phantom case is repeated over a few axial slices with fresh noise on each, and its ``[0, 1]`` intensities
are mapped back to HU through the task's window, so the few-shot tasks see the same slice they were trained on.
These are stand-ins for tests and demos, not anatomy: the lesion runs through every slice.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hope.fewshot.config import SliceSpec
from hope.phantoms.tumor_types import TUMOR_TYPES, render_case


@dataclass(frozen=True)
class PhantomStack:
    """A phantom CT stack: ``hu`` ``(z, y, x)`` int16, lesion ``mask`` ``(z, y, x)`` uint8, ``spacing`` (x, y, z) mm."""

    hu: np.ndarray
    mask: np.ndarray
    spacing: tuple[float, float, float]
    tumor_type: str
    grade: str


def phantom_stack(tumor_type: str, seed: int, spec: SliceSpec, slices: int = 6, slice_mm: float = 2.0,
                  size: int = 64) -> PhantomStack:
    """``slices`` axial slices through one seeded phantom case of ``tumor_type`` (a key of ``TUMOR_TYPES``)."""
    if tumor_type not in TUMOR_TYPES:
        raise ValueError(f"unknown phantom tumour type {tumor_type!r}; known: {', '.join(TUMOR_TYPES)}")
    case = render_case(TUMOR_TYPES[tumor_type], seed, size)
    rng = np.random.default_rng([seed, slices])
    unit = case.image[None] + 0.01 * rng.standard_normal((slices, size, size))
    lo, hi = spec.intensity_range
    hu = np.round(lo + np.clip(unit, 0.0, 1.0) * (hi - lo)).astype(np.int16)
    mask = np.repeat(case.mask[None], slices, axis=0).astype(np.uint8)
    spacing = (spec.pixel_spacing_mm, spec.pixel_spacing_mm, slice_mm)
    return PhantomStack(hu, mask, spacing, tumor_type, str(case.grade))
