"""Spine measurements (hope.measure.spine) on label volumes of known geometry, a phantom and a real MR."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk

from hope.config import load_task
from hope.measure import DISC_LABELS, measure_spine
from hope.phantoms import MR_SPEC, PhantomSpec, generate_neck_ct, generate_neck_mr

LABELS = {f"C{i}": i for i in range(1, 8)} | {"canal": 8, "cord": 9, "tumor": 10} | {
    name: 11 + i for i, name in enumerate(DISC_LABELS.values())
}
IDENTITY = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)
#: A sagittal MR stack (TPTBox's PIR): index x runs posterior, y inferior, z (the slices) right.
PIR = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)
ANTERIOR = np.array([0.0, -1.0, 0.0])

Shape = Callable[[np.ndarray], np.ndarray]


def paint(
    shape: tuple[int, int, int],
    spacing: Sequence[float],
    structures: Sequence[tuple[str, Shape]],
    direction: Sequence[float] = IDENTITY,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
) -> np.ndarray:
    """A ``(z, y, x)`` label volume: each named structure (a predicate of LPS points ``(..., 3)``) painted in turn."""
    k, j, i = np.indices(shape, dtype=float)
    steps = np.stack([i * spacing[0], j * spacing[1], k * spacing[2]], axis=-1)
    points = steps @ np.asarray(direction).reshape(3, 3).T + np.asarray(origin)
    label = np.zeros(shape, dtype=np.uint8)
    for name, inside in structures:
        label[inside(points)] = LABELS[name]
    return label


def tube(start: np.ndarray, axis: np.ndarray, radius: float) -> Shape:
    """Points within ``radius`` of the infinite line through ``start`` along ``axis``."""
    axis = axis / np.linalg.norm(axis)

    def inside(points: np.ndarray) -> np.ndarray:
        offsets = points - start
        along = offsets @ axis
        return np.linalg.norm(offsets - along[..., None] * axis, axis=-1) <= radius

    return inside


def ball(centre: np.ndarray, radius: float) -> Shape:
    return lambda points: np.linalg.norm(points - centre, axis=-1) <= radius


def anterior_of(axis: np.ndarray) -> np.ndarray:
    """The unit vector perpendicular to ``axis`` nearest the patient's anterior direction."""
    axis = axis / np.linalg.norm(axis)
    direction = ANTERIOR - (ANTERIOR @ axis) * axis
    return direction / np.linalg.norm(direction)


def markers(centre: np.ndarray, axis: np.ndarray, heights: Sequence[float]) -> list[tuple[str, Shape]]:
    """Small 'vertebrae' C3, C4, ... anterior of a straight canal, centred on its perpendicular planes."""
    axis = axis / np.linalg.norm(axis)
    forward = anterior_of(axis)
    return [(f"C{3 + n}", ball(centre + t * axis + 16 * forward, 4.0)) for n, t in enumerate(heights)]


def test_straight_cylinder_area() -> None:
    spacing, centre, axis = (0.5, 0.5, 1.0), np.array([15.0, 20.0, 40.0]), np.array([0.0, 0.0, 1.0])
    label = paint((80, 70, 60), spacing, [("canal", tube(centre, axis, 6.0)), *markers(centre, axis, (-20, 0, 20))])
    result = measure_spine(label, LABELS, spacing)
    assert [m.level for m in result.levels] == ["C3", "C3/C4", "C4", "C4/C5", "C5"]
    for m in result.levels:
        assert m.canal_area_mm2 == pytest.approx(math.pi * 36, rel=0.05)
        assert m.cord_area_mm2 is None and m.compression_ratio is None and m.tumor_occupancy == 0.0
    assert "cord" in result.skipped and result.skipped["C1"] == "no C1 label"


@pytest.mark.parametrize(
    ("direction", "origin", "shape", "tolerance"),
    [(IDENTITY, (0.0, 0.0, 0.0), (34, 200, 140), 0.05), (PIR, (70.0, 0.0, 100.0), (24, 200, 200), 0.08)],
    ids=["axial", "sagittal"],
)
def test_oblique_cylinder_area_is_perpendicular(
    direction: Sequence[float], origin: Sequence[float], shape: tuple[int, int, int], tolerance: float
) -> None:
    """A canal tilted 30 degrees sagittally and 11 laterally, on 0.5 x 0.5 x 3 mm voxels: still pi r^2.

    Axial 3 mm slices: within 5 % at every level. Sagittal 3 mm slices put only four samples across the 11 mm wide
    canal, so the label itself is digitised differently at each level (+-6 %): within 8 % per level, 3 % on average.
    """
    spacing, radius = (0.5, 0.5, 3.0), 5.5
    axis, centre = np.array([0.2, -0.55, 1.0]), np.array([35.0, 50.0, 50.0])
    structures = [("canal", tube(centre, axis, radius)), *markers(centre, axis, (-22, 0, 22))]
    label = paint(shape, spacing, structures, direction, origin)
    result = measure_spine(label, LABELS, spacing, direction)
    assert [m.level for m in result.levels] == ["C3", "C3/C4", "C4", "C4/C5", "C5"]
    areas = np.array([m.canal_area_mm2 for m in result.levels])
    assert areas == pytest.approx(np.full(5, math.pi * radius**2), rel=tolerance)
    assert areas.mean() == pytest.approx(math.pi * radius**2, rel=0.03)
    if direction == IDENTITY:  # an axial slice cuts the tilted canal obliquely: 1 / cos(30 deg) too large
        axial_area = np.count_nonzero(label == LABELS["canal"]) * np.prod(spacing) / (shape[0] * spacing[2])
        assert axial_area > 1.1 * math.pi * radius**2


