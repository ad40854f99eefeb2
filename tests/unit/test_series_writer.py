"""Volumes written as DICOM series read back identically through pydicom and SimpleITK (GDCM)."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage

from hope.dicom.series_writer import (
    MANUFACTURER,
    MRSequence,
    SeriesIdentity,
    datasets_to_bytes,
    new_identity,
    volume_to_datasets,
    write_series,
)
from hope.dicom.volume import read_series

SPACING = (0.7, 0.9, 2.5)  # (x, y, z): all different, so a swapped axis shows
ORIGIN = (-12.5, 30.0, 4.0)
SAGITTAL_SPACING = (3.0, 0.5, 0.7)  # thick sagittal slices, fine in-plane pixels
#: SimpleITK's direction of a sagittal series: index axes run posterior, inferior, then to the right (PIR).
PIR = (0.0, 0.0, -1.0, 1.0, 0.0, 0.0, 0.0, -1.0, 0.0)


@pytest.fixture(scope="module")
def volume() -> np.ndarray:
    """A small (z, y, x) int16 volume with non-square slices and values across the HU range."""
    return np.random.default_rng(0).integers(-1024, 3072, size=(5, 12, 9)).astype(np.int16)


def _read_with_gdcm(folder: Path) -> sitk.Image:
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    return reader.Execute()


@pytest.mark.parametrize("modality", ["CT", "MR"])
def test_simpleitk_reads_back_the_same_volume(
    volume: np.ndarray, modality: str, tmp_path: Path
) -> None:
    paths = write_series(volume, SPACING, new_identity("P-1", modality=modality), tmp_path, origin=ORIGIN)
    assert len(paths) == volume.shape[0] and all(p.is_file() for p in paths)
    image = _read_with_gdcm(tmp_path)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), volume)
    assert image.GetSpacing() == pytest.approx(SPACING)
    assert image.GetOrigin() == pytest.approx(ORIGIN)
    assert image.GetDirection() == pytest.approx(np.eye(3).ravel())


def test_files_carry_identity_and_geometry(volume: np.ndarray, tmp_path: Path) -> None:
    identity = new_identity("P-2", study_description="neck", series_description="phantom")
    paths = write_series(volume, SPACING, identity, tmp_path, origin=ORIGIN)
    datasets = [pydicom.dcmread(p) for p in paths]
    for k, ds in enumerate(datasets):
        assert ds.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian
        assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == CTImageStorage
        assert ds.SOPInstanceUID == ds.file_meta.MediaStorageSOPInstanceUID
        assert (ds.PatientID, ds.PatientName) == ("P-2", "Phantom^P-2")
        assert ds.StudyInstanceUID == identity.study_instance_uid
        assert ds.SeriesInstanceUID == identity.series_instance_uid
        assert ds.FrameOfReferenceUID == identity.frame_of_reference_uid
        assert (ds.StudyDescription, ds.SeriesDescription) == ("neck", "phantom")
        assert ds.Manufacturer == MANUFACTURER and ds.Modality == "CT"
        assert ds.InstanceNumber == k + 1
        assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx([-12.5, 30.0, 4.0 + 2.5 * k])
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.9, 0.7])  # rows (y), then columns (x)
        assert (ds.Rows, ds.Columns) == (12, 9)
        np.testing.assert_array_equal(ds.pixel_array, volume[k])
    assert len({ds.SOPInstanceUID for ds in datasets}) == len(datasets)


def test_sop_instance_uids_are_stable_for_an_identity(volume: np.ndarray) -> None:
    identity = new_identity("P-3")
    first = [ds.SOPInstanceUID for ds in volume_to_datasets(volume, SPACING, identity)]
    again = [ds.SOPInstanceUID for ds in volume_to_datasets(volume, SPACING, identity)]
    other = [ds.SOPInstanceUID for ds in volume_to_datasets(volume, SPACING, new_identity("P-3"))]
    assert first == again
    assert not set(first) & set(other)


def test_mr_uses_mr_image_storage(volume: np.ndarray) -> None:
    ds = volume_to_datasets(volume, SPACING, new_identity("P-4", modality="MR"))[0]
    assert ds.SOPClassUID == MRImageStorage and ds.Modality == "MR"


def test_bytes_are_a_part10_file(volume: np.ndarray) -> None:
    identity = SeriesIdentity("P-5", "Doe^Jane", "1.2.3", "1.2.3.4", "1.2.3.5", series_number=7)
    data = datasets_to_bytes(volume_to_datasets(volume, SPACING, identity)[2])
    assert data[128:132] == b"DICM"
    ds = pydicom.dcmread(io.BytesIO(data))
    assert (ds.PatientName, ds.SeriesNumber, ds.InstanceNumber) == ("Doe^Jane", 7, 3)
    np.testing.assert_array_equal(ds.pixel_array, volume[2])


def test_unsupported_modality_is_rejected(volume: np.ndarray) -> None:
    with pytest.raises(ValueError, match="modality"):
        volume_to_datasets(volume, SPACING, new_identity("P-6", modality="US"))


@pytest.mark.parametrize(
    "bad",
    [np.zeros((4, 4), np.int16), np.zeros((2, 4, 4), np.float32), np.full((2, 4, 4), 40000, np.int32)],
)
def test_unwritable_volumes_are_rejected(bad: np.ndarray) -> None:
    with pytest.raises(ValueError, match="volume"):
        volume_to_datasets(bad, SPACING, new_identity("P-7"))


def test_non_positive_spacing_is_rejected(volume: np.ndarray) -> None:
    with pytest.raises(ValueError, match="spacing"):
        volume_to_datasets(volume, (1.0, 0.0, 1.0), new_identity("P-8"))


def test_datasets_serialise_as_part10_with_any_writer() -> None:
    """``dcmwrite`` with default arguments (as dicomweb-client's STOW-RS calls it) writes the DICM prefix."""
    datasets = volume_to_datasets(np.zeros((3, 4, 4), dtype=np.int16), (1.0, 1.0, 1.0), new_identity("P10"))
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, datasets[0])
    assert buffer.getvalue()[128:132] == b"DICM"


def _values_by_point(image: sitk.Image) -> dict[tuple[float, ...], int]:
    """Every voxel's value keyed by its physical (LPS) point, rounded to a micrometre."""
    array = sitk.GetArrayFromImage(image)  # (index z, y, x)
    return {
        tuple(round(c, 3) for c in image.TransformIndexToPhysicalPoint((i, j, k))): int(array[k, j, i])
        for k, j, i in np.ndindex(array.shape)
    }


def test_sagittal_mr_reads_back_at_the_same_physical_points(volume: np.ndarray, tmp_path: Path) -> None:
    identity = new_identity("P-11", modality="MR")
    paths = write_series(volume, SAGITTAL_SPACING, identity, tmp_path, origin=ORIGIN, orientation="sagittal")
    assert len(paths) == volume.shape[2]  # one slice per x index
    original = sitk.GetImageFromArray(volume)
    original.SetSpacing(SAGITTAL_SPACING)
    original.SetOrigin(ORIGIN)
    expected = _values_by_point(original)
    for image in (_read_with_gdcm(tmp_path), read_series(tmp_path)):
        assert image.GetDirection() == pytest.approx(PIR)
        assert image.GetSize() == (volume.shape[1], volume.shape[0], volume.shape[2])
        assert image.GetSpacing() == pytest.approx((0.5, 0.7, 3.0))  # y, z in-plane; x between slices
        assert _values_by_point(image) == expected


def test_sagittal_files_carry_mr_geometry(volume: np.ndarray, tmp_path: Path) -> None:
    sequence = MRSequence(acquisition_type="2D", repetition_time_ms=3000.0, echo_time_ms=100.0, echo_train_length=16)
    identity = new_identity("P-12", modality="MR")
    paths = write_series(volume, SAGITTAL_SPACING, identity, tmp_path, orientation="sagittal", sequence=sequence)
    datasets = [pydicom.dcmread(p) for p in paths]
    nz, ny, nx = volume.shape
    for n, ds in enumerate(datasets):
        assert ds.SOPClassUID == ds.file_meta.MediaStorageSOPClassUID == MRImageStorage and ds.Modality == "MR"
        assert [float(v) for v in ds.ImageOrientationPatient] == [0, 1, 0, 0, 0, -1]
        x = (nx - 1 - n) * 3.0  # instance 1 is the leftmost slice (the normal points right)
        assert [float(v) for v in ds.ImagePositionPatient] == pytest.approx([x, 0.0, (nz - 1) * 0.7])
        assert float(ds.SliceLocation) == pytest.approx(-x)
        assert [float(v) for v in ds.PixelSpacing] == pytest.approx([0.7, 0.5]) and float(ds.SliceThickness) == 3.0
        assert (ds.Rows, ds.Columns) == (nz, ny)
        np.testing.assert_array_equal(ds.pixel_array, volume[::-1, :, nx - 1 - n])  # rows from superior down
        assert ds.MRAcquisitionType == "2D" and ds.EchoTrainLength == 16
        assert (float(ds.RepetitionTime), float(ds.EchoTime)) == (3000.0, 100.0)


def test_unknown_orientation_is_rejected(volume: np.ndarray) -> None:
    with pytest.raises(ValueError, match="orientation"):
        volume_to_datasets(volume, SPACING, new_identity("P-13"), orientation="coronal")
