"""Write a ``(z, y, x)`` volume as an uncompressed single-frame DICOM series (CT or MR Image Storage).

Geometry: voxel ``(k, j, i)`` of the volume lies at ``origin + (i * sx, j * sy, k * sz)`` mm in LPS, spacing
being ``(x, y, z)`` mm. The volume is cut into slices one of two ways (:data:`ORIENTATIONS`):

* ``axial``: ImageOrientationPatient ``[1, 0, 0, 0, 1, 0]``; slice ``k`` is ``volume[k]`` at
  ``origin + (0, 0, k * sz)``, PixelSpacing ``[sy, sx]`` (row spacing first), thickness ``sz``.
  GDCM/SimpleITK read the series back as the same array.
* ``sagittal``: ImageOrientationPatient ``[0, 1, 0, 0, 0, -1]`` as scanners write sagittals (rows run posterior,
  columns inferior); one slice per x index, its rows from the most superior z down, PixelSpacing ``[sz, sy]``,
  thickness ``sx``. The slice normal points to the patient's right, so the slices go from left (highest x) to
  right. Read back, the array is reoriented (PIR), but every voxel keeps its physical point and value.

InstanceNumber ``n + 1`` is the ``n``-th slice along the slice normal (the order readers stack them in);
SliceLocation is the position along that normal. Nothing is resampled: anisotropic voxels stay as given.

SOPInstanceUIDs derive from the SeriesInstanceUID and the slice index, so writing the same identity twice
gives the same instances (a re-upload to Orthanc replaces rather than duplicates).
"""

from __future__ import annotations

import copy
import io
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import (
    PYDICOM_IMPLEMENTATION_UID,
    CTImageStorage,
    ExplicitVRLittleEndian,
    MRImageStorage,
    generate_uid,
)
from pydicom.valuerep import DSfloat

SOP_CLASSES = {"CT": CTImageStorage, "MR": MRImageStorage}
ORIENTATIONS = ("axial", "sagittal")
MANUFACTURER = "HOPE phantom"
_INT16 = np.iinfo(np.int16)
_CT_WINDOW = (400.0, 1800.0)  # centre, width: a bone window


@dataclass(frozen=True)
class SeriesIdentity:
    """Who and what a series belongs to: patient, study and series identifiers.

    ``study_datetime`` is the StudyDate/StudyTime written; ``None`` means the time of writing.
    """

    patient_id: str
    patient_name: str
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    study_description: str = ""
    series_description: str = ""
    series_number: int = 1
    modality: str = "CT"
    study_datetime: datetime | None = None


@dataclass(frozen=True)
class MRSequence:
    """The acquisition attributes of an MR series (MR Image module); ignored for CT.

    The defaults describe a plain 3D spin echo at 1.5 T. Times are in ms, the field strength in tesla.
    """

    scanning_sequence: str = "SE"
    sequence_variant: str = "NONE"
    acquisition_type: str = "3D"  # MRAcquisitionType: 2D or 3D
    repetition_time_ms: float = 500.0
    echo_time_ms: float = 15.0
    echo_train_length: int = 1
    field_strength_t: float = 1.5


@dataclass(frozen=True)
class _Stack:
    """A volume cut into DICOM slices: pixel planes in instance order and the geometry of each."""

    name: str  # one of ORIENTATIONS
    planes: np.ndarray  # (n, rows, columns)
    positions: np.ndarray  # (n, 3) ImagePositionPatient, mm
    orientation: tuple[int, ...]  # ImageOrientationPatient
    pixel_spacing: tuple[float, float]  # between rows, between columns
    thickness: float

    @property
    def normal(self) -> np.ndarray:
        return np.cross(self.orientation[:3], self.orientation[3:])


def new_identity(
    patient_id: str, *, modality: str = "CT", study_description: str = "", series_description: str = ""
) -> SeriesIdentity:
    """A new study with one series for ``patient_id``: fresh UIDs, PatientName ``Phantom^<id>``, dated now."""
    return SeriesIdentity(
        patient_id=patient_id,
        patient_name=f"Phantom^{patient_id}",
        study_instance_uid=generate_uid(),
        series_instance_uid=generate_uid(),
        frame_of_reference_uid=generate_uid(),
        study_description=study_description,
        series_description=series_description,
        modality=modality,
        study_datetime=datetime.now().replace(microsecond=0),
    )


