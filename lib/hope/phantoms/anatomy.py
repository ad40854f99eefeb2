"""One seeded neck anatomy, painted as a tissue map and a structure map that CT and MR renderings share.

Tissue map (:data:`TISSUES`, uint8 ``(z, y, x)``): what a voxel is made of, i.e. what decides its intensity in
some modality. A SynthSeg-style generator can draw a random intensity per class.

===================  =====  ==============================================================================
tissue               value  where
===================  =====  ==============================================================================
``background``       0      air outside the neck
``airway``           1      air inside the neck (trachea)
``fat``              2      subcutaneous fat layer
``soft_tissue``      3      the rest of the neck (vessels, glands, pharynx... lumped)
``muscle``           4      paraspinal muscles behind the spine
``csf``              5      cerebrospinal fluid: the canal around the cord
``cord``             6      spinal cord
``disc_annulus``     7      outer ring of an intervertebral disc
``disc_nucleus``     8      core of a disc (T2-bright)
``cortical_bone``    9      vertebral body rims and posterior arches
``cancellous_bone``  10     vertebral marrow
``tumor``            11     the tumour, whatever it replaced
===================  =====  ==============================================================================

Structure map (:data:`STRUCTURES`): which anatomical structure a voxel belongs to, turned into a label volume
for a caller's label map by :meth:`Anatomy.labels`. Any name of :data:`LABEL_NAMES` found in the map is painted;
``spinal_canal`` (CT's whole canal) stands for ``canal`` (the CSF space) and ``cord`` wherever the map lacks
those. T1 is bone without a label, and the tumour overrides whatever it covers.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np

from hope.phantoms.layout import DISCS, LEVELS, Column, Grid, Layout, Neck, Tumor, Vertebra, sample_layout
from hope.phantoms.spec import VERTEBRAE, PhantomSpec

TISSUES: Mapping[str, int] = MappingProxyType({
    "background": 0,
    "airway": 1,
    "fat": 2,
    "soft_tissue": 3,
    "muscle": 4,
    "csf": 5,
    "cord": 6,
    "disc_annulus": 7,
    "disc_nucleus": 8,
    "cortical_bone": 9,
    "cancellous_bone": 10,
    "tumor": 11,
})
#: Structures of the structure map, whose voxel value is the index here plus one (0 is none).
STRUCTURES = (*LEVELS, *DISCS, "canal", "cord", "tumor")
#: Label names the generators paint when a caller's label map holds them.
LABEL_NAMES = (*VERTEBRAE, *DISCS, "spinal_canal", "canal", "cord", "tumor")
_FALLBACK = {"canal": "spinal_canal", "cord": "spinal_canal"}  # structure -> label used when its own is absent
_STRUCTURE_IDS = {name: index for index, name in enumerate(STRUCTURES, start=1)}

_ARCH_MM = 3.0  # thickness of the posterior arch ring
_CORTEX_MM = 1.5  # cortical rim of the vertebral bodies
_SPINOUS_MM = 8.0  # length of the spinous process at C1 size
_NUCLEUS = 0.6  # nucleus semi-axes, as a fraction of the disc's


@dataclass(frozen=True)
class Anatomy:
    """A drawn layout painted on its grid: the tissue map and the structure map, both uint8 ``(z, y, x)``."""

    layout: Layout
    tissues: np.ndarray
    structures: np.ndarray

    def labels(self, values: Mapping[str, int]) -> np.ndarray:
        """The label volume for ``values`` (label name -> voxel value, as :func:`label_values` returns)."""
        return _label_table(values)[self.structures]

    def params(self, values: Mapping[str, int]) -> dict[str, Any]:
        """Plain-JSON geometry (mm, ``[x, y, z]`` positions) with the label value of each vertebra and disc."""
        table = _label_table(values)
        layout, grid = self.layout, self.layout.grid
        return {
            "z_index_0": "inferior",
            "neck": layout.neck.as_params(),
            "column": layout.column.as_params(),
            "vertebrae": [v.as_params() | {"label": int(table[_STRUCTURE_IDS[v.name]])} for v in layout.vertebrae],
            "discs": [
                {"name": name, "label": int(table[_STRUCTURE_IDS[name]]), "z_range_mm": [lower.z_high, upper.z_low]}
                for name, upper, lower in layout.disc_pairs()
            ],
            "tumor": None if layout.tumor is None else layout.tumor.as_params(grid),
        }


def _label_table(values: Mapping[str, int]) -> np.ndarray:
    """Structure-map value -> label value (0 for structures ``values`` does not name)."""
    table = np.zeros(len(STRUCTURES) + 1, dtype=np.uint8)
    for name, index in _STRUCTURE_IDS.items():
        table[index] = values.get(name, values.get(_FALLBACK.get(name, ""), 0))
    return table


def label_values(labels: Mapping[str, int], required: Sequence[str], phantom: str) -> dict[str, int]:
    """The values of every name of ``labels`` the generators paint, checked; ``phantom`` names the generator.

    Raises ``ValueError`` naming the missing ones when ``labels`` lacks a ``required`` name, and when a painted
    value is outside 1..255 or two painted names share a value.
    """
    missing = [name for name in required if name not in labels]
    if missing:
        raise ValueError(f"label map lacks {', '.join(missing)}; a {phantom} needs {', '.join(required)}")
    values = {name: int(labels[name]) for name in LABEL_NAMES if name in labels}
    out_of_range = {name: v for name, v in values.items() if not 0 < v <= 255}
    if out_of_range:
        raise ValueError(f"label values must lie in 1..255 (uint8, 0 is background), got {out_of_range}")
    if len(set(values.values())) != len(values):
        raise ValueError(f"label values must be distinct, got {values}")
    return values


def draw_anatomy(rng: np.random.Generator, spec: PhantomSpec) -> Anatomy:
    """Draw a layout from ``spec`` with ``rng`` and paint it: neck, spine, then the tumour over everything."""
    layout = sample_layout(rng, spec)
    canvas = _Canvas(
        np.full(spec.shape, TISSUES["background"], dtype=np.uint8), np.zeros(spec.shape, dtype=np.uint8)
    )
    _paint_neck(canvas, layout.grid, layout.neck, layout.column)
    _paint_spine(canvas, layout)
    if layout.tumor is not None:
        _paint_tumor(canvas, layout.grid, layout.tumor)
    return Anatomy(layout, canvas.tissues, canvas.structures)


@dataclass(frozen=True)
class _Canvas:
    tissues: np.ndarray
    structures: np.ndarray

    def paint(
        self, region: slice | tuple[slice, ...], mask: np.ndarray, tissue: str, structure: str | None = None
    ) -> None:
        """Set ``tissue`` (and ``structure``) where ``mask`` holds, ``mask`` covering ``region`` of the volume."""
        self.tissues[region][mask] = TISSUES[tissue]
        if structure is not None:
            self.structures[region][mask] = _STRUCTURE_IDS[structure]


def _ellipse(u: np.ndarray, v: np.ndarray, semi_u: float, semi_v: float) -> np.ndarray:
    return (u / semi_u) ** 2 + (v / semi_v) ** 2 <= 1.0


def _paint_neck(canvas: _Canvas, grid: Grid, neck: Neck, column: Column) -> None:
    """Fat-lined elliptic soft-tissue neck, paraspinal muscles behind the canal and an air-filled trachea.

    The neck and trachea are the same on every slice; the muscles follow the column's lordosis and rotation.
    """
    cx, cy = grid.centre_xy
    x, y = grid.x[0] - cx, grid.y[0] - cy
    whole = slice(None)

    def every_slice(mask: np.ndarray) -> np.ndarray:
        return np.broadcast_to(mask, grid.shape)

    inner = _ellipse(x, y, neck.semi_x - neck.fat, neck.semi_y - neck.fat)
    canvas.paint(whole, every_slice(_ellipse(x, y, neck.semi_x, neck.semi_y)), "fat")
    canvas.paint(whole, every_slice(inner), "soft_tissue")
    u, v = column.local(grid, whole)
    muscle_v = column.canal_offset + column.canal_semi_y + 0.8 * neck.muscle_semi_v
    canvas.paint(whole, _ellipse(u, v - muscle_v, neck.muscle_semi_u, neck.muscle_semi_v) & inner, "muscle")
    trachea_y = -0.7 * neck.semi_y
    canvas.paint(whole, every_slice(_ellipse(x, y - trachea_y, neck.trachea_radius, neck.trachea_radius)), "airway")


def _paint_spine(canvas: _Canvas, layout: Layout) -> None:
    """Canal and cord, discs, then each vertebra (arch before body, so the body wins where they meet)."""
    grid, column = layout.grid, layout.column
    zs = grid.slab(column.z_low, column.z_high)
    u, v = column.local(grid, zs)
    v = v - column.canal_offset
    canvas.paint(zs, _ellipse(u, v, column.canal_semi_x, column.canal_semi_y), "csf", "canal")
    cord = _ellipse(u, v + column.cord_anterior, column.cord_semi_x, column.cord_semi_y)
    canvas.paint(zs, cord, "cord", "cord")
    for name, upper, lower in layout.disc_pairs():
        _paint_disc(canvas, grid, column, name, upper, lower)
    for vertebra in layout.vertebrae:
        _paint_arch(canvas, grid, column, vertebra)
        _paint_body(canvas, grid, column, vertebra)


def _paint_disc(canvas: _Canvas, grid: Grid, column: Column, name: str, upper: Vertebra, lower: Vertebra) -> None:
    """Intervertebral disc reaching into the rounded endplates: an annulus around a smaller nucleus."""
    semi_u, semi_v = (upper.semi_x + lower.semi_x) / 2, (upper.semi_y + lower.semi_y) / 2
    for tissue, reach, scale in (("disc_annulus", 0.25, 1.0), ("disc_nucleus", 0.1, _NUCLEUS)):
        zs = grid.slab(lower.z_high - reach * lower.semi_z, upper.z_low + reach * upper.semi_z)
        u, v = column.local(grid, zs)
        canvas.paint(zs, _ellipse(u, v, scale * semi_u, scale * semi_v), tissue, name)


def _paint_body(canvas: _Canvas, grid: Grid, column: Column, vertebra: Vertebra) -> None:
    """Rounded-cylinder vertebral body: cancellous core inside a cortical rim."""
    zs = grid.slab(vertebra.z_low, vertebra.z_high)
    u, v = column.local(grid, zs)
    dz = (grid.z[zs] - vertebra.z_centre)[:, None, None]
    semi = np.array([vertebra.semi_x, vertebra.semi_y, vertebra.semi_z])
    rim = max(_CORTEX_MM, min(grid.spacing[:2]))  # at least one voxel, so the rim shows
    core_semi = np.maximum(semi - rim, semi / 2)
    canvas.paint(zs, _rounded_cylinder(u, v, dz, semi), "cortical_bone", vertebra.name)
    canvas.paint(zs, _rounded_cylinder(u, v, dz, core_semi), "cancellous_bone")


def _rounded_cylinder(u: np.ndarray, v: np.ndarray, dz: np.ndarray, semi: np.ndarray) -> np.ndarray:
    radial = (u / semi[0]) ** 2 + (v / semi[1]) ** 2
    return radial**2 + (dz / semi[2]) ** 4 <= 1.0


def _paint_arch(canvas: _Canvas, grid: Grid, column: Column, vertebra: Vertebra) -> None:
    """Posterior arch: a bony ring around the canal plus a spinous process, over 80 % of the body height."""
    zs = grid.slab(vertebra.z_centre - 0.8 * vertebra.semi_z, vertebra.z_centre + 0.8 * vertebra.semi_z)
    u, v = column.local(grid, zs)
    v = v - column.canal_offset
    sx, sy = column.canal_semi_x, column.canal_semi_y
    ring = _ellipse(u, v, sx + _ARCH_MM, sy + _ARCH_MM) & ~_ellipse(u, v, sx, sy)
    spinous_half = (_SPINOUS_MM * vertebra.size + _ARCH_MM) / 2
    spinous = _ellipse(u, v - sy - spinous_half, _ARCH_MM * 0.6, spinous_half)
    canvas.paint(zs, ring | spinous, "cortical_bone", vertebra.name)


def _paint_tumor(canvas: _Canvas, grid: Grid, tumor: Tumor) -> None:
    """Rotated ellipsoid whose radius is modulated by low-frequency waves over the direction sphere.

    The surface is star-shaped around the centre, so the blob is one piece; the voxel nearest the centre is
    always included, so even the smallest tumour is visible.
    """
    box = tuple(_tumor_range(c, tumor.extent, s, n) for c, s, n in
                zip(tumor.centre, grid.spacing, (grid.x.size, grid.y.size, grid.z.size), strict=True))
    dx = grid.x[..., box[0]] - tumor.centre[0]
    dy = grid.y[:, box[1]] - tumor.centre[1]
    dz = grid.z[box[2], None, None] - tumor.centre[2]
    rows = zip(tumor.rotation, tumor.semi_axes, strict=True)
    scaled = [(r[0] * dx + r[1] * dy + r[2] * dz) / a for r, a in rows]
    norm = np.sqrt(sum(q**2 for q in scaled))
    direction = [q / np.maximum(norm, 1e-6) for q in scaled]
    surface = 1.0 + sum(
        a * np.cos(w[0] * direction[0] + w[1] * direction[1] + w[2] * direction[2] + p)
        for w, p, a in zip(tumor.waves, tumor.phases, tumor.amplitudes, strict=True)
    )
    blob = norm <= surface
    nearest = tuple(
        min(max(round(c / s), r.start), r.stop - 1) - r.start
        for c, s, r in zip(tumor.centre[::-1], grid.spacing[::-1], box[::-1], strict=True)
    )
    blob[nearest] = True
    canvas.paint(box[::-1], blob, "tumor", "tumor")


def _tumor_range(centre: float, extent: float, spacing: float, size: int) -> slice:
    start = min(max(0, math.ceil((centre - extent) / spacing)), size - 1)
    stop = max(min(size, math.floor((centre + extent) / spacing) + 1), start + 1)
    return slice(start, stop)
