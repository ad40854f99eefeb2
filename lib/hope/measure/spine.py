"""Cervical-spine measurements from a label volume: canal and cord cross-sections, discs, C2-C7 Cobb angle.

Frame and units
---------------
A label volume is a ``(z, y, x)`` integer array (HOPE's convention), ``spacing`` its ``(x, y, z)`` voxel size in mm
and ``direction`` the direction cosines of its index axes ``x, y, z`` in the patient's LPS frame: SimpleITK's
``GetDirection()`` (9 numbers, row-major; column ``c`` is the direction of index axis ``c``), the identity for
HOPE's phantoms and axial series. Everything is computed in millimetres in that patient frame (``+x`` left,
``+y`` posterior, ``+z`` superior), so axial, sagittal and oblique acquisitions give the same numbers.
Areas are in mm², lengths in mm, angles in degrees; ratios and occupancies are unitless fractions (0..1).

Method
------
* **Centre line.** Voxels of the canal (``canal``: the CSF space; ``spinal_canal``: spine_ct's whole canal) and
  of the ``cord`` are binned along the cranio-caudal axis (bins of ``max(1 mm, voxel step along z)``); the bin
  centroids are resampled evenly and smoothed with a quadratic Savitzky-Golay filter over
  :data:`SMOOTHING_MM`, which also gives the tangent.
* **Levels.** A vertebra's level is the centre-line point whose perpendicular plane passes through the centroid of
  the vertebra's voxels anterior of the centre line (its body, not the arch); a disc level is the plane through
  the disc label's centroid, else half-way between the two vertebral levels. On the plane perpendicular to the
  tangent there, the label is resampled (linear interpolation of each structure's mask, :data:`PLANE_STEP_MM`
  grid) and partial areas are summed. The canal is the connected canal + cord region nearest the centre line,
  plus the tumour inside its convex hull (tumour within or indenting the thecal sac); ``cord_occupancy`` and
  ``tumor_occupancy`` are those areas over the canal area.
* **Cord diameters.** From the second moments of the cord's cross-section (the equivalent ellipse: a diameter
  is ``4 * sqrt(variance)`` along a principal axis); the axis nearer the anterior-posterior direction is AP.
  ``compression_ratio`` = AP / transverse diameter.
* **Disc heights.** Disc volume divided by the disc's area on the plane through its centroid perpendicular to
  the centre line: the mean height of the disc along the centre line.
* **Cobb angle.** In three patient-sagittal planes through each of C2 and C7 (:data:`SAGITTAL_OFFSETS_MM`) the
  vertebral body is the vertebra's most anterior large region; its inferior endplate is taken parallel to the
  body's principal axis nearest the anterior-posterior direction (for C2, body and dens together: perpendicular
  to its long axis). Second moments use the body's whole outline, so the tilt stays sub-voxel on thick slices,
  where tracing the endplate's own lowest points sees a staircase of 1-2 steps and errs by 5 degrees and more;
  the price is that a wedge-shaped body reports its mid-body tilt, not its endplate's. ``cobb_c2_c7_deg`` is
  the C2 tilt minus the C7 tilt (tilt positive when the anterior edge is higher): positive is lordosis, negative
  kyphosis.

A structure missing from the label (or from the label map) is skipped with a reason in
``SpineMeasurements.skipped``; nothing raises for missing anatomy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from scipy import ndimage
from scipy.signal import savgol_filter
from scipy.spatial import ConvexHull

VERTEBRAE = tuple(f"C{i}" for i in range(1, 8))
#: Disc level -> label name of that intervertebral disc (the ``spine_mr`` task's names).
DISC_LABELS: Mapping[str, str] = {
    "C2/C3": "disc_C2_C3",
    "C3/C4": "disc_C3_C4",
    "C4/C5": "disc_C4_C5",
    "C5/C6": "disc_C5_C6",
    "C6/C7": "disc_C6_C7",
    "C7/T1": "disc_C7_T1",
}
CORD_LABEL = "cord"
#: ``spine_mr``: the CSF space around the cord (the canal is this plus the cord).
CSF_LABEL = "canal"
#: ``spine_ct``: the whole spinal canal, cord included.
CT_CANAL_LABEL = "spinal_canal"
TUMOR_LABEL = "tumor"

#: Grid step of the perpendicular planes, mm.
PLANE_STEP_MM = 0.25
#: Length of the Savitzky-Golay window that smooths the centre line, mm.
SMOOTHING_MM = 15.0
#: Left-right offsets of the sagittal planes the endplates are traced in, mm from the vertebra's centroid.
SAGITTAL_OFFSETS_MM = (-2.0, 0.0, 2.0)

_CANAL_LABELS = (CSF_LABEL, CT_CANAL_LABEL, CORD_LABEL)
_MIN_AREA_MM2 = 0.5  # below this a structure counts as absent from a plane


@dataclass(frozen=True)
class LevelMeasurement:
    """Canal and cord at one level (``"C5"`` or a disc level ``"C5/C6"``), on the plane perpendicular to the canal.

    Areas in mm², diameters in mm; ``compression_ratio`` (cord AP / transverse diameter) and the occupancies
    (area fractions of the canal) are unitless. Cord values are ``None`` without a cord label, or when the cord
    misses this plane (then ``cord_area_mm2`` and ``cord_occupancy`` are 0); ``tumor_occupancy`` is ``None``
    when the label map has no tumour label.
    """

    level: str
    canal_area_mm2: float
    cord_area_mm2: float | None
    compression_ratio: float | None
    cord_occupancy: float | None
    tumor_occupancy: float | None
    cord_ap_diameter_mm: float | None
    cord_transverse_diameter_mm: float | None


@dataclass(frozen=True)
class DiscHeight:
    """Mean height of an intervertebral disc (``"C5/C6"``) along the canal's centre line, in mm."""

    disc: str
    height_mm: float


