"""Where a neck phantom's parts sit: sizes and positions in mm, drawn from a :class:`PhantomSpec`.

Voxel ``(k, j, i)`` lies at ``(i * sx, j * sy, k * sz)`` mm (x left, y posterior, z superior), so z index 0 is
the most inferior slice. The column holds C1..C7 and T1 below them; the C1/C2 joint has no disc. C1's top down to
the middle of T1 is fitted into the field of view (compressed along z when it is too short, ``z_scale < 1``,
centred when it is longer); T1's lower half may leave the volume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from hope.phantoms.spec import VERTEBRAE, PhantomSpec

#: Every vertebra drawn, superior to inferior: C1..C7, then T1 (bone only, never a label of its own).
LEVELS = (*VERTEBRAE, "T1")
#: The intervertebral discs, superior to inferior (none between C1 and C2).
DISCS = tuple(f"disc_{upper}_{lower}" for upper, lower in zip(LEVELS[1:-1], LEVELS[2:], strict=True))

CANAL_GAP_MM = 1.0  # between the largest body and the canal
_FAT_MM = (3.0, 8.0)  # subcutaneous fat layer
_TRACHEA_RADIUS_MM = (5.0, 8.0)
_MUSCLE_WIDTH_MM = (40.0, 56.0)  # paraspinal muscles behind the canal
_MUSCLE_DEPTH_MM = (24.0, 32.0)
_CORD_ANTERIOR = (0.2, 0.5)  # cord centre shift, as a fraction of the canal depth left beside the cord
_TUMOR_ANISOTROPY = (0.75, 1.25)
_TUMOR_WAVES = 4  # low-frequency perturbations of the tumour surface
_TUMOR_WAVE_AMPLITUDE = (0.03, 0.08)
TUMOR_KINDS = ("lytic", "sclerotic")


@dataclass(frozen=True)
class Grid:
    """Voxel-centre coordinates in mm, shaped to broadcast against ``(z, y, x)``."""

    x: np.ndarray  # (1, 1, nx)
    y: np.ndarray  # (1, ny, 1)
    z: np.ndarray  # (nz,)
    spacing: tuple[float, float, float]

    @classmethod
    def of(cls, spec: PhantomSpec) -> Grid:
        """The grid of ``spec``'s shape and spacing."""
        nz, ny, nx = spec.shape
        sx, sy, sz = (float(s) for s in spec.spacing)
        axes = [np.arange(n, dtype=np.float32) * s for n, s in ((nx, sx), (ny, sy), (nz, sz))]
        return cls(axes[0].reshape(1, 1, nx), axes[1].reshape(1, ny, 1), axes[2], (sx, sy, sz))

    @property
    def shape(self) -> tuple[int, int, int]:
        return self.z.size, self.y.size, self.x.size

    @property
    def centre_xy(self) -> tuple[float, float]:
        return float(self.x.max()) / 2, float(self.y.max()) / 2

    def slab(self, z_low: float, z_high: float) -> slice:
        """The slices whose centres lie in ``[z_low, z_high]`` mm (possibly empty)."""
        sz = self.spacing[2]
        start = max(0, math.ceil(z_low / sz - 1e-6))
        stop = min(len(self.z), math.floor(z_high / sz + 1e-6) + 1)
        return slice(start, max(start, stop))


@dataclass(frozen=True)
class Neck:
    """Elliptic neck: fat layer, soft tissue, an air-filled trachea and a paraspinal muscle block."""

    semi_x: float
    semi_y: float
    fat: float
    trachea_radius: float
    muscle_semi_u: float
    muscle_semi_v: float

    def as_params(self) -> dict[str, Any]:
        return {
            "semi_axes_mm": [self.semi_x, self.semi_y],
            "fat_mm": self.fat,
            "trachea_radius_mm": self.trachea_radius,
            "muscle_semi_axes_mm": [self.muscle_semi_u, self.muscle_semi_v],
        }


@dataclass(frozen=True)
class Vertebra:
    """One vertebra: its body's z range and in-plane semi-axes, and its size relative to C1."""

    name: str
    z_low: float
    z_high: float
    semi_x: float
    semi_y: float
    size: float

    @property
    def z_centre(self) -> float:
        return (self.z_low + self.z_high) / 2

    @property
    def semi_z(self) -> float:
        return (self.z_high - self.z_low) / 2

    def as_params(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "z_range_mm": [self.z_low, self.z_high],
            "body_semi_axes_mm": [self.semi_x, self.semi_y, self.semi_z],
        }