def volume_to_datasets(
    volume: np.ndarray,
    spacing: Sequence[float],
    identity: SeriesIdentity,
    *,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: str = "axial",
    sequence: MRSequence = MRSequence(),
) -> list[Dataset]:
    """One Part-10-ready dataset per slice of ``volume`` (``(z, y, x)`` integers that fit int16).

    Args:
        volume: ``(z, y, x)`` integer array whose values fit int16 (HU for CT).
        spacing: ``(x, y, z)`` voxel size in mm.
        identity: patient, study and series; its ``modality`` (CT or MR) picks the SOP class.
        origin: LPS position of voxel ``(0, 0, 0)`` in mm.
        orientation: ``"axial"`` or ``"sagittal"`` slices (module docstring).
        sequence: the MR acquisition attributes, written for MR only.

    Raises ``ValueError`` for an unsupported modality (only CT and MR) or orientation, a volume that is not 3-D
    or whose values do not fit signed 16 bits, or a spacing/origin that is not three (positive) numbers.
    """
    sop_class = _sop_class(identity.modality)
    pixels = _as_int16(volume)
    spacing = _spacing(spacing)
    if len(origin) != 3:
        raise ValueError(f"origin must be three numbers (x, y, z) mm, got {origin}")
    stack = _stack(pixels, spacing, np.array([float(o) for o in origin]), orientation)
    when = identity.study_datetime or datetime.now().replace(microsecond=0)
    series = _series_dataset(identity, stack, when, sequence)
    return [_slice_dataset(series, sop_class, stack, n) for n in range(stack.planes.shape[0])]