@dataclass(frozen=True)
class SpineMeasurements:
    """Everything measured on one label volume, in cranio-caudal order, and why anything was not measured.

    ``cobb_c2_c7_deg`` is in degrees, lordosis positive. ``skipped`` maps a level (``"C1"``, ``"C2/C3"``), a disc
    (``"disc C2/C3"``), ``"centre_line"``, ``"cord"`` or ``"cobb_c2_c7"`` to the reason it is missing.
    """

    levels: tuple[LevelMeasurement, ...]
    discs: tuple[DiscHeight, ...]
    cobb_c2_c7_deg: float | None
    skipped: dict[str, str] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON: ``levels`` and ``discs`` as lists of dicts (field names carry the units)."""
        return {
            "levels": [asdict(level) for level in self.levels],
            "discs": [asdict(disc) for disc in self.discs],
            "cobb_c2_c7_deg": self.cobb_c2_c7_deg,
            "skipped": dict(self.skipped),
        }


def measure_spine(
    label: np.ndarray,
    labels: Mapping[str, int],
    spacing: Sequence[float],
    direction: Sequence[float] | np.ndarray | None = None,
) -> SpineMeasurements:
    """Measure canal, cord, discs and the C2-C7 Cobb angle on ``label`` (see the module docstring for how).

    Args:
        label: ``(z, y, x)`` integer label volume.
        labels: label name -> voxel value; names as :data:`VERTEBRAE`, :data:`DISC_LABELS`, :data:`CORD_LABEL`,
            :data:`CSF_LABEL` or :data:`CT_CANAL_LABEL`, :data:`TUMOR_LABEL` (others are ignored).
        spacing: voxel size ``(x, y, z)`` in mm.
        direction: direction cosines of the index axes in LPS, 9 numbers row-major or 3x3 (SimpleITK's
            ``GetDirection()``); ``None`` is the identity.

    Raises:
        ValueError: ``label`` is not 3-D, or ``spacing`` / ``direction`` are malformed.
    """
    label = np.asarray(label)
    if label.ndim != 3:
        raise ValueError(f"label must be a 3-D (z, y, x) array, got shape {label.shape}")
    grid = _Grid(label, spacing, direction)
    values = {int(v) for v in np.unique(label)} - {0}
    present = {name: int(value) for name, value in labels.items() if int(value) in values}
    skipped: dict[str, str] = {}
    if CORD_LABEL not in present:
        skipped["cord"] = f"no {CORD_LABEL!r} voxels in the label: cord areas, diameters and ratios are left out"
    line = _centre_line(grid, [present[n] for n in _CANAL_LABELS if n in present])
    if isinstance(line, str):
        skipped["centre_line"] = line
        levels: list[LevelMeasurement] = []
        discs: list[DiscHeight] = []
    else:
        levels = _measure_levels(grid, line, present, TUMOR_LABEL in labels, skipped)
        discs = _measure_discs(grid, line, present, skipped)
    tilts = {name: _endplate_tilt(grid, present[name]) if name in present else f"no {name} label"
             for name in ("C2", "C7")}
    reasons = [f"{name}: {tilt}" for name, tilt in tilts.items() if isinstance(tilt, str)]
    cobb = None
    if reasons:
        skipped["cobb_c2_c7"] = "; ".join(reasons)
    else:
        cobb = float(tilts["C2"]) - float(tilts["C7"])
    return SpineMeasurements(tuple(levels), tuple(discs), cobb, skipped)


class _Grid:
    """The label volume with its voxel <-> patient (LPS, mm) mapping; origin at voxel ``(0, 0, 0)``."""

    def __init__(
        self, label: np.ndarray, spacing: Sequence[float], direction: Sequence[float] | np.ndarray | None
    ) -> None:
        sizes = np.asarray(spacing, dtype=float).ravel()
        if sizes.shape != (3,) or not np.all(sizes > 0):
            raise ValueError(f"spacing must be three positive mm values (x, y, z), got {spacing}")
        cosines = np.eye(3) if direction is None else np.asarray(direction, dtype=float).reshape(-1)
        if cosines.size != 9:
            raise ValueError(f"direction must hold 9 direction cosines, got {direction}")
        matrix = cosines.reshape(3, 3) * sizes  # column c: one step along index axis c (x, y, z)
        if abs(np.linalg.det(matrix)) < 1e-9:
            raise ValueError(f"direction {cosines.tolist()} has parallel or zero axes")
        self.label = label
        self.spacing = sizes
        self.to_patient = matrix[:, ::-1]  # (k, j, i) index -> LPS mm
        self.to_index = np.linalg.inv(self.to_patient)
        self.voxel_volume = float(abs(np.linalg.det(matrix)))
        self.superior_step = float(np.abs(self.to_patient[2]).max())

    def points(self, values: Sequence[int]) -> np.ndarray:
        """LPS coordinates ``(n, 3)`` of every voxel holding one of ``values``."""
        return np.argwhere(np.isin(self.label, values)) @ self.to_patient.T

    def sample(self, points: np.ndarray, groups: Sequence[Sequence[int]], order: int = 1) -> list[np.ndarray]:
        """For each group of label values, its mask interpolated at ``points`` (``(..., 3)`` LPS mm); 0 outside."""
        index = points.reshape(-1, 3) @ self.to_index.T
        shape = np.array(self.label.shape)
        low = np.clip(np.floor(index.min(axis=0)).astype(int) - 1, 0, shape)
        high = np.clip(np.ceil(index.max(axis=0)).astype(int) + 2, 0, shape)
        if np.any(high <= low):
            return [np.zeros(points.shape[:-1], dtype=np.float32) for _ in groups]
        crop = self.label[low[0]:high[0], low[1]:high[1], low[2]:high[2]]
        coordinates = (index - low).T
        return [
            ndimage.map_coordinates(
                np.isin(crop, list(values)).astype(np.float32), coordinates, order=order, mode="constant", cval=0.0
            ).reshape(points.shape[:-1])
            for values in groups
        ]


@dataclass(frozen=True)
class _CentreLine:
    """The smoothed canal centre line, sampled evenly along the cranio-caudal (LPS z) axis."""

    points: np.ndarray  # (n, 3) LPS mm, ascending z
    tangents: np.ndarray  # (n, 3) unit, pointing superior
    step: float  # mm between samples along z
    radius: float  # mm: every canal voxel lies within this distance of the line in its bin

    def at(self, z: float) -> tuple[np.ndarray, np.ndarray]:
        """Point and unit tangent of the line at height ``z`` (interpolated)."""
        heights = self.points[:, 2]
        point = np.array([np.interp(z, heights, self.points[:, axis]) for axis in range(3)])
        tangent = np.array([np.interp(z, heights, self.tangents[:, axis]) for axis in range(3)])
        return point, tangent / np.linalg.norm(tangent)

    def locate(self, point: np.ndarray) -> float | None:
        """Height ``z`` of the line point whose perpendicular plane holds ``point``; ``None`` beyond the ends."""
        offsets = np.einsum("ij,ij->i", point - self.points, self.tangents)
        crossings = np.flatnonzero((offsets[:-1] >= 0) & (offsets[1:] < 0))
        if not crossings.size:
            return None
        distances = np.linalg.norm(self.points[crossings] - point, axis=1)
        i = int(crossings[np.argmin(distances)])
        fraction = offsets[i] / (offsets[i] - offsets[i + 1])
        return float(self.points[i, 2] + fraction * (self.points[i + 1, 2] - self.points[i, 2]))


def _centre_line(grid: _Grid, canal_values: Sequence[int]) -> _CentreLine | str:
    """The canal centre line from the canal + cord voxels, or the reason there is none."""
    if not canal_values:
        return f"no canal label ({CSF_LABEL!r}, {CT_CANAL_LABEL!r} or {CORD_LABEL!r}): no level measurements"
    points = grid.points(canal_values)
    step = max(1.0, grid.superior_step)
    bins = np.floor((points[:, 2] - points[:, 2].min()) / step).astype(int)
    counts = np.bincount(bins)
    filled = counts > 0
    if filled.sum() < 3:
        return f"the canal spans fewer than 3 steps of {step:g} mm along the cranio-caudal axis"
    centroids = np.stack([np.bincount(bins, points[:, axis])[filled] for axis in range(3)], axis=1)
    centroids /= counts[filled, None]
    heights = np.arange(centroids[0, 2], centroids[-1, 2] + step / 2, step)
    window = min(len(heights) - (1 - len(heights) % 2), max(3, round(SMOOTHING_MM / step) | 1))
    order = min(2, window - 1)
    line, slope = [], []
    for axis in (0, 1):
        even = np.interp(heights, centroids[:, 2], centroids[:, axis])
        line.append(savgol_filter(even, window, order, mode="interp"))
        slope.append(savgol_filter(even, window, order, deriv=1, delta=step, mode="interp"))
    tangents = np.stack([slope[0], slope[1], np.ones_like(heights)], axis=1)
    tangents /= np.linalg.norm(tangents, axis=1, keepdims=True)
    across = np.hypot(points[:, 0] - np.interp(points[:, 2], heights, line[0]),
                      points[:, 1] - np.interp(points[:, 2], heights, line[1]))
    radius = float(across.max()) + 2 * float(grid.spacing.max())
    return _CentreLine(np.stack([line[0], line[1], heights], axis=1), tangents, step, radius)


def _plane(centre: np.ndarray, normal: np.ndarray, radius: float) -> np.ndarray:
    """Grid points ``(m, m, 3)`` of the square plane of half-width ``radius`` through ``centre``.

    Grid axis 0 runs along ``u``, the patient's left-right direction made perpendicular to ``normal``; axis 1 along
    ``v = normal x u``, which points posterior for a superior ``normal``.
    """
    reference = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
    u = reference - (reference @ normal) * normal
    u /= np.linalg.norm(u)
    v = np.cross(normal, u)
    offsets = np.arange(-radius, radius + PLANE_STEP_MM / 2, PLANE_STEP_MM)
    a, b = np.meshgrid(offsets, offsets, indexing="ij")
    return centre + a[..., None] * u + b[..., None] * v


def _level_positions(grid: _Grid, line: _CentreLine, present: Mapping[str, int]) -> dict[str, float | str]:
    """Height on the centre line of every vertebral and disc level, or why it has none, in cranio-caudal order."""
    vertebrae: dict[str, float | str] = {}
    for name in VERTEBRAE:
        if name not in present:
            vertebrae[name] = f"no {name} label"
            continue
        points = grid.points([present[name]])
        line_y = np.interp(points[:, 2], line.points[:, 2], line.points[:, 1])
        anterior = points[points[:, 1] < line_y]  # LPS y grows posterior: the body and pedicles
        height = line.locate((anterior if len(anterior) else points).mean(axis=0))
        vertebrae[name] = f"{name} lies beyond the ends of the labelled canal" if height is None else height
    positions: dict[str, float | str] = {"C1": vertebrae["C1"]}
    for (level, disc_label), upper in zip(DISC_LABELS.items(), VERTEBRAE[1:], strict=True):
        positions[upper] = vertebrae[upper]
        lower = level.split("/")[1]
        if disc_label in present:
            height = line.locate(grid.points([present[disc_label]]).mean(axis=0))
            positions[level] = f"{level} disc lies beyond the ends of the labelled canal" if height is None else height
        elif isinstance(vertebrae[upper], float) and isinstance(vertebrae.get(lower), float):
            positions[level] = (float(vertebrae[upper]) + float(vertebrae[lower])) / 2
        else:
            positions[level] = f"no {disc_label} label and not both {upper} and {lower} measured"
    return positions


def _measure_levels(
    grid: _Grid, line: _CentreLine, present: Mapping[str, int], has_tumor_label: bool, skipped: dict[str, str]
) -> list[LevelMeasurement]:
    canal = [present[n] for n in (CSF_LABEL, CT_CANAL_LABEL) if n in present]
    cord = [present[CORD_LABEL]] if CORD_LABEL in present else []
    tumor = [present[TUMOR_LABEL]] if TUMOR_LABEL in present else []
    measured = []
    for level, height in _level_positions(grid, line, present).items():
        if isinstance(height, str):
            skipped[level] = height
            continue
        centre, tangent = line.at(height)
        points = _plane(centre, tangent, line.radius)
        f_canal, f_cord, f_tumor = grid.sample(points, [canal + cord, cord, tumor])
        result = _cross_section(level, f_canal, f_cord, f_tumor, bool(cord), has_tumor_label)
        if isinstance(result, str):
            skipped[level] = result
        else:
            measured.append(result)
    return measured


def _cross_section(
    level: str,
    f_canal: np.ndarray,
    f_cord: np.ndarray,
    f_tumor: np.ndarray,
    has_cord: bool,
    has_tumor_label: bool,
) -> LevelMeasurement | str:
    """Areas, occupancies and cord diameters from the structures' fractions on one perpendicular plane."""
    pixel = PLANE_STEP_MM**2
    components, count = ndimage.label(f_canal > 0.01)
    if not count:
        return f"no canal on the plane perpendicular to the centre line at {level}"
    rows, columns = np.nonzero(components)
    middle = (f_canal.shape[0] - 1) / 2
    nearest = int(np.argmin((rows - middle) ** 2 + (columns - middle) ** 2))
    region = components == components[rows[nearest], columns[nearest]]
    hull = _convex_fill(region)
    cord_area = float((f_cord * region).sum()) * pixel
    tumor_area = float((f_tumor * hull).sum()) * pixel
    canal_area = float((f_canal * region).sum()) * pixel + tumor_area
    if canal_area < _MIN_AREA_MM2:
        return f"the canal at {level} is smaller than {_MIN_AREA_MM2} mm2"
    ap, transverse = _diameters(f_cord * region) if has_cord and cord_area >= _MIN_AREA_MM2 else (None, None)
    return LevelMeasurement(
        level=level,
        canal_area_mm2=canal_area,
        cord_area_mm2=cord_area if has_cord else None,
        compression_ratio=None if ap is None or transverse is None else ap / transverse,
        cord_occupancy=cord_area / canal_area if has_cord else None,
        tumor_occupancy=tumor_area / canal_area if has_tumor_label else None,
        cord_ap_diameter_mm=ap,
        cord_transverse_diameter_mm=transverse,
    )


