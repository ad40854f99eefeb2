"""Turning an :class:`~hope.phantoms.anatomy.Anatomy` into an image: per-tissue intensities, partial volume."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy import ndimage

from hope.phantoms.anatomy import STRUCTURES, TISSUES, Anatomy
from hope.phantoms.layout import TUMOR_KINDS
from hope.phantoms.spec import Range

_BLUR_MM = 0.6  # partial-volume blur, before noise


@dataclass
class Phantom:
    """One synthetic neck CT or MR, all arrays ``(z, y, x)``.

    ``image`` is int16 (HU for CT, arbitrary units >= 0 for MR), ``label`` uint8 in the caller's label values,
    ``tissues`` uint8 in :data:`~hope.phantoms.anatomy.TISSUES` values. ``params`` is plain JSON: the geometry
    (mm), ``modality``, ``contrast`` (MR: ``T1``/``T2``) and the intensities drawn.
    """

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    seed: int
    params: dict[str, Any]
    tissues: np.ndarray


@dataclass(frozen=True)
class Contrast:
    """Intensity ranges of one modality: a ``(low, high)`` range per tissue, the tumour's by its kind.

    Every vertebra draws its own marrow (``cancellous_bone``) value from that tissue's range.
    """

    tissues: Mapping[str, Range]  # every tissue of TISSUES but "tumor"
    tumor: Mapping[str, Range]  # by tumour kind

    def __post_init__(self) -> None:
        missing = (set(TISSUES) - {"tumor"} - set(self.tissues)) | (set(TUMOR_KINDS) - set(self.tumor))
        if missing:
            raise ValueError(f"a contrast needs a range for every tissue and tumour kind; missing {sorted(missing)}")


@dataclass(frozen=True)
class Intensities:
    """The values drawn for one phantom: one per tissue, and the marrow of each vertebra."""

    tissues: dict[str, float]
    marrow: dict[str, float]

    def as_params(self) -> dict[str, Any]:
        return {"intensities": dict(self.tissues), "marrow": dict(self.marrow)}


def draw_intensities(rng: np.random.Generator, contrast: Contrast, anatomy: Anatomy) -> Intensities:
    """One value per tissue (the tumour's from its kind's range, when there is a tumour) and per vertebra."""
    tissues = {name: float(rng.uniform(*contrast.tissues[name])) for name in TISSUES if name != "tumor"}
    tumor = anatomy.layout.tumor
    if tumor is not None:
        tissues["tumor"] = float(rng.uniform(*contrast.tumor[tumor.kind]))
    marrow = {v.name: float(rng.uniform(*contrast.tissues["cancellous_bone"])) for v in anatomy.layout.vertebrae}
    return Intensities(tissues, marrow)


def tissue_image(anatomy: Anatomy, intensities: Intensities) -> np.ndarray:
    """A float32 image holding each voxel's tissue value; marrow voxels hold their own vertebra's value."""
    n_tissues = len(TISSUES)
    table = np.zeros((len(STRUCTURES) + 1, n_tissues), dtype=np.float32)
    for name, value in intensities.tissues.items():
        table[:, TISSUES[name]] = value
    for row, structure in enumerate(STRUCTURES, start=1):
        if structure in intensities.marrow:
            table[row, TISSUES["cancellous_bone"]] = intensities.marrow[structure]
    index = anatomy.structures.astype(np.intp) * n_tissues + anatomy.tissues
    return table.ravel()[index]


def partial_volume(image: np.ndarray, spacing: tuple[float, float, float]) -> np.ndarray:
    """``image`` blurred by a gaussian of :data:`_BLUR_MM` (``spacing`` is ``(x, y, z)`` mm)."""
    return ndimage.gaussian_filter(image, sigma=[_BLUR_MM / s for s in spacing[::-1]])
