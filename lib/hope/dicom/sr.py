"""Spine measurements as a DICOM Comprehensive 3D SR (TID 1500 Measurement Report), in process with highdicom.

The report references the source image series (every instance, in CurrentRequestedProcedureEvidenceSequence) and
the SEG the measurements were taken on (in the evidence too, and as the referenced segment, with its source series,
of each level's and disc's measurement group when the SEG has that structure's segment). One measurement group per
level and per disc, one for the Cobb angle. There is no TID 1600 image library: highdicom builds one item per
source image and deep-copies the tree (20 s for 100 slices), and the evidence already lists every instance.

Codes (SCT: SNOMED CT; 99HOPE: HOPE's private scheme, for concepts without a standard code):

================================  ======================================  ===========  ===========================
value                             concept name                            unit (UCUM)  measurement finding site
================================  ======================================  ===========  ===========================
``canal_area_mm2``                SCT 42798000 Area                       mm2          SCT 61853006 Spinal canal
``cord_area_mm2``                 SCT 42798000 Area                       mm2          SCT 2748008 Spinal cord
``cord_ap_diameter_mm``           99HOPE CORD-APD                         mm           SCT 2748008 Spinal cord
``cord_transverse_diameter_mm``   99HOPE CORD-TD                          mm           SCT 2748008 Spinal cord
``compression_ratio``             99HOPE CORD-CR                          1            SCT 2748008 Spinal cord
``cord_occupancy``                99HOPE OCC-CORD                         1            SCT 61853006 Spinal canal
``tumor_occupancy``               99HOPE OCC-TUMOR                        1            SCT 61853006 Spinal canal
``height_mm`` (discs)             SCT 410668003 Length, derivation        mm           (group's disc level)
                                  SCT 373098007 Mean
``cobb_c2_c7_deg``                99HOPE COBB-C2C7                        deg          SCT 122494005 Cervical spine
================================  ======================================  ===========  ===========================

A group's finding site is its level: SCT C1-C7 vertebra codes (as in :data:`hope.dicom.seg.SEGMENT_CODES`) or SCT
"Level of C2/C3 intervertebral disc" (243902007) ... "Level of C7/T1 intervertebral disc" (243925008).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import highdicom as hd
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import generate_uid

from hope import __version__
from hope.dicom.seg import SEGMENT_CODES
from hope.measure.spine import CSF_LABEL, CT_CANAL_LABEL, DISC_LABELS, VERTEBRAE, SpineMeasurements

HOPE_SCHEME = "99HOPE"
MM2 = CodedConcept("mm2", "UCUM", "square millimeter")
MM = CodedConcept("mm", "UCUM", "millimeter")
DEGREE = CodedConcept("deg", "UCUM", "degree")
NO_UNITS = CodedConcept("1", "UCUM", "no units")

_AREA = CodedConcept("42798000", "SCT", "Area")
_LENGTH = CodedConcept("410668003", "SCT", "Length")
_MEAN = CodedConcept("373098007", "SCT", "Mean")
_CANAL = CodedConcept("61853006", "SCT", "Spinal canal")
_CORD = CodedConcept("2748008", "SCT", "Spinal cord")
_CERVICAL_SPINE = CodedConcept("122494005", "SCT", "Cervical spine")
_COBB = CodedConcept("COBB-C2C7", HOPE_SCHEME, "C2-C7 Cobb angle from the vertebral bodies, lordosis positive")

#: LevelMeasurement field -> (concept name, unit, measurement finding site).
LEVEL_CODES: Mapping[str, tuple[CodedConcept, CodedConcept, CodedConcept]] = {
    "canal_area_mm2": (_AREA, MM2, _CANAL),
    "cord_area_mm2": (_AREA, MM2, _CORD),
    "cord_ap_diameter_mm": (
        CodedConcept("CORD-APD", HOPE_SCHEME, "Spinal cord anteroposterior diameter, equivalent ellipse"), MM, _CORD
    ),
    "cord_transverse_diameter_mm": (
        CodedConcept("CORD-TD", HOPE_SCHEME, "Spinal cord transverse diameter, equivalent ellipse"), MM, _CORD
    ),
    "compression_ratio": (
        CodedConcept("CORD-CR", HOPE_SCHEME, "Spinal cord compression ratio (AP / transverse diameter)"),
        NO_UNITS,
        _CORD,
    ),
    "cord_occupancy": (
        CodedConcept("OCC-CORD", HOPE_SCHEME, "Spinal canal area fraction occupied by the cord"), NO_UNITS, _CANAL
    ),
    "tumor_occupancy": (
        CodedConcept("OCC-TUMOR", HOPE_SCHEME, "Spinal canal area fraction occupied by tumor"), NO_UNITS, _CANAL
    ),
}
#: Level name ("C5", "C5/C6") -> its SNOMED CT code.
LEVEL_SITES: Mapping[str, CodedConcept] = {name: SEGMENT_CODES[name][1] for name in VERTEBRAE} | {
    level: CodedConcept.from_code(getattr(codes.SCT, f"LevelOf{level.replace('/', '')}IntervertebralDisc"))
    for level in DISC_LABELS
}


def measurements_to_sr(
    measurements: SpineMeasurements,
    source_datasets: Sequence[Dataset],
    seg_dataset: Dataset,
    *,
    series_number: int = 301,
    series_description: str = "HOPE spine measurements",
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> hd.sr.Comprehensive3DSR:
    """A TID 1500 measurement report of ``measurements`` taken on ``seg_dataset`` over ``source_datasets``.

    Args:
        measurements: what :func:`hope.measure.spine.measure_spine` returned for the SEG's label volume.
        source_datasets: the source image series (any order; read with ``stop_before_pixels=True`` is enough).
        seg_dataset: the DICOM SEG the measurements were taken on, in the same study.
        series_number: SeriesNumber of the SR.
        series_description: SeriesDescription of the SR.
        series_instance_uid: SeriesInstanceUID of the SR; a new one when ``None``.
        sop_instance_uid: SOPInstanceUID of the SR; a new one when ``None``.

    Raises:
        ValueError: there is nothing to report (no level, disc or Cobb angle).

    Write the result with ``pydicom.dcmwrite`` or ``.save_as(path)``.
    """
    if not (measurements.levels or measurements.discs or measurements.cobb_c2_c7_deg is not None):
        raise ValueError(f"no spine measurement to report: {measurements.skipped}")
    segments = {str(item.SegmentLabel): int(item.SegmentNumber) for item in seg_dataset.SegmentSequence}
    canal_segment = next((segments[n] for n in (CT_CANAL_LABEL, CSF_LABEL) if n in segments), None)
    algorithm = hd.sr.AlgorithmIdentification(name="HOPE spine measurements", version=__version__)
    groups: list[Any] = []
    for level in measurements.levels:
        values = [
            hd.sr.Measurement(name=name, value=float(value), unit=unit, finding_sites=[hd.sr.FindingSite(site)])
            for field, (name, unit, site) in LEVEL_CODES.items()
            if (value := getattr(level, field)) is not None
        ]
        groups.append(_group(f"spine level {level.level}", LEVEL_SITES[level.level], values, algorithm,
                             seg_dataset, canal_segment))
    for disc in measurements.discs:
        height = hd.sr.Measurement(name=_LENGTH, value=float(disc.height_mm), unit=MM, derivation=_MEAN)
        groups.append(_group(f"disc {disc.disc}", LEVEL_SITES[disc.disc], [height], algorithm,
                             seg_dataset, segments.get(DISC_LABELS[disc.disc])))
    if measurements.cobb_c2_c7_deg is not None:
        cobb = hd.sr.Measurement(name=_COBB, value=float(measurements.cobb_c2_c7_deg), unit=DEGREE)
        groups.append(_group("Cobb C2-C7", _CERVICAL_SPINE, [cobb], algorithm, seg_dataset, None))
    observer = hd.sr.ObserverContext(
        observer_type=codes.cid270.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=generate_uid(entropy_srcs=["HOPE spine measurements"]), name="HOPE", manufacturer_name="HOPE"
        ),
    )
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.SCT.ImagingProcedure,
        imaging_measurements=groups,
    )
    return hd.sr.Comprehensive3DSR(
        evidence=[*source_datasets, seg_dataset],
        content=report,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=1,
        manufacturer="HOPE",
        is_complete=True,
        series_description=series_description,
    )


def sr_to_measurements(sr: Dataset) -> dict[str, Any]:
    """The numbers of a report written by :func:`measurements_to_sr`, shaped like ``SpineMeasurements.as_dict()``.

    ``levels`` and ``discs`` follow the report's order; a level's fields missing from the report are ``None``;
    there is no ``skipped``. Units are those of the field names (the report's are checked against them).

    Raises:
        ValueError: a measurement's unit is not the one HOPE writes for it.
    """
    level_fields = {_key(name, site): (field, unit) for field, (name, unit, site) in LEVEL_CODES.items()}
    level_names = {(code.value, code.scheme_designator): name for name, code in LEVEL_SITES.items()}
    result: dict[str, Any] = {"levels": [], "discs": [], "cobb_c2_c7_deg": None}
    for group in _items(sr, "125007"):  # Measurement Group
        site = next((item for item in group.ContentSequence if _concept(item) == ("363698007", "SCT")), None)
        site_code = None if site is None else _code_key(site.ConceptCodeSequence[0])
        level = level_names.get(site_code) if site_code else None
        values: dict[str, float] = {}
        for item in group.ContentSequence:
            if item.ValueType != "NUM":
                continue
            value, unit = _numeric(item)
            name = _concept(item)
            if name == _code_key(_COBB):
                result["cobb_c2_c7_deg"] = _checked(value, unit, DEGREE, "cobb_c2_c7_deg")
            elif name == _code_key(_LENGTH):
                result["discs"].append({"disc": level, "height_mm": _checked(value, unit, MM, "height_mm")})
            else:
                sites = [i for i in item.get("ContentSequence", []) if _concept(i) == ("363698007", "SCT")]
                key = (name, _code_key(sites[0].ConceptCodeSequence[0]) if sites else None)
                if key in level_fields:
                    field, expected = level_fields[key]
                    values[field] = _checked(value, unit, expected, field)
        if values:
            result["levels"].append({"level": level} | {field: values.get(field) for field in LEVEL_CODES})
    return result


def _group(
    name: str,
    site: CodedConcept,
    measurements: list[hd.sr.Measurement],
    algorithm: hd.sr.AlgorithmIdentification,
    seg: Dataset,
    segment_number: int | None,
) -> Any:
    """One measurement group: volumetric on the SEG's segment when there is one, else without an ROI."""
    common = {
        "tracking_identifier": hd.sr.TrackingIdentifier(uid=generate_uid(), identifier=f"HOPE {name}"),
        "finding_sites": [hd.sr.FindingSite(site)],
        "algorithm_id": algorithm,
        "measurements": measurements,
    }
    if segment_number is None:
        return hd.sr.MeasurementsAndQualitativeEvaluations(**common)
    segment = hd.sr.ReferencedSegment.from_segmentation(seg, segment_number)
    return hd.sr.VolumetricROIMeasurementsAndQualitativeEvaluations(referenced_segment=segment, **common)


def _items(dataset: Dataset, concept_value: str) -> list[Dataset]:
    """Every content item (at any depth) whose concept name is DCM ``concept_value``."""
    found = []
    for item in dataset.get("ContentSequence", []):
        if _concept(item) == (concept_value, "DCM"):
            found.append(item)
        found.extend(_items(item, concept_value))
    return found


def _concept(item: Dataset) -> tuple[str, str] | None:
    names = item.get("ConceptNameCodeSequence")
    return _code_key(names[0]) if names else None


def _code_key(code: Dataset | CodedConcept) -> tuple[str, str]:
    return str(code.CodeValue), str(code.CodingSchemeDesignator)


def _key(name: CodedConcept, site: CodedConcept) -> tuple[tuple[str, str], tuple[str, str]]:
    return _code_key(name), _code_key(site)


def _numeric(item: Dataset) -> tuple[float, tuple[str, str]]:
    measured = item.MeasuredValueSequence[0]
    return float(measured.NumericValue), _code_key(measured.MeasurementUnitsCodeSequence[0])


def _checked(value: float, unit: tuple[str, str], expected: CodedConcept, field: str) -> float:
    if unit != _code_key(expected):
        raise ValueError(f"{field} is in {unit[1]} {unit[0]!r}, expected UCUM {expected.value!r}")
    return value