def _convex_fill(mask: np.ndarray) -> np.ndarray:
    """``mask`` and every pixel inside its convex hull (the mask itself when it is a line or a point)."""
    pixels = np.argwhere(mask).astype(float)
    if len(pixels) < 3 or np.linalg.matrix_rank(pixels - pixels.mean(axis=0)) < 2:
        return mask
    equations = ConvexHull(pixels).equations
    low, high = pixels.min(axis=0).astype(int), pixels.max(axis=0).astype(int) + 1
    rows, columns = np.mgrid[low[0]:high[0], low[1]:high[1]]
    candidates = np.stack([rows.ravel(), columns.ravel()], axis=1)
    inside = np.all(candidates @ equations[:, :2].T + equations[:, 2] <= 1e-9, axis=1)
    filled = mask.copy()
    filled[low[0]:high[0], low[1]:high[1]] |= inside.reshape(rows.shape)
    return filled


def _diameters(weights: np.ndarray) -> tuple[float, float]:
    """AP and transverse diameters (mm) of the equivalent ellipse of a weighted plane region.

    Axis 0 of ``weights`` runs along the plane's left-right axis ``u``, axis 1 along its posterior axis ``v``.
    """
    coordinates = np.indices(weights.shape).reshape(2, -1) * PLANE_STEP_MM
    w = weights.ravel()
    mean = coordinates @ w / w.sum()
    centred = coordinates - mean[:, None]
    covariance = (centred * w) @ centred.T / w.sum()
    variances, axes = np.linalg.eigh(covariance)
    ap_axis = int(np.argmax(np.abs(axes[1])))
    diameters = 4 * np.sqrt(np.maximum(variances, 0.0))
    return float(diameters[ap_axis]), float(diameters[1 - ap_axis])