def test_curved_canal_area() -> None:
    """A canal bent along an arc of radius 70 mm in the sagittal plane (lordosis-like)."""
    spacing, bend, radius = (0.6, 0.6, 1.5), 70.0, 5.0
    pivot = np.array([20.0, 95.0, 50.0])  # the arc's centre, posterior of the canal

    def canal(points: np.ndarray) -> np.ndarray:
        offsets = points - pivot
        in_plane = np.hypot(offsets[..., 1], offsets[..., 2])
        return np.hypot(in_plane - bend, offsets[..., 0]) <= radius

    def vertebra(angle_deg: float) -> Shape:
        angle = math.radians(angle_deg)
        centre = pivot + (bend + 16) * np.array([0.0, -math.cos(angle), math.sin(angle)])
        return ball(centre, 4.0)

    structures = [("canal", canal), ("C3", vertebra(20)), ("C4", vertebra(0)), ("C5", vertebra(-20))]
    result = measure_spine(paint((66, 70, 70), spacing, structures), LABELS, spacing)
    assert {m.level for m in result.levels} == {"C3", "C3/C4", "C4", "C4/C5", "C5"}
    for m in result.levels:
        assert m.canal_area_mm2 == pytest.approx(math.pi * radius**2, rel=0.05), m.level


def test_cord_ellipse_compression_and_occupancy() -> None:
    """Cord of semi-axes 5 (transverse) x 3.5 (AP) mm in a canal of radius 9, a tumour in the CSF, one outside."""
    spacing, centre, axis = (0.4, 0.4, 1.0), np.array([15.0, 20.0, 30.0]), np.array([0.0, 0.0, 1.0])

    def cord(points: np.ndarray) -> np.ndarray:
        return ((points[..., 0] - centre[0]) / 5.0) ** 2 + ((points[..., 1] - centre[1]) / 3.5) ** 2 <= 1

    intradural = tube(centre + [-7.0, 0.0, 0.0], axis, 1.8)
    epidural = tube(centre + [0.0, -12.0, 0.0], axis, 2.0)  # anterior of the canal, outside its hull
    structures = [("canal", tube(centre, axis, 9.0)), ("cord", cord), ("tumor", intradural), ("tumor", epidural),
                  *markers(centre + [0.0, -6.0, 0.0], axis, (-10, 10))]
    result = measure_spine(paint((60, 80, 75), spacing, structures), LABELS, spacing)
    for m in result.levels:
        assert m.canal_area_mm2 == pytest.approx(math.pi * 81, rel=0.05)
        assert m.cord_area_mm2 == pytest.approx(math.pi * 5 * 3.5, rel=0.05)
        assert m.compression_ratio == pytest.approx(3.5 / 5, rel=0.05)
        assert m.cord_ap_diameter_mm == pytest.approx(7.0, rel=0.05)
        assert m.cord_transverse_diameter_mm == pytest.approx(10.0, rel=0.05)
        assert m.cord_occupancy == pytest.approx(5 * 3.5 / 81, rel=0.05)
        assert m.tumor_occupancy == pytest.approx(1.8**2 / 81, rel=0.15)


@pytest.mark.parametrize(
    ("direction", "origin", "spacing", "shape"),
    [(IDENTITY, (0.0, 0.0, 0.0), (0.5, 0.5, 0.625), (180, 110, 60)),
     (PIR, (30.0, 0.0, 112.0), (0.6, 0.6, 3.0), (10, 187, 92))],
    ids=["axial-0.625mm", "sagittal-3mm"],
)
def test_cobb_angle_from_tilted_endplates(
    direction: Sequence[float], origin: Sequence[float], spacing: Sequence[float], shape: tuple[int, int, int]
) -> None:
    """C2 tilted 10 degrees anterior edge up, C7 8 degrees anterior edge down: 18 degrees of lordosis.

    Thin-slice CT and sagittal MR (0.6 mm along the cranio-caudal axis) give 2 degrees; the label's own
    digitisation makes each tilt err by up to 1.6 degrees on 1 mm axial slices and 5 degrees on 2 mm ones.
    """

    def body(centre: np.ndarray, tilt_deg: float) -> Shape:
        tilt = math.radians(tilt_deg)

        def inside(points: np.ndarray) -> np.ndarray:
            a, s = -(points[..., 1] - centre[1]), points[..., 2] - centre[2]
            along = math.cos(tilt) * a + math.sin(tilt) * s
            up = -math.sin(tilt) * a + math.cos(tilt) * s
            return (np.abs(along) <= 8) & (np.abs(up) <= 5) & (np.abs(points[..., 0] - centre[0]) <= 8)

        return inside

    def arch(centre: np.ndarray) -> Shape:  # a posterior element behind the canal, a separate region
        return lambda p: (np.abs(p[..., 0] - centre[0]) <= 3) & (np.abs(p[..., 1] - centre[1] - 22) <= 4) & (
            np.abs(p[..., 2] - centre[2]) <= 4
        )

    c2, c7 = np.array([15.0, 20.0, 90.3]), np.array([15.0, 24.0, 20.6])
    structures = [("C2", body(c2, 10.0)), ("C2", arch(c2)), ("C7", body(c7, -8.0)), ("C7", arch(c7))]
    result = measure_spine(paint(shape, spacing, structures, direction, origin), LABELS, spacing, direction)
    assert result.cobb_c2_c7_deg == pytest.approx(18.0, abs=2.0)
    assert "centre_line" in result.skipped and not result.levels and not result.discs
    kyphotic = paint(shape, spacing, [("C2", body(c2, -6.0)), ("C7", body(c7, 6.0))], direction, origin)
    assert measure_spine(kyphotic, LABELS, spacing, direction).cobb_c2_c7_deg == pytest.approx(-12.0, abs=2.0)


def test_disc_heights_along_a_tilted_canal() -> None:
    """Discs 5 and 7 mm high, radius 8, stacked along a canal tilted 20 degrees: heights within 5 %."""
    spacing, axis = (0.5, 0.5, 1.0), np.array([0.0, -math.tan(math.radians(20)), 1.0])
    axis = axis / np.linalg.norm(axis)
    centre = np.array([20.0, 40.0, 40.0])
    forward = anterior_of(axis)

    def disc(t: float, height: float) -> Shape:
        middle = centre + 14 * forward + t * axis

        def inside(points: np.ndarray) -> np.ndarray:
            offsets = points - middle
            along = offsets @ axis
            return (np.abs(along) <= height / 2) & (
                np.linalg.norm(offsets - along[..., None] * axis, axis=-1) <= 8
            )

        return inside

    structures = [("canal", tube(centre, axis, 6.0)), ("disc_C3_C4", disc(-12, 5.0)), ("disc_C4_C5", disc(12, 7.0))]
    result = measure_spine(paint((80, 80, 40), spacing, structures), LABELS, spacing)
    heights = {d.disc: d.height_mm for d in result.discs}
    assert heights == pytest.approx({"C3/C4": 5.0, "C4/C5": 7.0}, rel=0.05)
    assert {m.level for m in result.levels} == {"C3/C4", "C4/C5"}  # disc levels from the disc labels alone
    assert result.skipped["disc C2/C3"] == "no disc_C2_C3 label"


def test_missing_structures_are_skipped_not_raised() -> None:
    empty = measure_spine(np.zeros((10, 10, 10), dtype=np.uint8), LABELS, (1.0, 1.0, 1.0))
    assert empty.levels == () and empty.discs == () and empty.cobb_c2_c7_deg is None
    assert {"centre_line", "cord", "cobb_c2_c7"} <= empty.skipped.keys()
    assert empty.as_dict()["skipped"] == empty.skipped
    thin = np.zeros((10, 10, 10), dtype=np.uint8)
    thin[5, 5, 5] = LABELS["canal"]  # one voxel: no centre line, no crash
    assert "centre_line" in measure_spine(thin, {"canal": 8}, (1.0, 1.0, 1.0)).skipped
    with pytest.raises(ValueError, match="spacing"):
        measure_spine(thin, LABELS, (1.0, 0.0, 1.0))


def test_neck_ct_phantom_plausible(spine_labels: dict[str, int]) -> None:
    """spine_ct phantoms: canal areas near the drawn ellipse's (the lordosis tilts them a little).

    The phantoms' bodies are sheared, not rotated, by their lordosis and span about 10 x 5 voxels on a sagittal
    plane, so their Cobb angle is only checked for a plausible range.
    """
    for seed in range(3):
        # without a tumour: one that eats into C2's or C7's body tilts its outline by 30 degrees and more
        phantom = generate_neck_ct(seed, spine_labels, PhantomSpec(shape=(48, 64, 64), tumor_probability=0.0))
        result = measure_spine(phantom.label, spine_labels, phantom.spacing)
        semi_x, semi_y = phantom.params["column"]["canal_semi_axes_mm"]
        drawn = math.pi * semi_x * semi_y
        assert len(result.levels) >= 8, result.skipped
        for m in result.levels:
            assert 0.8 * drawn <= m.canal_area_mm2 <= 1.1 * drawn, (seed, m)
            assert m.cord_area_mm2 is None and m.tumor_occupancy == 0.0
        assert result.cobb_c2_c7_deg is not None and abs(result.cobb_c2_c7_deg) < 30
        assert "disc C2/C3" in result.skipped  # CT phantoms label no discs


def tptbox_case(shared_data: Path) -> tuple[np.ndarray, sitk.Image]:
    """The TPTBox MR crop as one label in :data:`LABELS` terms: C5-C7 (endplates joined), two discs, cord, canal."""
    folder = shared_data / "mr-cervical-spine-tptbox"
    vert_image = sitk.ReadImage(str(folder / "sub-mri_seg-vert_label-6_msk.nii.gz"))
    vert = sitk.GetArrayFromImage(vert_image)
    subreg = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "sub-mri_seg-subreg_label-6_msk.nii.gz")))
    label = np.zeros(vert.shape, dtype=np.uint8)
    for level in (5, 6, 7):
        label[(vert == level) | (vert == 200 + level)] = LABELS[f"C{level}"]
    label[vert == 105] = LABELS["disc_C5_C6"]
    label[vert == 106] = LABELS["disc_C6_C7"]
    label[subreg == 61] = LABELS["canal"]
    label[subreg == 60] = LABELS["cord"]
    return label, vert_image


def test_real_tptbox_mr(shared_data: Path) -> None:
    """A real sagittal (PIR) T2 MR: perpendicular canal areas at most the axial ones, and close to them.

    Its rows are axial planes, and the canal is tilted 2-14 degrees from the cranio-caudal axis, so an axial section
    is larger by 1 / cos(tilt). (The anatomy is lumbar-sized, discs 48 x 36 mm: disc heights of ~10 mm.)
    """
    label, image = tptbox_case(shared_data)
    result = measure_spine(label, LABELS, image.GetSpacing(), image.GetDirection())
    assert [m.level for m in result.levels] == ["C5", "C5/C6", "C6", "C6/C7", "C7"]
    canal = np.isin(label, [LABELS["canal"], LABELS["cord"]])
    rows = canal.any(axis=(0, 2))  # PIR: index y runs inferior, so a (z, x) section is axial
    axial = canal.sum() / rows.sum() * image.GetSpacing()[0] * image.GetSpacing()[2]
    perpendicular = np.mean([m.canal_area_mm2 for m in result.levels])
    assert 0.9 * axial <= perpendicular <= axial
    assert all(m.cord_area_mm2 is not None and m.cord_area_mm2 < m.canal_area_mm2 for m in result.levels)
    heights = {d.disc: d.height_mm for d in result.discs}
    assert set(heights) == {"C5/C6", "C6/C7"}
    assert all(6.0 <= h <= 13.0 for h in heights.values()), heights


def test_neck_mr_phantom_cord_and_canal_areas() -> None:
    """spine_mr phantoms (1 x 1 x 1.5 mm): cord and canal areas within 10% of the drawn ellipses, every disc level
    measured, and a plausible Cobb angle."""
    labels = load_task("spine_mr").labels
    for seed in range(2):
        phantom = generate_neck_mr(seed, labels, "T2", replace(MR_SPEC, tumor_probability=0.0))
        result = measure_spine(phantom.label, labels, phantom.spacing)
        column = phantom.params["column"]
        canal = math.pi * math.prod(column["canal_semi_axes_mm"])
        cord = math.pi * math.prod(column["cord_semi_axes_mm"])
        assert {m.level for m in result.levels} >= {"C2", "C3", "C4", "C5", "C6", "C7", "C2/C3", "C6/C7"}
        for m in result.levels:
            assert m.canal_area_mm2 == pytest.approx(canal, rel=0.1), (seed, m)
            assert m.cord_area_mm2 == pytest.approx(cord, rel=0.1), (seed, m)
        assert {d.disc for d in result.discs} == set(DISC_LABELS)
        assert result.cobb_c2_c7_deg is not None and abs(result.cobb_c2_c7_deg) < 30