@dataclass(frozen=True)
class Column:
    """Where the spine sits: a lordotic centre line, an in-plane rotation, the canal and the cord in it."""

    centre_x: float
    base_y: float
    lordosis: float
    angle: float  # radians, about z
    z_low: float
    z_high: float
    z_scale: float
    canal_semi_x: float
    canal_semi_y: float
    canal_offset: float  # canal centre, mm posterior of the body centres
    cord_semi_x: float
    cord_semi_y: float
    cord_anterior: float  # cord centre, mm anterior of the canal centre

    def centre_y(self, z: np.ndarray | float) -> np.ndarray | float:
        """Row-axis centre of the vertebral bodies: the mid column bulges anteriorly (lower y)."""
        half = (self.z_high - self.z_low) / 2
        t = np.clip((z - (self.z_low + half)) / half, -1.0, 1.0)
        return self.base_y - self.lordosis * (1.0 - t**2)

    def to_global(self, u: float, v: float, z: float) -> tuple[float, float]:
        """Column-frame in-plane offsets ``(u, v)`` at height ``z`` -> volume ``(x, y)`` mm."""
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        return self.centre_x + cos * u - sin * v, float(self.centre_y(z)) + sin * u + cos * v

    def local(self, grid: Grid, zs: slice) -> tuple[np.ndarray, np.ndarray]:
        """Column-frame coordinates ``(u, v)`` (lateral, posterior) of every voxel of slices ``zs``."""
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        dx = grid.x - self.centre_x
        dy = grid.y - np.asarray(self.centre_y(grid.z[zs]), dtype=np.float32)[:, None, None]
        return cos * dx + sin * dy, cos * dy - sin * dx

    def as_params(self) -> dict[str, Any]:
        return {
            "centre_x_mm": self.centre_x,
            "base_y_mm": self.base_y,
            "lordosis_mm": self.lordosis,
            "rotation_deg": math.degrees(self.angle),
            "z_range_mm": [self.z_low, self.z_high],
            "z_scale": self.z_scale,
            "canal_semi_axes_mm": [self.canal_semi_x, self.canal_semi_y],
            "canal_offset_mm": self.canal_offset,
            "cord_semi_axes_mm": [self.cord_semi_x, self.cord_semi_y],
            "cord_anterior_mm": self.cord_anterior,
        }


@dataclass(frozen=True)
class Tumor:
    """A blob in a vertebral body: a rotated ellipsoid with a wavy surface."""

    host: str
    kind: str  # one of TUMOR_KINDS
    centre: tuple[float, float, float]  # (x, y, z) mm
    radius: float
    semi_axes: tuple[float, float, float]
    rotation: np.ndarray  # (3, 3), volume frame -> tumour frame
    waves: np.ndarray  # (W, 3) angular frequencies of the surface perturbation
    phases: np.ndarray  # (W,)
    amplitudes: np.ndarray  # (W,)

    @property
    def extent(self) -> float:
        """Radius of a sphere that surely contains the tumour."""
        return max(self.semi_axes) * (1.0 + float(self.amplitudes.sum()))

    def as_params(self, grid: Grid) -> dict[str, Any]:
        index = [c / s for c, s in zip(self.centre, grid.spacing, strict=True)][::-1]
        return {
            "vertebra": self.host,
            "kind": self.kind,
            "centre_mm": list(self.centre),
            "centre_index": index,
            "radius_mm": self.radius,
            "semi_axes_mm": list(self.semi_axes),
        }


@dataclass(frozen=True)
class Layout:
    """Everything drawn for one phantom, before any voxel is painted."""

    grid: Grid
    neck: Neck
    vertebrae: tuple[Vertebra, ...]  # LEVELS order: C1 (superior) .. T1 (inferior)
    column: Column
    tumor: Tumor | None

    def disc_pairs(self) -> list[tuple[str, Vertebra, Vertebra]]:
        """``(disc name, upper vertebra, lower vertebra)`` for every disc of :data:`DISCS`."""
        return [(name, self.vertebrae[i + 1], self.vertebrae[i + 2]) for i, name in enumerate(DISCS)]


def sample_layout(rng: np.random.Generator, spec: PhantomSpec) -> Layout:
    """Draw a layout from ``spec``: neck, vertebrae, column, then (with ``tumor_probability``) a tumour."""
    grid = Grid.of(spec)
    neck = _sample_neck(rng, spec)
    vertebrae, z_scale = _sample_vertebrae(rng, spec, grid)
    column = _sample_column(rng, spec, grid, vertebrae, z_scale)
    tumor = _sample_tumor(rng, spec, column, vertebrae) if rng.random() < spec.tumor_probability else None
    return Layout(grid, neck, vertebrae, column, tumor)


def _sample_neck(rng: np.random.Generator, spec: PhantomSpec) -> Neck:
    return Neck(
        semi_x=float(rng.uniform(*spec.neck_width_mm)) / 2,
        semi_y=float(rng.uniform(*spec.neck_depth_mm)) / 2,
        fat=float(rng.uniform(*_FAT_MM)),
        trachea_radius=float(rng.uniform(*_TRACHEA_RADIUS_MM)),
        muscle_semi_u=float(rng.uniform(*_MUSCLE_WIDTH_MM)) / 2,
        muscle_semi_v=float(rng.uniform(*_MUSCLE_DEPTH_MM)) / 2,
    )


def _sample_vertebrae(
    rng: np.random.Generator, spec: PhantomSpec, grid: Grid
) -> tuple[tuple[Vertebra, ...], float]:
    """C1..T1 with sizes, stacked from T1 (inferior) up, C1's top to T1's middle fitted into the field of view."""
    ranges = (spec.body_width_mm, spec.body_depth_mm, spec.body_height_mm)
    width, depth, height = (float(rng.uniform(*r)) for r in ranges)
    growth = float(rng.uniform(*spec.size_growth))
    sizes = 1.0 + (growth - 1.0) * np.arange(len(LEVELS)) / (len(VERTEBRAE) - 1)
    gaps = rng.uniform(*spec.disc_height_mm, size=len(LEVELS) - 1)  # gaps[i]: below LEVELS[i]
    heights = height * sizes
    length = float(heights[:-1].sum() + gaps.sum() + heights[-1] / 2)
    available = float(grid.z[-1]) - 2 * grid.spacing[2]  # keep one slice free at each end
    z_scale = min(1.0, available / length)
    z = (float(grid.z[-1]) - z_scale * length) / 2 - z_scale * float(heights[-1]) / 2
    stacked = []
    for i in reversed(range(len(LEVELS))):
        size = float(sizes[i])
        top = z + z_scale * float(heights[i])
        stacked.append(Vertebra(LEVELS[i], z, top, width / 2 * size, depth / 2 * size, size))
        z = top + z_scale * float(gaps[i - 1]) if i else top
    return tuple(stacked[::-1]), z_scale


def _sample_column(
    rng: np.random.Generator,
    spec: PhantomSpec,
    grid: Grid,
    vertebrae: tuple[Vertebra, ...],
    z_scale: float,
) -> Column:
    centre_x, centre_y = grid.centre_xy
    shift_x, shift_y = rng.uniform(*spec.shift_mm, size=2)
    canal_semi_y = float(rng.uniform(*spec.canal_depth_mm)) / 2
    lordosis = float(rng.uniform(*spec.lordosis_mm))
    angle = math.radians(float(rng.uniform(*spec.rotation_deg)))
    canal_semi_x = float(rng.uniform(*spec.canal_width_mm)) / 2
    cord_semi_x = float(rng.uniform(*spec.cord_width_mm)) / 2
    cord_semi_y = float(rng.uniform(*spec.cord_depth_mm)) / 2
    cord_anterior = (canal_semi_y - cord_semi_y) * float(rng.uniform(*_CORD_ANTERIOR))
    return Column(
        centre_x=centre_x + float(shift_x),
        base_y=centre_y - 2.0 + float(shift_y),
        lordosis=lordosis,
        angle=angle,
        z_low=vertebrae[-1].z_low,
        z_high=vertebrae[0].z_high,
        z_scale=z_scale,
        canal_semi_x=canal_semi_x,
        canal_semi_y=canal_semi_y,
        canal_offset=max(v.semi_y for v in vertebrae) + CANAL_GAP_MM + canal_semi_y,
        cord_semi_x=cord_semi_x,
        cord_semi_y=cord_semi_y,
        cord_anterior=cord_anterior,
    )


def _sample_tumor(
    rng: np.random.Generator, spec: PhantomSpec, column: Column, vertebrae: tuple[Vertebra, ...]
) -> Tumor:
    """A blob centred inside a random cervical body (anywhere from its centre to its surface)."""
    host = vertebrae[int(rng.integers(len(VERTEBRAE)))]
    direction = rng.normal(size=3)
    reach = direction / np.linalg.norm(direction) * rng.uniform(0.0, 1.0)
    u, v, dz = reach * (host.semi_x, host.semi_y, host.semi_z)
    z = host.z_centre + float(dz)
    x, y = column.to_global(float(u), float(v), z)
    radius = float(rng.uniform(*spec.tumor_radius_mm))
    return Tumor(
        host=host.name,
        kind=TUMOR_KINDS[int(rng.random() < 0.5)],
        centre=(x, y, z),
        radius=radius,
        semi_axes=tuple(float(a) for a in radius * rng.uniform(*_TUMOR_ANISOTROPY, size=3)),
        rotation=_random_rotation(rng),
        waves=rng.normal(scale=2.0, size=(_TUMOR_WAVES, 3)),
        phases=rng.uniform(0.0, 2 * math.pi, size=_TUMOR_WAVES),
        amplitudes=rng.uniform(*_TUMOR_WAVE_AMPLITUDE, size=_TUMOR_WAVES),
    )


def _random_rotation(rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(3, 3)))
    q = q * np.sign(np.diag(r))
    return q if np.linalg.det(q) > 0 else -q
