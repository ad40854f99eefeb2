"""DICOM SEG <-> label volumes, in process with highdicom and pydicom.

Label volumes are ``(z, y, x)`` integer arrays on the grid of their source series: slice ``k`` is the ``k``-th
source image in :func:`hope.dicom.geometry.sort_slices` order, row ``y`` and column ``x`` are the image's
rows and columns. A task's ``labels`` mapping (label name -> voxel value, 0 is background) names the segments:
each value present in a volume becomes one BINARY segment whose SegmentLabel is the name.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import highdicom as hd
import numpy as np
from highdicom.sr import CodedConcept
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import SegmentationStorage, generate_uid

from hope import __version__
from hope.dicom.geometry import (
    ORIENTATION_TOLERANCE,
    POSITION_TOLERANCE_MM,
    image_orientation,
    image_position,
    sort_slices,
)

_ANATOMICAL_STRUCTURE = CodedConcept("123037004", "SCT", "Anatomical Structure")
_ABNORMAL_STRUCTURE = CodedConcept("49755003", "SCT", "Morphologically Abnormal Structure")
_TISSUE = CodedConcept("85756007", "SCT", "Tissue")
_BODY_SUBSTANCE = CodedConcept("91720002", "SCT", "Body Substance")
_SPINAL_CORD = CodedConcept("2748008", "SCT", "Spinal cord")

#: Label name -> (SegmentedPropertyCategory, SegmentedPropertyType), SNOMED CT codes of DICOM CID 7150/7151.
SEGMENT_CODES: Mapping[str, tuple[CodedConcept, CodedConcept]] = {
    "C1": (_ANATOMICAL_STRUCTURE, CodedConcept("14806007", "SCT", "C1 vertebra")),
    "C2": (_ANATOMICAL_STRUCTURE, CodedConcept("39976000", "SCT", "C2 vertebra")),
    "C3": (_ANATOMICAL_STRUCTURE, CodedConcept("113205007", "SCT", "C3 vertebra")),
    "C4": (_ANATOMICAL_STRUCTURE, CodedConcept("5329002", "SCT", "C4 vertebra")),
    "C5": (_ANATOMICAL_STRUCTURE, CodedConcept("36978003", "SCT", "C5 vertebra")),
    "C6": (_ANATOMICAL_STRUCTURE, CodedConcept("36054005", "SCT", "C6 vertebra")),
    "C7": (_ANATOMICAL_STRUCTURE, CodedConcept("87391001", "SCT", "C7 vertebra")),
    "vertebra": (_ANATOMICAL_STRUCTURE, CodedConcept("51282000", "SCT", "Vertebra")),
    "spinal_canal": (_ANATOMICAL_STRUCTURE, CodedConcept("61853006", "SCT", "Spinal canal")),
    "spinal_cord": (_ANATOMICAL_STRUCTURE, _SPINAL_CORD),
    "cord": (_ANATOMICAL_STRUCTURE, _SPINAL_CORD),  # spine_mr
    "canal": (_BODY_SUBSTANCE, CodedConcept("65216001", "SCT", "Cerebrospinal fluid")),  # spine_mr: the CSF space
    # spine_mr's discs: DICOM CID 7604 (Intervertebral Disc)
    "disc_C2_C3": (_ANATOMICAL_STRUCTURE, CodedConcept("1078209008", "SCT", "C2/C3 disc")),
    "disc_C3_C4": (_ANATOMICAL_STRUCTURE, CodedConcept("58820006", "SCT", "C3/C4 disc")),
    "disc_C4_C5": (_ANATOMICAL_STRUCTURE, CodedConcept("49400002", "SCT", "C4/C5 disc")),
    "disc_C5_C6": (_ANATOMICAL_STRUCTURE, CodedConcept("73959003", "SCT", "C5/C6 disc")),
    "disc_C6_C7": (_ANATOMICAL_STRUCTURE, CodedConcept("75095006", "SCT", "C6/C7 disc")),
    "disc_C7_T1": (_ANATOMICAL_STRUCTURE, CodedConcept("37414007", "SCT", "C7/T1 disc")),
    "tumor": (_ABNORMAL_STRUCTURE, CodedConcept("108369006", "SCT", "Neoplasm")),
}
#: Codes of label names missing from :data:`SEGMENT_CODES`.
FALLBACK_CODES: tuple[CodedConcept, CodedConcept] = (_TISSUE, _TISSUE)


class SegGeometryError(ValueError):
    """A label volume or a SEG does not lie on the voxel grid of the source series."""


@dataclass(frozen=True)
class SegmentInfo:
    """One segment: its label ``name`` (the SegmentLabel), its voxel ``value`` and its SEG ``number``."""

    name: str
    value: int
    number: int


def label_to_seg(
    label: np.ndarray,
    source_datasets: Sequence[Dataset],
    labels: Mapping[str, int],
    *,
    series_number: int = 300,
    series_description: str = "HOPE label",
    algorithm_name: str = "HOPE",
    algorithm_version: str = "",
    manufacturer: str = "HOPE",
    content_creator: str | None = None,
    manual: bool = True,
    series_instance_uid: str | None = None,
    sop_instance_uid: str | None = None,
) -> hd.seg.Segmentation:
    """A BINARY DICOM SEG of ``label`` referencing the source series, one segment per label name present.

    ``source_datasets`` are the source images in any order; only their metadata is read, so they may be read
    with ``stop_before_pixels=True`` or hold compressed pixel data. ``label`` must have the shape
    ``(n_slices, Rows, Columns)`` of the sources (else :class:`SegGeometryError`) and only values of
    ``labels`` or 0 (else ``ValueError`` naming the others). Segments follow ascending value; a name absent
    from the volume gets no segment, and a volume with no labelled voxel raises ``ValueError``. Slices
    without any label are omitted from the SEG. ``manual`` gives the segments the algorithm type MANUAL;
    otherwise AUTOMATIC, identified by ``algorithm_name`` and ``algorithm_version`` (HOPE's version when
    empty). Write the result with ``.save_as(path)`` or ``pydicom.dcmwrite``.
    """
    _check_label_values(labels)
    sources = sort_slices(source_datasets)
    shape = _grid_shape(sources)
    label = np.asarray(label)
    if label.shape != shape:
        raise SegGeometryError(
            f"label shape {label.shape} (z, y, x) does not match the source series, "
            f"{shape[0]} slices of {shape[1]} rows x {shape[2]} columns"
        )
    if label.dtype.kind not in "iu":
        raise ValueError(f"label must be an integer array, got {label.dtype}")
    segments = _present_segments(label, labels)
    segment_numbers = np.zeros(max(labels.values()) + 1, dtype=np.min_scalar_type(len(segments)))
    for segment in segments:
        segment_numbers[segment.value] = segment.number
    version = algorithm_version or __version__
    if manual:
        algorithm_type, algorithm = hd.seg.SegmentAlgorithmTypeValues.MANUAL, None
    else:
        algorithm_type = hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC
        algorithm = hd.AlgorithmIdentificationSequence(
            name=algorithm_name, family=codes.cid7162.ArtificialIntelligence, version=version
        )
    descriptions = []
    for segment in segments:
        category, property_type = SEGMENT_CODES.get(segment.name, FALLBACK_CODES)
        descriptions.append(
            hd.seg.SegmentDescription(
                segment_number=segment.number,
                segment_label=segment.name,
                segmented_property_category=category,
                segmented_property_type=property_type,
                algorithm_type=algorithm_type,
                algorithm_identification=algorithm,
            )
        )
    return hd.seg.Segmentation(
        source_images=sources,
        pixel_array=segment_numbers[label],
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=descriptions,
        series_instance_uid=series_instance_uid or generate_uid(),
        series_number=series_number,
        sop_instance_uid=sop_instance_uid or generate_uid(),
        instance_number=1,
        manufacturer=manufacturer,
        manufacturer_model_name=algorithm_name,
        software_versions=version,
        device_serial_number="0",
        series_description=series_description,
        content_description=series_description,
        content_creator_name=content_creator,
        omit_empty_frames=True,
    )


def seg_to_label(seg: Dataset, source_datasets: Sequence[Dataset], labels: Mapping[str, int]) -> np.ndarray:
    """The uint8 ``(z, y, x)`` label volume of a BINARY (or FRACTIONAL) SEG on the grid of its source series.

    Segments are matched to ``labels`` by SegmentLabel; a name missing from ``labels`` raises ``ValueError``
    naming it. Each SEG frame is placed on the source slice its DerivationImageSequence references by
    SOPInstanceUID, or else on the source slice at its ImagePositionPatient; a frame that matches no source
    slice, or whose position, orientation, pixel spacing or size disagrees with that slice, raises
    :class:`SegGeometryError`. Where segments overlap the higher label value wins. FRACTIONAL segments are
    thresholded at half their MaximumFractionalValue. Works for SEGs written by :func:`label_to_seg`,
    highdicom, dcmqi and other writers of single-frame-source SEGs.
    """
    _check_label_values(labels)
    if seg.get("SOPClassUID") != SegmentationStorage:
        raise ValueError(f"not a DICOM SEG: SOPClassUID {seg.get('SOPClassUID')}")
    sources = sort_slices(source_datasets)
    shape = _grid_shape(sources)
    if (seg.Rows, seg.Columns) != shape[1:]:
        raise SegGeometryError(
            f"SEG frames of {seg.Rows} rows x {seg.Columns} columns do not match the source images' "
            f"{shape[1]} x {shape[2]}"
        )
    values = {segment.number: segment.value for segment in _seg_segments(seg, labels)}
    masks = _frame_masks(seg)
    placements = _place_frames(seg, sources)
    if len(placements) != len(masks):
        raise ValueError(f"SEG has {len(masks)} frames but {len(placements)} per-frame functional groups")
    undescribed = sorted({number for _, number in placements} - values.keys())
    if undescribed:
        raise ValueError(f"SEG frames reference segment numbers {undescribed} absent from SegmentSequence")
    volume = np.zeros(shape, dtype=np.uint8)
    for index in sorted(range(len(masks)), key=lambda i: values[placements[i][1]]):
        slice_index, segment_number = placements[index]
        volume[slice_index][masks[index]] = values[segment_number]
    return volume


def seg_referenced_series_uid(seg: Dataset) -> str:
    """The SeriesInstanceUID of the series a SEG segments, from its ReferencedSeriesSequence."""
    series = {item.get("SeriesInstanceUID") for item in seg.get("ReferencedSeriesSequence", [])}
    series.discard(None)
    if len(series) != 1:
        raise ValueError(
            f"SEG {seg.get('SOPInstanceUID', '?')} references {len(series)} series in its "
            "ReferencedSeriesSequence, expected exactly one"
        )
    return str(series.pop())


def _check_label_values(labels: Mapping[str, int]) -> None:
    values = list(labels.values())
    if not values or len(set(values)) != len(values) or not all(1 <= v <= 255 for v in values):
        raise ValueError(f"labels must map names to distinct values in 1..255, got {dict(labels)}")


def _grid_shape(sources: Sequence[Dataset]) -> tuple[int, int, int]:
    sizes = {(int(ds.Rows), int(ds.Columns)) for ds in sources}
    if len(sizes) != 1:
        raise SegGeometryError(f"source images differ in size (rows, columns): {sorted(sizes)}")
    rows, columns = sizes.pop()
    return len(sources), rows, columns


def _present_segments(label: np.ndarray, labels: Mapping[str, int]) -> list[SegmentInfo]:
    present = {int(v) for v in np.unique(label)} - {0}
    unknown = present - set(labels.values())
    if unknown:
        raise ValueError(f"label values {sorted(unknown)} are not in the task's labels {dict(labels)}")
    if not present:
        raise ValueError(f"label is empty: no voxel has any of the values {dict(labels)}")
    names = sorted((value, name) for name, value in labels.items() if value in present)
    return [SegmentInfo(name, value, number) for number, (value, name) in enumerate(names, start=1)]


def _seg_segments(seg: Dataset, labels: Mapping[str, int]) -> list[SegmentInfo]:
    segments = [(int(item.SegmentNumber), str(item.SegmentLabel)) for item in seg.SegmentSequence]
    unknown = sorted({name for _, name in segments} - set(labels))
    if unknown:
        raise ValueError(f"SEG segments {unknown} are not in the task's labels {sorted(labels)}")
    return [SegmentInfo(name, labels[name], number) for number, name in segments]


def _frame_masks(seg: Dataset) -> np.ndarray:
    """Every frame of the SEG as a boolean ``(frames, rows, columns)`` array."""
    pixels = seg.pixel_array.reshape(-1, seg.Rows, seg.Columns)
    if seg.SegmentationType == "BINARY":
        return pixels > 0
    if seg.SegmentationType == "FRACTIONAL":
        return pixels > seg.MaximumFractionalValue / 2
    raise ValueError(f"unsupported SegmentationType {seg.SegmentationType}")


def _place_frames(seg: Dataset, sources: Sequence[Dataset]) -> list[tuple[int, int]]:
    """``(slice index, segment number)`` of every SEG frame, checked against the source grid."""
    slice_of_uid = {str(ds.SOPInstanceUID): index for index, ds in enumerate(sources)}
    positions = np.array([image_position(ds) for ds in sources])
    orientation = image_orientation(sources[0])
    placements = []
    for index, frame in enumerate(seg.PerFrameFunctionalGroupsSequence):
        name = f"SEG frame {index + 1}"
        segment = _functional_group(seg, frame, "SegmentIdentificationSequence")
        if segment is None:
            raise ValueError(f"{name} has no SegmentIdentificationSequence")
        referenced = {
            slice_of_uid[str(source.ReferencedSOPInstanceUID)]
            for derivation in frame.get("DerivationImageSequence", [])
            for source in derivation.get("SourceImageSequence", [])
            if str(source.get("ReferencedSOPInstanceUID")) in slice_of_uid
        }
        plane = _functional_group(seg, frame, "PlanePositionSequence")
        position = image_position(plane) if plane else None
        if len(referenced) == 1:
            slice_index = referenced.pop()
        elif position is not None:
            matches = np.flatnonzero(np.abs(positions - position).max(axis=1) < POSITION_TOLERANCE_MM)
            if not matches.size:
                raise SegGeometryError(
                    f"{name} at ImagePositionPatient {position.tolist()} lies on no source slice and "
                    "references none of the source images"
                )
            slice_index = int(matches[0])
        else:
            raise SegGeometryError(f"{name} references none of the source images and has no position")
        _check_frame_grid(seg, frame, name, sources[slice_index], position, orientation)
        placements.append((slice_index, int(segment.ReferencedSegmentNumber)))
    return placements


def _check_frame_grid(
    seg: Dataset,
    frame: Dataset,
    name: str,
    source: Dataset,
    position: np.ndarray | None,
    orientation: np.ndarray,
) -> None:
    """Raise :class:`SegGeometryError` where the frame's plane differs from its source image's plane."""
    if position is not None and np.abs(position - image_position(source)).max() >= POSITION_TOLERANCE_MM:
        raise SegGeometryError(
            f"{name} at ImagePositionPatient {position.tolist()} references SOPInstanceUID "
            f"{source.SOPInstanceUID} at {image_position(source).tolist()}"
        )
    plane = _functional_group(seg, frame, "PlaneOrientationSequence")
    if plane and np.abs(image_orientation(plane) - orientation).max() > ORIENTATION_TOLERANCE:
        raise SegGeometryError(
            f"{name} has ImageOrientationPatient {image_orientation(plane).tolist()}, "
            f"the source images {orientation.tolist()}"
        )
    measures = _functional_group(seg, frame, "PixelMeasuresSequence")
    if measures and "PixelSpacing" in measures and "PixelSpacing" in source:
        spacing = [float(v) for v in measures.PixelSpacing]
        source_spacing = [float(v) for v in source.PixelSpacing]
        if not np.allclose(spacing, source_spacing, rtol=0, atol=1e-4):
            raise SegGeometryError(f"{name} has PixelSpacing {spacing}, its source image {source_spacing}")


def _functional_group(seg: Dataset, frame: Dataset, keyword: str) -> Dataset | None:
    """The first item of the functional group ``keyword`` of a per-frame item, else of the shared groups."""
    for group in [frame, *seg.get("SharedFunctionalGroupsSequence", [])[:1]]:
        items = group.get(keyword)
        if items:
            return items[0]
    return None
