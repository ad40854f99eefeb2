"""Seeded synthetic neck CT volumes with cervical-spine labels (C1-C7, spinal canal, tumour).

Conventions
-----------
* Arrays are ``(z, y, x)`` = (slice, row, column); spacing is ``(x, y, z)`` in mm.
* Voxel ``(k, j, i)`` lies at ``(i * sx, j * sy, k * sz)`` mm, the frame that
  :func:`hope.dicom.series_writer.write_series` gives with ``origin=(0, 0, 0)``. In patient (LPS) terms x
  points to the patient's left, y posterior and z superior. So **z index 0 is the most inferior slice: C7
  sits at low z, C1 at high z**, and the spinal canal lies at higher row indices than the vertebral bodies.
* The column is sized in mm. When the z field of view is shorter than the sampled column, the column is
  compressed along z to fit (``params["column"]["z_scale"] < 1``); when it is longer, the column is centred
  and the slices above and below it hold neck soft tissue only (no bone, no canal).
* Every parameter in ``Phantom.params`` is plain JSON: positions are ``[x, y, z]`` mm in the frame above.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
from scipy import ndimage

VERTEBRAE = tuple(f"C{i}" for i in range(1, 8))
REQUIRED_LABELS = (*VERTEBRAE, "spinal_canal", "tumor")
MIN_SLICES = 24  # below this the seven vertebrae cannot each cover a few slices

Range = tuple[float, float]

_AIR_HU = -1000.0
_FAT_HU = -100.0
_SOFT_TISSUE_HU = 40.0
_CSF_HU = 20.0
_DISC_HU = 80.0
_CANCELLOUS_HU = (200.0, 350.0)
_CORTEX_HU = (600.0, 800.0)
_LYTIC_HU = (40.0, 120.0)
_SCLEROTIC_HU = (900.0, 1200.0)
_HU_LIMITS = (-1024, 3071)

_CORTEX_MM = 1.5  # cortical rim of the vertebral bodies
_ARCH_MM = 3.0  # thickness of the posterior arch ring
_CANAL_GAP_MM = 1.0  # between the largest body and the canal
_SPINOUS_MM = 8.0  # length of the spinous process at C1 size
_FAT_MM = (3.0, 8.0)  # subcutaneous fat layer
_TRACHEA_RADIUS_MM = (5.0, 8.0)
_BLUR_MM = 0.6  # partial-volume blur before noise
_TUMOR_ANISOTROPY = (0.75, 1.25)
_TUMOR_WAVES = 4  # low-frequency perturbations of the tumour surface
_TUMOR_WAVE_AMPLITUDE = (0.03, 0.08)


@dataclass(frozen=True)
class PhantomSpec:
    """Volume geometry and the ranges every phantom parameter is drawn from (uniformly).

    Sizes are in mm and describe C1; the other vertebrae grow linearly down to C7, which is ``size_growth``
    times larger. Needs at least :data:`MIN_SLICES` slices.
    """

    shape: tuple[int, int, int] = (40, 64, 64)
    spacing: tuple[float, float, float] = (1.8, 1.8, 2.5)
    noise_hu: Range = (10.0, 40.0)
    tumor_probability: float = 1.0
    tumor_radius_mm: Range = (3.0, 9.0)
    body_width_mm: Range = (15.0, 20.0)
    body_depth_mm: Range = (13.0, 16.0)
    body_height_mm: Range = (9.0, 12.0)
    disc_height_mm: Range = (3.0, 5.0)
    size_growth: Range = (1.05, 1.3)
    lordosis_mm: Range = (0.0, 6.0)
    rotation_deg: Range = (-8.0, 8.0)
    shift_mm: Range = (-4.0, 4.0)
    canal_width_mm: Range = (17.0, 22.0)
    canal_depth_mm: Range = (10.0, 13.0)
    neck_width_mm: Range = (95.0, 110.0)
    neck_depth_mm: Range = (85.0, 100.0)

    def __post_init__(self) -> None:
        if len(self.shape) != 3 or min(self.shape) < 1:
            raise ValueError(f"shape must be three positive voxel counts (z, y, x), got {self.shape}")
        if self.shape[0] < MIN_SLICES:
            raise ValueError(f"shape needs at least {MIN_SLICES} slices for C1-C7, got {self.shape[0]}")
        if len(self.spacing) != 3 or min(self.spacing) <= 0:
            raise ValueError(f"spacing must be three positive mm values (x, y, z), got {self.spacing}")
        if not 0.0 <= self.tumor_probability <= 1.0:
            raise ValueError(f"tumor_probability must lie in [0, 1], got {self.tumor_probability}")
        for field in fields(self):  # annotations are strings (postponed evaluation)
            bounds = getattr(self, field.name)
            if field.type == "Range" and (len(bounds) != 2 or bounds[0] > bounds[1]):
                raise ValueError(f"{field.name} must be a (low, high) pair with low <= high, got {bounds}")
        if self.noise_hu[0] < 0 or self.tumor_radius_mm[0] <= 0:
            raise ValueError("noise_hu must be >= 0 and tumor_radius_mm > 0")


@dataclass
class Phantom:
    """One synthetic neck CT: image (int16 HU) and label (uint8), both ``(z, y, x)``."""

    image: np.ndarray
    label: np.ndarray
    spacing: tuple[float, float, float]
    seed: int
    params: dict[str, Any]


@dataclass(frozen=True)
class _Grid:
    """Voxel-centre coordinates in mm, shaped to broadcast against ``(z, y, x)``."""

    x: np.ndarray  # (1, 1, nx)
    y: np.ndarray  # (1, ny, 1)
    z: np.ndarray  # (nz,)
    spacing: tuple[float, float, float]

    @classmethod
    def of(cls, spec: PhantomSpec) -> _Grid:
        nz, ny, nx = spec.shape
        sx, sy, sz = (float(s) for s in spec.spacing)
        axes = [np.arange(n, dtype=np.float32) * s for n, s in ((nx, sx), (ny, sy), (nz, sz))]
        return cls(axes[0].reshape(1, 1, nx), axes[1].reshape(1, ny, 1), axes[2], (sx, sy, sz))

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
class _Neck:
    semi_x: float
    semi_y: float
    fat: float
    trachea_radius: float

    def as_params(self) -> dict[str, Any]:
        return {
            "semi_axes_mm": [self.semi_x, self.semi_y],
            "fat_mm": self.fat,
            "trachea_radius_mm": self.trachea_radius,
        }


@dataclass(frozen=True)
class _Vertebra:
    name: str
    z_low: float
    z_high: float
    semi_x: float
    semi_y: float
    size: float  # growth factor relative to C1
    cancellous_hu: float

    @property
    def z_centre(self) -> float:
        return (self.z_low + self.z_high) / 2

    @property
    def semi_z(self) -> float:
        return (self.z_high - self.z_low) / 2


@dataclass(frozen=True)
class _Column:
    """Where the spine sits: a lordotic centre line, an in-plane rotation and the canal around it."""

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

    def centre_y(self, z: np.ndarray | float) -> np.ndarray | float:
        """Row-axis centre of the vertebral bodies: the mid column bulges anteriorly (lower y)."""
        half = (self.z_high - self.z_low) / 2
        t = np.clip((z - (self.z_low + half)) / half, -1.0, 1.0)
        return self.base_y - self.lordosis * (1.0 - t**2)

    def to_global(self, u: float, v: float, z: float) -> tuple[float, float]:
        """Column-frame in-plane offsets ``(u, v)`` at height ``z`` -> volume ``(x, y)`` mm."""
        cos, sin = math.cos(self.angle), math.sin(self.angle)
        return self.centre_x + cos * u - sin * v, float(self.centre_y(z)) + sin * u + cos * v

    def local(self, grid: _Grid, zs: slice) -> tuple[np.ndarray, np.ndarray]:
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
        }


@dataclass(frozen=True)
class _Tumor:
    host: str
    kind: str
    hu: float
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

    def as_params(self, grid: _Grid) -> dict[str, Any]:
        index = [c / s for c, s in zip(self.centre, grid.spacing, strict=True)][::-1]
        return {
            "vertebra": self.host,
            "kind": self.kind,
            "hu": self.hu,
            "centre_mm": list(self.centre),
            "centre_index": index,
            "radius_mm": self.radius,
            "semi_axes_mm": list(self.semi_axes),
        }


def generate_neck_ct(seed: int, labels: Mapping[str, int], spec: PhantomSpec = PhantomSpec()) -> Phantom:
    """Draw one phantom from ``spec``; the same ``seed`` always gives identical arrays.

    ``labels`` maps the task's label names (``C1``..``C7``, ``spinal_canal``, ``tumor``) to their voxel
    values. Vertebral bodies and posterior arches carry their vertebra's value, intervertebral discs are
    background, and the tumour overrides whatever it covers. A ``ValueError`` names any missing label.
    """
    values = _label_values(labels)
    rng = np.random.default_rng(seed)
    grid = _Grid.of(spec)
    neck = _sample_neck(rng, spec)
    vertebrae, z_scale = _sample_vertebrae(rng, spec, grid)
    column = _sample_column(rng, spec, grid, vertebrae, z_scale)
    tumor = _sample_tumor(rng, spec, column, vertebrae) if rng.random() < spec.tumor_probability else None
    cortex_hu = float(rng.uniform(*_CORTEX_HU))
    noise_hu = float(rng.uniform(*spec.noise_hu))

    image = np.full(spec.shape, _AIR_HU, dtype=np.float32)
    label = np.zeros(spec.shape, dtype=np.uint8)
    _paint_neck(image, grid, neck)
    _paint_spine(image, label, grid, column, vertebrae, values, cortex_hu)
    if tumor is not None:
        _paint_tumor(image, label, grid, tumor, values["tumor"])
    params = {
        "z_index_0": "inferior",
        "neck": neck.as_params(),
        "column": column.as_params(),
        "vertebrae": [_vertebra_params(v, values[v.name]) for v in vertebrae],
        "cortex_hu": cortex_hu,
        "noise_hu": noise_hu,
        "tumor": None if tumor is None else tumor.as_params(grid),
    }
    return Phantom(_finish(image, grid, noise_hu, rng), label, grid.spacing, seed, params)


def generate_cohort(
    n: int, labels: Mapping[str, int], spec: PhantomSpec = PhantomSpec(), first_seed: int = 0
) -> Iterator[Phantom]:
    """Yield ``n`` phantoms with seeds ``first_seed``, ``first_seed + 1``, ... (generated lazily)."""
    if n < 0:
        raise ValueError(f"cohort size must be >= 0, got {n}")
    for seed in range(first_seed, first_seed + n):
        yield generate_neck_ct(seed, labels, spec)


def _label_values(labels: Mapping[str, int]) -> dict[str, int]:
    missing = [name for name in REQUIRED_LABELS if name not in labels]
    if missing:
        raise ValueError(
            f"label map lacks {', '.join(missing)}; a neck CT phantom needs {', '.join(REQUIRED_LABELS)}"
        )
    values = {name: int(labels[name]) for name in REQUIRED_LABELS}
    out_of_range = {name: v for name, v in values.items() if not 0 < v <= 255}
    if out_of_range:
        raise ValueError(f"label values must lie in 1..255 (uint8, 0 is background), got {out_of_range}")
    if len(set(values.values())) != len(values):
        raise ValueError(f"label values must be distinct, got {values}")
    return values


def _sample_neck(rng: np.random.Generator, spec: PhantomSpec) -> _Neck:
    return _Neck(
        semi_x=float(rng.uniform(*spec.neck_width_mm)) / 2,
        semi_y=float(rng.uniform(*spec.neck_depth_mm)) / 2,
        fat=float(rng.uniform(*_FAT_MM)),
        trachea_radius=float(rng.uniform(*_TRACHEA_RADIUS_MM)),
    )


def _sample_vertebrae(
    rng: np.random.Generator, spec: PhantomSpec, grid: _Grid
) -> tuple[list[_Vertebra], float]:
    """C1..C7 with sizes, stacked from C7 (inferior) up and fitted into the field of view."""
    ranges = (spec.body_width_mm, spec.body_depth_mm, spec.body_height_mm)
    width, depth, height = (float(rng.uniform(*r)) for r in ranges)
    growth = float(rng.uniform(*spec.size_growth))
    sizes = 1.0 + (growth - 1.0) * np.linspace(0.0, 1.0, len(VERTEBRAE))
    discs = rng.uniform(*spec.disc_height_mm, size=len(VERTEBRAE) - 1)
    cancellous = rng.uniform(*_CANCELLOUS_HU, size=len(VERTEBRAE))
    heights = height * sizes
    length = float(heights.sum() + discs.sum())
    available = float(grid.z[-1]) - 2 * grid.spacing[2]  # keep one slice free at each end
    z_scale = min(1.0, available / length)
    z = (float(grid.z[-1]) - z_scale * length) / 2
    stacked = []
    for i in reversed(range(len(VERTEBRAE))):
        size = float(sizes[i])
        top = z + z_scale * float(heights[i])
        stacked.append(
            _Vertebra(VERTEBRAE[i], z, top, width / 2 * size, depth / 2 * size, size, float(cancellous[i]))
        )
        z = top + z_scale * float(discs[i - 1]) if i else top
    return stacked[::-1], z_scale


def _sample_column(
    rng: np.random.Generator, spec: PhantomSpec, grid: _Grid, vertebrae: list[_Vertebra], z_scale: float
) -> _Column:
    centre_x, centre_y = grid.centre_xy
    shift_x, shift_y = rng.uniform(*spec.shift_mm, size=2)
    canal_semi_y = float(rng.uniform(*spec.canal_depth_mm)) / 2
    return _Column(
        centre_x=centre_x + float(shift_x),
        base_y=centre_y - 2.0 + float(shift_y),
        lordosis=float(rng.uniform(*spec.lordosis_mm)),
        angle=math.radians(float(rng.uniform(*spec.rotation_deg))),
        z_low=vertebrae[-1].z_low,
        z_high=vertebrae[0].z_high,
        z_scale=z_scale,
        canal_semi_x=float(rng.uniform(*spec.canal_width_mm)) / 2,
        canal_semi_y=canal_semi_y,
        canal_offset=max(v.semi_y for v in vertebrae) + _CANAL_GAP_MM + canal_semi_y,
    )


def _sample_tumor(
    rng: np.random.Generator, spec: PhantomSpec, column: _Column, vertebrae: list[_Vertebra]
) -> _Tumor:
    """A blob centred inside a random vertebral body (anywhere from its centre to its surface)."""
    host = vertebrae[int(rng.integers(len(vertebrae)))]
    direction = rng.normal(size=3)
    reach = direction / np.linalg.norm(direction) * rng.uniform(0.0, 1.0)
    u, v, dz = reach * (host.semi_x, host.semi_y, host.semi_z)
    z = host.z_centre + float(dz)
    x, y = column.to_global(float(u), float(v), z)
    radius = float(rng.uniform(*spec.tumor_radius_mm))
    sclerotic = bool(rng.random() < 0.5)
    return _Tumor(
        host=host.name,
        kind="sclerotic" if sclerotic else "lytic",
        hu=float(rng.uniform(*(_SCLEROTIC_HU if sclerotic else _LYTIC_HU))),
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


def _ellipse(u: np.ndarray, v: np.ndarray, semi_u: float, semi_v: float) -> np.ndarray:
    return (u / semi_u) ** 2 + (v / semi_v) ** 2 <= 1.0


def _paint_neck(image: np.ndarray, grid: _Grid, neck: _Neck) -> None:
    """Fat-lined elliptic soft-tissue neck with an air-filled trachea, identical on every slice."""
    cx, cy = grid.centre_xy
    x, y = grid.x[0] - cx, grid.y[0] - cy
    trachea_y = -0.7 * neck.semi_y
    image[:, _ellipse(x, y, neck.semi_x, neck.semi_y)] = _FAT_HU
    image[:, _ellipse(x, y, neck.semi_x - neck.fat, neck.semi_y - neck.fat)] = _SOFT_TISSUE_HU
    image[:, _ellipse(x, y - trachea_y, neck.trachea_radius, neck.trachea_radius)] = _AIR_HU


def _paint_spine(
    image: np.ndarray,
    label: np.ndarray,
    grid: _Grid,
    column: _Column,
    vertebrae: list[_Vertebra],
    values: Mapping[str, int],
    cortex_hu: float,
) -> None:
    """Canal, discs, then each vertebra (arch before body, so the body wins where they meet)."""
    zs = grid.slab(column.z_low, column.z_high)
    u, v = column.local(grid, zs)
    canal = _ellipse(u, v - column.canal_offset, column.canal_semi_x, column.canal_semi_y)
    image[zs][canal] = _CSF_HU
    label[zs][canal] = values["spinal_canal"]
    for upper, lower in zip(vertebrae[:-1], vertebrae[1:], strict=True):
        _paint_disc(image, grid, column, upper, lower)
    for vertebra in vertebrae:
        _paint_arch(image, label, grid, column, vertebra, values[vertebra.name], cortex_hu)
        _paint_body(image, label, grid, column, vertebra, values[vertebra.name], cortex_hu)


def _paint_disc(image: np.ndarray, grid: _Grid, column: _Column, upper: _Vertebra, lower: _Vertebra) -> None:
    """Intervertebral disc (image only: discs are background), reaching into the rounded endplates."""
    zs = grid.slab(lower.z_high - 0.25 * lower.semi_z, upper.z_low + 0.25 * upper.semi_z)
    u, v = column.local(grid, zs)
    disc = _ellipse(u, v, (upper.semi_x + lower.semi_x) / 2, (upper.semi_y + lower.semi_y) / 2)
    image[zs][disc] = _DISC_HU


def _paint_body(
    image: np.ndarray,
    label: np.ndarray,
    grid: _Grid,
    column: _Column,
    vertebra: _Vertebra,
    value: int,
    cortex_hu: float,
) -> None:
    """Rounded-cylinder vertebral body: cancellous core inside a cortical rim."""
    zs = grid.slab(vertebra.z_low, vertebra.z_high)
    u, v = column.local(grid, zs)
    dz = (grid.z[zs] - vertebra.z_centre)[:, None, None]
    semi = np.array([vertebra.semi_x, vertebra.semi_y, vertebra.semi_z])
    rim = max(_CORTEX_MM, min(grid.spacing[:2]))  # at least one voxel, so the rim shows
    core_semi = np.maximum(semi - rim, semi / 2)
    outer = _rounded_cylinder(u, v, dz, semi)
    core = _rounded_cylinder(u, v, dz, core_semi)
    image[zs][outer] = cortex_hu
    image[zs][core] = vertebra.cancellous_hu
    label[zs][outer] = value


def _rounded_cylinder(u: np.ndarray, v: np.ndarray, dz: np.ndarray, semi: np.ndarray) -> np.ndarray:
    radial = (u / semi[0]) ** 2 + (v / semi[1]) ** 2
    return radial**2 + (dz / semi[2]) ** 4 <= 1.0


def _paint_arch(
    image: np.ndarray,
    label: np.ndarray,
    grid: _Grid,
    column: _Column,
    vertebra: _Vertebra,
    value: int,
    cortex_hu: float,
) -> None:
    """Posterior arch: a bony ring around the canal plus a spinous process, over 80 % of the body height."""
    zs = grid.slab(vertebra.z_centre - 0.8 * vertebra.semi_z, vertebra.z_centre + 0.8 * vertebra.semi_z)
    u, v = column.local(grid, zs)
    v = v - column.canal_offset
    sx, sy = column.canal_semi_x, column.canal_semi_y
    ring = _ellipse(u, v, sx + _ARCH_MM, sy + _ARCH_MM) & ~_ellipse(u, v, sx, sy)
    spinous_half = (_SPINOUS_MM * vertebra.size + _ARCH_MM) / 2
    spinous = _ellipse(u, v - sy - spinous_half, _ARCH_MM * 0.6, spinous_half)
    arch = ring | spinous
    image[zs][arch] = cortex_hu
    label[zs][arch] = value


def _paint_tumor(image: np.ndarray, label: np.ndarray, grid: _Grid, tumor: _Tumor, value: int) -> None:
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
    zs, ys, xs = box[2], box[1], box[0]
    image[zs, ys, xs][blob] = tumor.hu
    label[zs, ys, xs][blob] = value


def _tumor_range(centre: float, extent: float, spacing: float, size: int) -> slice:
    start = min(max(0, math.ceil((centre - extent) / spacing)), size - 1)
    stop = max(min(size, math.floor((centre + extent) / spacing) + 1), start + 1)
    return slice(start, stop)


def _finish(image: np.ndarray, grid: _Grid, noise_hu: float, rng: np.random.Generator) -> np.ndarray:
    """Partial-volume blur, gaussian noise, rounding to int16 HU."""
    sigma = [_BLUR_MM / s for s in grid.spacing[::-1]]
    blurred = ndimage.gaussian_filter(image, sigma=sigma)
    noisy = blurred + rng.standard_normal(image.shape, dtype=np.float32) * np.float32(noise_hu)
    return np.clip(np.rint(noisy), *_HU_LIMITS).astype(np.int16)


def _vertebra_params(vertebra: _Vertebra, value: int) -> dict[str, Any]:
    return {
        "name": vertebra.name,
        "label": value,
        "z_range_mm": [vertebra.z_low, vertebra.z_high],
        "body_semi_axes_mm": [vertebra.semi_x, vertebra.semi_y, vertebra.semi_z],
        "cancellous_hu": vertebra.cancellous_hu,
    }