def write_series(
    volume: np.ndarray,
    spacing: Sequence[float],
    identity: SeriesIdentity,
    out_dir: Path,
    *,
    origin: Sequence[float] = (0.0, 0.0, 0.0),
    orientation: str = "axial",
    sequence: MRSequence = MRSequence(),
) -> list[Path]:
    """Write ``volume`` as ``out_dir/IM00001.dcm``, ``IM00002.dcm``, ... (one file per slice, in instance order).

    The arguments are :func:`volume_to_datasets`'s.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    datasets = volume_to_datasets(volume, spacing, identity, origin=origin, orientation=orientation, sequence=sequence)
    for ds in datasets:
        path = out_dir / f"IM{ds.InstanceNumber:05d}.dcm"
        path.write_bytes(datasets_to_bytes(ds))
        paths.append(path)
    return paths


def datasets_to_bytes(ds: Dataset) -> bytes:
    """``ds`` as DICOM Part-10 file bytes (preamble, ``DICM``, file meta), e.g. for a POST to Orthanc."""
    buffer = io.BytesIO()
    pydicom.dcmwrite(buffer, ds, write_like_original=False)
    return buffer.getvalue()


def _sop_class(modality: str) -> str:
    if modality not in SOP_CLASSES:
        raise ValueError(f"cannot write modality {modality!r}; supported: {', '.join(SOP_CLASSES)}")
    return SOP_CLASSES[modality]


def _as_int16(volume: np.ndarray) -> np.ndarray:
    volume = np.asarray(volume)
    if volume.ndim != 3 or 0 in volume.shape:
        raise ValueError(f"volume must be a non-empty 3-D (z, y, x) array, got shape {volume.shape}")
    if not np.issubdtype(volume.dtype, np.integer):
        raise ValueError(f"volume must hold integers (e.g. HU as int16), got {volume.dtype}")
    if volume.min() < _INT16.min or volume.max() > _INT16.max:
        raise ValueError(f"volume values {volume.min()}..{volume.max()} do not fit int16")
    return volume.astype(np.int16, copy=False)


def _spacing(spacing: Sequence[float]) -> tuple[float, float, float]:
    if len(spacing) != 3 or min(spacing) <= 0:
        raise ValueError(f"spacing must be three positive numbers (x, y, z) mm, got {spacing}")
    return float(spacing[0]), float(spacing[1]), float(spacing[2])


def _stack(
    pixels: np.ndarray, spacing: tuple[float, float, float], origin: np.ndarray, orientation: str
) -> _Stack:
    """Cut ``pixels`` into slices of ``orientation``, in ascending order along the slice normal."""
    sx, sy, sz = spacing
    if orientation == "axial":
        steps = np.arange(pixels.shape[0])[:, None] * np.array([0.0, 0.0, sz])
        return _Stack(orientation, pixels, origin + steps, (1, 0, 0, 0, 1, 0), (sy, sx), sz)
    if orientation == "sagittal":
        nz, _, nx = pixels.shape
        # Slice n is x index nx-1-n; its row r is z index nz-1-r and its column c is y index c.
        planes = np.flip(pixels, axis=(0, 2)).transpose(2, 0, 1)
        x = (nx - 1 - np.arange(nx)) * sx
        positions = origin + np.stack([x, np.zeros(nx), np.full(nx, (nz - 1) * sz)], axis=1)
        return _Stack(orientation, planes, positions, (0, 1, 0, 0, 0, -1), (sz, sy), sx)
    raise ValueError(f"cannot write {orientation!r} slices; supported orientations: {', '.join(ORIENTATIONS)}")


def _ds(value: float) -> DSfloat:
    """A decimal string that always fits the 16-character DS limit."""
    return DSfloat(value, auto_format=True)


def _series_dataset(identity: SeriesIdentity, stack: _Stack, when: datetime, sequence: MRSequence) -> Dataset:
    """The attributes shared by every slice: patient, study, series, equipment, frame, pixel format."""
    ds = Dataset()
    ds.SpecificCharacterSet = "ISO_IR 192"
    ds.PatientName = identity.patient_name
    ds.PatientID = identity.patient_id
    ds.PatientBirthDate = ""
    ds.PatientSex = ""
    ds.StudyInstanceUID = identity.study_instance_uid
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = when.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = when.strftime("%H%M%S")
    ds.AccessionNumber = ""
    ds.ReferringPhysicianName = ""
    ds.StudyID = "1"
    ds.StudyDescription = identity.study_description
    ds.Modality = identity.modality
    ds.SeriesInstanceUID = identity.series_instance_uid
    ds.SeriesNumber = identity.series_number
    ds.SeriesDescription = identity.series_description
    ds.PatientPosition = "HFS"
    ds.Manufacturer = MANUFACTURER
    ds.FrameOfReferenceUID = identity.frame_of_reference_uid
    ds.PositionReferenceIndicator = ""
    ds.ImageOrientationPatient = list(stack.orientation)
    ds.PixelSpacing = [_ds(s) for s in stack.pixel_spacing]
    ds.SliceThickness = ds.SpacingBetweenSlices = _ds(stack.thickness)
    ds.Rows, ds.Columns = int(stack.planes.shape[1]), int(stack.planes.shape[2])
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 1
    ds.AcquisitionNumber = 1
    _add_modality_attributes(ds, identity.modality, stack, sequence)
    return ds


def _add_modality_attributes(ds: Dataset, modality: str, stack: _Stack, sequence: MRSequence) -> None:
    """CT Image module (rescale to HU, bone window) or MR Image module (window over the data range)."""
    if modality == "CT":
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL" if stack.name == "axial" else "OTHER"]
        ds.KVP = 120
        ds.RescaleIntercept, ds.RescaleSlope, ds.RescaleType = 0, 1, "HU"
        centre, width = _CT_WINDOW
    else:
        ds.ImageType = ["ORIGINAL", "PRIMARY", "OTHER"]
        ds.ScanningSequence, ds.SequenceVariant = sequence.scanning_sequence, sequence.sequence_variant
        ds.ScanOptions = ""
        ds.MRAcquisitionType = sequence.acquisition_type
        ds.RepetitionTime, ds.EchoTime = _ds(sequence.repetition_time_ms), _ds(sequence.echo_time_ms)
        ds.EchoTrainLength = sequence.echo_train_length
        ds.MagneticFieldStrength = _ds(sequence.field_strength_t)
        low, high = float(stack.planes.min()), float(stack.planes.max())
        centre, width = (low + high) / 2, max(high - low, 1.0)
    ds.WindowCenter, ds.WindowWidth = _ds(centre), _ds(width)


def _slice_dataset(series: Dataset, sop_class: str, stack: _Stack, n: int) -> Dataset:
    ds = copy.deepcopy(series)
    ds.SOPClassUID = sop_class
    ds.SOPInstanceUID = generate_uid(entropy_srcs=[series.SeriesInstanceUID, str(n)])
    ds.InstanceNumber = n + 1
    position = stack.positions[n]
    ds.ImagePositionPatient = [_ds(p) for p in position]
    ds.SliceLocation = _ds(float(position @ stack.normal))
    ds.PixelData = np.ascontiguousarray(stack.planes[n], dtype="<i2").tobytes()
    ds.file_meta = _file_meta(sop_class, ds.SOPInstanceUID)
    ds.is_little_endian, ds.is_implicit_VR = True, False
    # A preamble makes every writer (dicomweb-client's STOW-RS uses ``dcmwrite`` as-is) emit a Part-10 file with
    # ``DICM``; without it Orthanc stores a headerless stream and WADO-RS hands it back unreadable.
    ds.preamble = b"\0" * 128
    return ds


def _file_meta(sop_class: str, sop_instance: str) -> FileMetaDataset:
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = sop_instance
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta
