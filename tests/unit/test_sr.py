"""Spine measurements as a TID 1500 Comprehensive 3D SR (hope.dicom.sr): references, codes, units, round trip."""

from __future__ import annotations

import io
import math

import numpy as np
import pydicom
import pytest
from pydicom.dataset import Dataset
from pydicom.uid import Comprehensive3DSRStorage

from hope.dicom.seg import label_to_seg
from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.dicom.sr import LEVEL_SITES, measurements_to_sr, sr_to_measurements
from hope.measure import SpineMeasurements, measure_spine
from tests.unit.test_spine_measurements import LABELS, anterior_of, ball, tube

SPACING = (0.6, 0.6, 1.0)
SHAPE = (100, 90, 50)


def spine_label() -> np.ndarray:
    """A straight canal with a cord and a tumour, C3 and C4 with the C3/C4 disc between, tilted C2 and C7 bodies."""
    k, j, i = np.indices(SHAPE, dtype=float)
    points = np.stack([i * SPACING[0], j * SPACING[1], k * SPACING[2]], axis=-1)
    centre, axis = np.array([15.0, 35.0, 50.0]), np.array([0.0, 0.0, 1.0])
    forward = anterior_of(axis)
    label = np.zeros(SHAPE, dtype=np.uint8)
    label[tube(centre, axis, 8.0)(points)] = LABELS["canal"]
    label[tube(centre, axis, 4.0)(points)] = LABELS["cord"]
    label[ball(centre + [6.0, 0.0, 0.0], 1.5)(points)] = LABELS["tumor"]
    label[ball(centre + 16 * forward + [0.0, 0.0, 8.0], 5.0)(points)] = LABELS["C3"]
    label[ball(centre + 16 * forward - [0.0, 0.0, 8.0], 5.0)(points)] = LABELS["C4"]
    disc = (np.abs(points[..., 2] - centre[2]) <= 2.0) & tube(centre + 16 * forward, axis, 6.0)(points)
    label[disc] = LABELS["disc_C3_C4"]
    for name, height, tilt in (("C2", 85.0, 8.0), ("C7", 15.0, -6.0)):
        a, s = -(points[..., 1] - (centre[1] - 18)), points[..., 2] - height
        t = math.radians(tilt)
        box = (np.abs(math.cos(t) * a + math.sin(t) * s) <= 7) & (np.abs(-math.sin(t) * a + math.cos(t) * s) <= 5)
        label[box & (np.abs(points[..., 0] - centre[0]) <= 7)] = LABELS[name]
    return label


@pytest.fixture(scope="module")
def case() -> tuple[SpineMeasurements, list[Dataset], Dataset]:
    label = spine_label()
    sources = volume_to_datasets(np.zeros(SHAPE, dtype=np.int16), SPACING, new_identity("SR-TEST"))
    seg = label_to_seg(label, sources, LABELS)
    return measure_spine(label, LABELS, SPACING), sources, seg


def written(sr: Dataset) -> Dataset:
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, sr, write_like_original=False)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def nums(dataset: Dataset) -> list[Dataset]:
    """Every NUM content item of an SR, at any depth."""
    found = []
    for item in dataset.get("ContentSequence", []):
        if item.ValueType == "NUM":
            found.append(item)
        found.extend(nums(item))
    return found


def test_measurements_of_the_case(case: tuple[SpineMeasurements, list[Dataset], Dataset]) -> None:
    measurements, _, _ = case
    assert [m.level for m in measurements.levels] == ["C2", "C2/C3", "C3", "C3/C4", "C4", "C7"]
    assert [d.disc for d in measurements.discs] == ["C3/C4"]
    assert measurements.discs[0].height_mm == pytest.approx(4.0 + SPACING[2], rel=0.1)  # 5 slices of 1 mm
    assert measurements.cobb_c2_c7_deg == pytest.approx(14.0, abs=3.0)  # 1 mm slices: each tilt +-1.6 degrees
    assert all(0 < m.tumor_occupancy < 0.1 for m in measurements.levels if m.level == "C3/C4")