def _measure_discs(
    grid: _Grid, line: _CentreLine, present: Mapping[str, int], skipped: dict[str, str]
) -> list[DiscHeight]:
    heights = []
    for disc, name in DISC_LABELS.items():
        if name not in present:
            skipped[f"disc {disc}"] = f"no {name} label"
            continue
        points = grid.points([present[name]])
        centroid = points.mean(axis=0)
        height = line.locate(centroid)
        if height is None:
            skipped[f"disc {disc}"] = f"the {disc} disc lies beyond the ends of the labelled canal"
            continue
        _, tangent = line.at(height)
        radius = float(np.linalg.norm(points - centroid, axis=1).max()) + 2 * float(grid.spacing.max())
        plane = _plane(centroid, tangent, radius)
        (fraction,) = grid.sample(plane, [[present[name]]])
        area = float(fraction.sum()) * PLANE_STEP_MM**2
        if area < _MIN_AREA_MM2:
            skipped[f"disc {disc}"] = f"the {disc} disc does not cross the plane through its centroid"
            continue
        heights.append(DiscHeight(disc, len(points) * grid.voxel_volume / area))
    return heights


def _endplate_tilt(grid: _Grid, value: int) -> float | str:
    """Sagittal tilt (degrees, anterior edge up positive) of a vertebra's inferior endplate, or why there is none.

    The vertebral body is the most anterior large region of the vertebra on three sagittal planes
    (:data:`SAGITTAL_OFFSETS_MM`); the endplate is taken parallel to the body's principal axis nearest the
    anterior direction (second moments of the interpolated body mask).
    """
    points = grid.points([value])
    centroid = points.mean(axis=0)
    margin = 2 * float(grid.spacing.max())
    anterior = np.arange(-points[:, 1].max() - margin, -points[:, 1].min() + margin, PLANE_STEP_MM)
    heights = np.arange(points[:, 2].min() - margin, points[:, 2].max() + margin, PLANE_STEP_MM)
    a, s = np.meshgrid(anterior, heights, indexing="ij")
    pixels, weights = [], []
    for offset in SAGITTAL_OFFSETS_MM:
        plane = np.stack([np.full_like(a, centroid[0] + offset), -a, s], axis=-1)
        (fraction,) = grid.sample(plane, [[value]])
        body = _anterior_region(fraction >= 0.5)
        if body is not None:
            pixels.append(np.stack([a[body], s[body]], axis=1))
            weights.append(fraction[body])
    if not pixels or sum(len(p) for p in pixels) * PLANE_STEP_MM**2 < 10 * len(SAGITTAL_OFFSETS_MM):
        return "its vertebral body is missing or tiny on the mid-sagittal planes"
    coordinates, w = np.concatenate(pixels), np.concatenate(weights)
    return math.degrees(math.atan(_principal_slope(coordinates, w)))


def _principal_slope(coordinates: np.ndarray, weights: np.ndarray) -> float:
    """Slope ``ds/da`` of the weighted principal axis nearest the ``a`` axis of ``(a, s)`` points."""
    mean = coordinates.T @ weights / weights.sum()
    centred = coordinates - mean
    covariance = (centred * weights[:, None]).T @ centred / weights.sum()
    _, axes = np.linalg.eigh(covariance)
    axis = axes[:, int(np.argmax(np.abs(axes[0])))]
    return float(axis[1] / axis[0])


def _anterior_region(mask: np.ndarray) -> np.ndarray | None:
    """The most anterior of the large connected regions of a sagittal mask (axis 0 anterior): the body."""
    components, count = ndimage.label(mask)
    if not count:
        return None
    sizes = ndimage.sum_labels(mask, components, index=np.arange(1, count + 1))
    rows = np.indices(mask.shape)[0]
    positions = ndimage.mean(rows, components, index=np.arange(1, count + 1))
    large = np.flatnonzero(sizes >= 0.2 * sizes.max())
    best = large[np.argmax(np.asarray(positions)[large])]
    return components == best + 1
