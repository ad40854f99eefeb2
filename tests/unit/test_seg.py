"""DICOM SEG writing and reading (hope.dicom.seg) and slice order (hope.dicom.geometry)."""

from __future__ import annotations

import copy
import io
import json
import random
from pathlib import Path

import highdicom as hd
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, generate_uid

from hope.dicom.geometry import sort_slices
from hope.dicom.seg import (
    SEGMENT_CODES,
    SegGeometryError,
    label_to_seg,
    seg_referenced_series_uid,
    seg_to_label,
)

ROWS, COLUMNS, SLICES = 13, 15, 7  # odd sizes: 1-bit frames that do not end on a byte boundary


def ct_series(slices: int = SLICES) -> list[Dataset]:
    """A tiny CT series in volume order (ascending along the slice normal).

    The columns run anterior to posterior (``0, -1, 0``), so the normal is ``-z``: volume order is
    descending z and the reverse of InstanceNumber order.
    """
    study, series, frame_of_reference = generate_uid(), generate_uid(), generate_uid()
    datasets = []
    for k in range(slices):
        ds = Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.MediaStorageSOPClassUID = CTImageStorage
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = CTImageStorage
        ds.SOPInstanceUID = generate_uid()
        ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
        ds.FrameOfReferenceUID = frame_of_reference
        ds.Modality = "CT"
        ds.PatientID, ds.PatientName, ds.PatientSex = "HOPE-TEST", "Test^Phantom", "O"
        ds.PatientBirthDate = ""
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", ""
        ds.ReferringPhysicianName = ""
        ds.SeriesNumber, ds.InstanceNumber = 1, slices - k
        ds.ImageOrientationPatient = [1, 0, 0, 0, -1, 0]
        ds.ImagePositionPatient = [-10.0, 20.0, 50.0 - 2.5 * k]
        ds.PixelSpacing, ds.SliceThickness = [0.8, 0.7], 2.5
        ds.Rows, ds.Columns = ROWS, COLUMNS
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
        ds.PixelData = np.full((ROWS, COLUMNS), k, dtype=np.int16).tobytes()
        datasets.append(ds)
    return datasets


def multi_label() -> np.ndarray:
    """C1, C3, spinal canal and tumor (C2 and C4-C7 absent); the last slice is empty."""
    label = np.zeros((SLICES, ROWS, COLUMNS), dtype=np.uint8)
    label[0:4, 2:8, 3:10] = 3
    label[2:6, 5:11, 1:6] = 8
    label[1, 0, 0] = 9
    label[5, ROWS - 1, COLUMNS - 1] = 1
    return label


def reread(seg: Dataset) -> Dataset:
    """``seg`` written to bytes and read back by pydicom."""
    buffer = io.BytesIO()
    seg.save_as(buffer)
    buffer.seek(0)
    return pydicom.dcmread(buffer)


def test_round_trip(spine_labels: dict[str, int]) -> None:
    series, label = ct_series(), multi_label()
    seg = reread(label_to_seg(label, series, spine_labels))

    assert np.array_equal(seg_to_label(seg, series, spine_labels), label)
    assert seg_to_label(seg, series, spine_labels).dtype == np.uint8
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["C1", "C3", "spinal_canal", "tumor"]
    assert [s.SegmentAlgorithmType for s in seg.SegmentSequence] == ["MANUAL"] * 4
    assert seg.SegmentSequence[1].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "C3 vertebra"
    tumor = seg.SegmentSequence[3]
    assert tumor.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "49755003"
    assert tumor.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Neoplasm"
    assert seg.SegmentationType == "BINARY"
    assert seg_referenced_series_uid(seg) == series[0].SeriesInstanceUID
    instances = seg.ReferencedSeriesSequence[0].ReferencedInstanceSequence
    assert {item.ReferencedSOPInstanceUID for item in instances} == {ds.SOPInstanceUID for ds in series}
    assert seg.FrameOfReferenceUID == series[0].FrameOfReferenceUID
    assert seg.StudyInstanceUID == series[0].StudyInstanceUID
    assert seg.SeriesDescription == "HOPE label" and seg.SeriesNumber == 300
    assert seg.NumberOfFrames == 4 + 4 + 1 + 1  # only non-empty (slice, segment) frames


def test_highdicom_reads_what_label_to_seg_writes(spine_labels: dict[str, int]) -> None:
    series, label = ct_series(), multi_label()
    seg = hd.seg.Segmentation.from_dataset(reread(label_to_seg(label, series, spine_labels)), copy=False)
    numbers = seg.get_pixels_by_source_instance(
        [ds.SOPInstanceUID for ds in series], combine_segments=True, assert_missing_frames_are_empty=True
    )
    values = np.array([0] + [spine_labels[s.SegmentLabel] for s in seg.SegmentSequence])
    assert np.array_equal(values[numbers], label)


def test_shuffled_sources_round_trip(spine_labels: dict[str, int]) -> None:
    series, label = ct_series(), multi_label()
    shuffled = random.Random(0).sample(series, len(series))
    seg = reread(label_to_seg(label, shuffled, spine_labels))
    assert np.array_equal(seg_to_label(seg, series[::-1], spine_labels), label)


def test_sort_slices_matches_gdcm_order(tmp_path: Path) -> None:
    series = ct_series()
    for ds in series:
        ds.save_as(tmp_path / f"{ds.InstanceNumber:03d}.dcm", write_like_original=False)
    gdcm_order = [Path(f).name for f in sitk.ImageSeriesReader.GetGDCMSeriesFileNames(str(tmp_path))]
    assert gdcm_order == [f"{ds.InstanceNumber:03d}.dcm" for ds in series]
    assert sort_slices(random.Random(1).sample(series, len(series))) == series


def test_sort_slices_rejects_bad_series() -> None:
    series = ct_series()
    series[2].ImageOrientationPatient = [0, 1, 0, 0, 0, -1]
    with pytest.raises(ValueError, match="mixed orientation"):
        sort_slices(series)
    series = ct_series()
    del series[3].ImagePositionPatient
    with pytest.raises(ValueError, match="ImagePositionPatient is missing"):
        sort_slices(series)
    series = ct_series()
    series[4].ImagePositionPatient = series[1].ImagePositionPatient
    with pytest.raises(ValueError, match="duplicate slice position"):
        sort_slices(series)


def test_automatic_segments_identify_the_algorithm(spine_labels: dict[str, int]) -> None:
    seg = label_to_seg(
        multi_label(),
        ct_series(),
        spine_labels,
        manual=False,
        algorithm_name="SegResNet",
        algorithm_version="7",
        content_creator="Doe^Jane",
    )
    segment = seg.SegmentSequence[0]
    assert segment.SegmentAlgorithmType == "AUTOMATIC"
    assert segment.SegmentAlgorithmName == "SegResNet"
    assert segment.SegmentationAlgorithmIdentificationSequence[0].AlgorithmVersion == "7"
    assert seg.ContentCreatorName == "Doe^Jane"


def test_label_to_seg_rejects_bad_labels(spine_labels: dict[str, int]) -> None:
    series = ct_series()
    with pytest.raises(SegGeometryError, match=r"\(7, 15, 13\)"):
        label_to_seg(multi_label().transpose(0, 2, 1), series, spine_labels)
    with pytest.raises(SegGeometryError):
        label_to_seg(multi_label()[1:], series, spine_labels)
    unknown = multi_label()
    unknown[0, 0, 0], unknown[6, 0, 0] = 42, 200
    with pytest.raises(ValueError, match=r"\[42, 200\]"):
        label_to_seg(unknown, series, spine_labels)
    with pytest.raises(ValueError, match="label is empty"):
        label_to_seg(np.zeros((SLICES, ROWS, COLUMNS), dtype=np.uint8), series, spine_labels)


def test_label_to_seg_reads_no_pixel_data(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A real JPEG 2000 series: the SEG needs only metadata, and matches the reference label map."""
    folder = shared_data / "ct-abdomen-totalseg"
    series = [pydicom.dcmread(path) for path in sorted((folder / "dicom").iterdir())]
    names = {name: int(value) for value, name in json.loads((folder / "labels.json").read_text()).items()}
    labels = {name: names[name] for name in ("liver", "spinal_cord", "vertebrae_T12")}
    full = sitk.GetArrayFromImage(sitk.DICOMOrient(sitk.ReadImage(str(folder / "dicom_seg.nii.gz")), "LPS"))
    label = np.where(np.isin(full, list(labels.values())), full, 0)

    def no_decoding(self: Dataset, *args: object, **kwargs: object) -> None:
        raise AssertionError("pixel data was decoded")

    with monkeypatch.context() as patch:
        patch.setattr(Dataset, "convert_pixel_data", no_decoding)
        seg = reread(label_to_seg(label, series, labels))
    assert series[0].file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.90"
    assert [s.SegmentLabel for s in seg.SegmentSequence] == ["liver", "vertebrae_T12", "spinal_cord"]
    assert seg.SegmentSequence[0].SegmentedPropertyCategoryCodeSequence[0].CodeMeaning == "Tissue"
    assert np.array_equal(seg_to_label(seg, series, labels), label)


def test_seg_to_label_by_position_without_source_references(spine_labels: dict[str, int]) -> None:
    series, label = ct_series(), multi_label()
    seg = reread(label_to_seg(label, series, spine_labels))
    for frame in seg.PerFrameFunctionalGroupsSequence:
        del frame.DerivationImageSequence
    assert np.array_equal(seg_to_label(seg, series, spine_labels), label)

    shifted = copy.deepcopy(series)
    for ds in shifted:
        ds.SOPInstanceUID = generate_uid()
        ds.ImagePositionPatient = [-10.0, 20.0, float(ds.ImagePositionPatient[2]) + 1.0]
    with pytest.raises(SegGeometryError, match="lies on no source slice"):
        seg_to_label(seg, shifted, spine_labels)


def test_seg_to_label_rejects_frames_off_their_source(spine_labels: dict[str, int]) -> None:
    series, label = ct_series(), multi_label()
    seg = reread(label_to_seg(label, series, spine_labels))
    moved = copy.deepcopy(series)
    moved[0].ImagePositionPatient = [-9.0, 20.0, 50.0]
    with pytest.raises(SegGeometryError, match="references SOPInstanceUID"):
        seg_to_label(seg, moved, spine_labels)


def test_seg_to_label_names_unknown_segments(spine_labels: dict[str, int]) -> None:
    series = ct_series()
    seg = reread(label_to_seg(multi_label(), series, spine_labels))
    with pytest.raises(ValueError, match=r"\['spinal_canal', 'tumor'\]"):
        seg_to_label(seg, series, {"C1": 1, "C3": 3})


def test_fractional_seg_is_thresholded_at_one_half() -> None:
    series = ct_series()
    probability = np.zeros((SLICES, ROWS, COLUMNS), dtype=np.float32)
    probability[2, 3:9, 4:12] = 0.75
    probability[2, 3:9, 12:] = 0.25
    description = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="tumor",
        segmented_property_category=SEGMENT_CODES["tumor"][0],
        segmented_property_type=SEGMENT_CODES["tumor"][1],
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.MANUAL,
    )
    seg = hd.seg.Segmentation(
        source_images=series,
        pixel_array=probability,
        segmentation_type=hd.seg.SegmentationTypeValues.FRACTIONAL,
        segment_descriptions=[description],
        series_instance_uid=generate_uid(),
        series_number=1,
        sop_instance_uid=generate_uid(),
        instance_number=1,
        manufacturer="test",
        manufacturer_model_name="test",
        software_versions="0",
        device_serial_number="0",
    )
    assert np.array_equal(seg_to_label(reread(seg), series, {"tumor": 9}), np.where(probability > 0.5, 9, 0))


def test_seg_referenced_series_uid_needs_the_sequence() -> None:
    with pytest.raises(ValueError, match="references 0 series"):
        seg_referenced_series_uid(Dataset())


def dcmqi_ct(shared_data: Path) -> list[Dataset]:
    """The three CT slices the dcmqi SEGs segment, metadata only."""
    folder = shared_data / "dicom-seg-dcmqi" / "ct-3slice"
    return [pydicom.dcmread(path, stop_before_pixels=True) for path in sorted(folder.iterdir())]


def test_dcmqi_liver_matches_nrrd(shared_data: Path) -> None:
    """dcmqi's liver SEG reads to its NRRD label map, voxel for voxel.

    The NRRD lies on the sorted grid (origin at the lowest slice, z = -128.69, direction +z), while the SEG
    lists its frames top-down and references 03.dcm ... 01.dcm.
    """
    folder = shared_data / "dicom-seg-dcmqi"
    seg = pydicom.dcmread(folder / "liver.dcm")
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(folder / "liver_seg.nrrd")))
    label = seg_to_label(seg, dcmqi_ct(shared_data), {"Liver": 1})
    assert label.sum() > 100_000
    assert np.array_equal(label, expected)
    assert seg_referenced_series_uid(seg) == dcmqi_ct(shared_data)[0].SeriesInstanceUID
    with pytest.raises(ValueError, match="Liver"):
        seg_to_label(seg, dcmqi_ct(shared_data), {"tumor": 9})


def test_dcmqi_overlapping_segments_higher_value_wins(shared_data: Path) -> None:
    """partial_overlaps.dcm: 5 segments, 3106 voxels in more than one; compared with highdicom's masks."""
    seg = pydicom.dcmread(shared_data / "dicom-seg-dcmqi" / "partial_overlaps.dcm")
    sources = sort_slices(dcmqi_ct(shared_data))
    labels = {item.SegmentLabel: int(item.SegmentNumber) for item in seg.SegmentSequence}
    masks = hd.seg.Segmentation.from_dataset(seg, copy=False).get_pixels_by_source_instance(
        [ds.SOPInstanceUID for ds in sources],
        ignore_spatial_locations=True,
        assert_missing_frames_are_empty=True,
    )
    assert (masks.sum(axis=-1) > 1).sum() > 0
    expected = np.zeros(masks.shape[:3], dtype=np.uint8)
    for index in range(masks.shape[-1]):
        expected[masks[..., index] > 0] = index + 1
    assert np.array_equal(seg_to_label(seg, sources[::-1], labels), expected)