def test_sr_references_sources_and_seg(case: tuple[SpineMeasurements, list[Dataset], Dataset]) -> None:
    measurements, sources, seg = case
    sr = written(measurements_to_sr(measurements, sources, seg))
    assert sr.SOPClassUID == Comprehensive3DSRStorage and sr.Modality == "SR"
    assert sr.StudyInstanceUID == sources[0].StudyInstanceUID
    evidence = {
        str(instance.ReferencedSOPInstanceUID): str(series.SeriesInstanceUID)
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for instance in series.ReferencedSOPSequence
    }
    assert {str(ds.SOPInstanceUID) for ds in sources} | {str(seg.SOPInstanceUID)} == set(evidence)
    assert evidence[str(seg.SOPInstanceUID)] == seg.SeriesInstanceUID
    referenced_segments = {int(ref.ReferencedSegmentNumber) for ref in _referenced_segments(sr)}
    numbers = {str(s.SegmentLabel): int(s.SegmentNumber) for s in seg.SegmentSequence}
    assert referenced_segments == {numbers["canal"], numbers["disc_C3_C4"]}


def _referenced_segments(dataset: Dataset) -> list[Dataset]:
    """The ReferencedSOPSequence items naming a segment, anywhere in the content tree."""
    found = []
    for item in dataset.get("ContentSequence", []):
        for ref in item.get("ReferencedSOPSequence", []):
            if "ReferencedSegmentNumber" in ref:
                found.append(ref)
        found.extend(_referenced_segments(item))
    return found


def test_sr_numbers_carry_ucum_units_and_codes(case: tuple[SpineMeasurements, list[Dataset], Dataset]) -> None:
    measurements, sources, seg = case
    sr = written(measurements_to_sr(measurements, sources, seg))
    units = {
        (item.ConceptNameCodeSequence[0].CodeValue, unit.CodingSchemeDesignator, unit.CodeValue)
        for item in nums(sr)
        for unit in item.MeasuredValueSequence[0].MeasurementUnitsCodeSequence
    }
    assert {(scheme, unit) for _, scheme, unit in units} == {
        ("UCUM", "mm2"), ("UCUM", "mm"), ("UCUM", "1"), ("UCUM", "deg")
    }
    assert {("42798000", "UCUM", "mm2"), ("COBB-C2C7", "UCUM", "deg"), ("410668003", "UCUM", "mm")} <= units
    sites = {item.ConceptCodeSequence[0].CodeValue for item in _all(sr) if item.ValueType == "CODE"}
    assert {LEVEL_SITES["C3"].value, LEVEL_SITES["C3/C4"].value, "61853006", "2748008"} <= sites


def _all(dataset: Dataset) -> list[Dataset]:
    found = []
    for item in dataset.get("ContentSequence", []):
        found.append(item)
        found.extend(_all(item))
    return found


def test_sr_round_trip(case: tuple[SpineMeasurements, list[Dataset], Dataset]) -> None:
    measurements, sources, seg = case
    back = sr_to_measurements(written(measurements_to_sr(measurements, sources, seg)))
    expected = measurements.as_dict()
    del expected["skipped"]
    assert back.keys() == expected.keys()
    assert back["cobb_c2_c7_deg"] == pytest.approx(expected["cobb_c2_c7_deg"], rel=1e-6)
    assert back["discs"] == [d | {"height_mm": pytest.approx(d["height_mm"], rel=1e-6)} for d in expected["discs"]]
    for got, want in zip(back["levels"], expected["levels"], strict=True):
        assert got == {k: pytest.approx(v, rel=1e-6) if isinstance(v, float) else v for k, v in want.items()}


def test_nothing_to_report_raises(case: tuple[SpineMeasurements, list[Dataset], Dataset]) -> None:
    _, sources, seg = case
    with pytest.raises(ValueError, match="no spine measurement"):
        measurements_to_sr(SpineMeasurements((), (), None, {"centre_line": "no canal"}), sources, seg)
