"""The labelled real scans of the shared data folder (``../shared/data``), for the real-data benchmarks.

Each :class:`RealScan` names an image (a file, or a DICOM series folder), its modality and contrast, the patient it
comes from (so that pairs can be kept cross-patient) and its reference structures: a label file of the case folder
and the values that form each structure. A structure has a *kind* (:func:`label_kind`: ``vertebra``, ``disc``,
``cord``, ``canal``). One named after its kind is the union of every level the reference has (TotalSegmentator's
vertebrae T11-L2 as "any vertebra"); one named like a task label (``C5``, ``disc_C5_C6``) is that level alone.

TotalSegmentator's ``spinal_cord`` is the thecal sac, the cord with the CSF around it: measured on these scans, its
median cross-section is 153-243 mm² (14-18 mm across) and it fills the bony canal, where the SCT scan's manual
cervical cord is 78 mm² (10 mm across) and TPTBox's cord plus CSF 196 mm². Its structure is :data:`THECAL_SAC`, not
``cord``: a network that tells the cord from the CSF is scored on their union there.

TPTBox's cord (``seg-subreg`` value 60, model output) is a third of the cord or less: a median 14.6 mm² per
slice, none in the lowest 14 of the sac's 52 slices, 345 voxels where the eroded sac holds 1,109 voxels darker
than its CSF (Otsu, T2), so a cord the size of that dark core would score at most 0.47 against it. Its cord and
canal (60, 61) together are the sac, scored as :data:`THECAL_SAC`.

The scans are few and small, and none has a tumour label (``shared/README.md``): the phantoms stand in for tumours.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import SimpleITK as sitk

from hope.dicom.volume import grid_mismatch, read_series
from hope.label_kinds import label_kind

#: The structure name of a reference that labels the cord and its CSF as one (TotalSegmentator's ``spinal_cord``).
THECAL_SAC = "thecal_sac"


@dataclass(frozen=True)
class Structure:
    """A reference structure: its ``name`` (its kind for a union of levels), the ``label`` file of the case folder
    and the ``values`` of that file that form it."""

    name: str
    label: str
    values: tuple[int, ...]

    @property
    def kind(self) -> str:
        """``vertebra``, ``disc``, ``cord``, ``canal``... (see :func:`label_kind`)."""
        return label_kind(self.name)


@dataclass(frozen=True)
class RealScan:
    """A real scan of the shared data folder and its reference structures."""

    name: str
    folder: str
    image: str  # a file of the folder, or a DICOM series sub-folder
    modality: Literal["CT", "MR"]
    contrast: str  # CT, T1 or T2
    patient: str
    structures: tuple[Structure, ...]
    source: str

    def kinds(self) -> set[str]:
        """The structure kinds the reference has."""
        return {s.kind for s in self.structures}


def _totalseg_values(data_dir: Path, folder: str, pattern: str) -> tuple[int, ...]:
    """The values of the case's ``labels.json`` whose TotalSegmentator name matches ``pattern`` (whole name)."""
    labels = json.loads((data_dir / folder / "labels.json").read_text())
    values = tuple(sorted(int(v) for v, name in labels.items() if re.fullmatch(pattern, name)))
    if not values:
        raise ValueError(f"{data_dir / folder / 'labels.json'} names no structure matching {pattern!r}")
    return values


def real_scans(data_dir: Path) -> tuple[RealScan, ...]:
    """The labelled real scans of ``data_dir`` (``shared/data``) with a spine structure: vertebrae, discs, the cord
    or the CSF space of the canal.

    The two CTs are of two patients (TotalSegmentator's CC BY 4.0 3 mm CT, and the Siemens Biograph DICOM series
    with patient id ``TOTALSEG_EXAMPLE``: other body habitus, arms down, other table). The abdominal MR is
    T1-weighted by its look (fat bright, CSF and fluid dark, spleen darker than liver, India-ink edges of an
    opposed-phase gradient echo); it has no header to confirm it.
    """
    ct, mr = "ct-abdomen-totalseg", "mr-abdomen-totalseg"
    tpt = "mr-cervical-spine-tptbox"
    vert, subreg = "sub-mri_seg-vert_label-6_msk.nii.gz", "sub-mri_seg-subreg_label-6_msk.nii.gz"
    totalseg_note = "TotalSegmentator test data; labels are TotalSegmentator model output; its spinal_cord is the sac"
    return (
        RealScan("ct-3mm", ct, "ct_3mm.nii.gz", "CT", "CT", "totalseg-dataset-ct", (
            Structure("vertebra", "ct_3mm_seg.nii.gz", _totalseg_values(data_dir, ct, r"vertebrae_.*")),
            Structure(THECAL_SAC, "ct_3mm_seg.nii.gz", _totalseg_values(data_dir, ct, "spinal_cord")),
        ), f"{totalseg_note} (vertebrae T11-L2)"),
        RealScan("ct-dicom", ct, "dicom", "CT", "CT", "TOTALSEG_EXAMPLE", (
            Structure("vertebra", "dicom_seg.nii.gz", _totalseg_values(data_dir, ct, r"vertebrae_.*")),
            Structure(THECAL_SAC, "dicom_seg.nii.gz", _totalseg_values(data_dir, ct, "spinal_cord")),
        ), f"{totalseg_note} (vertebrae T11-T12); JPEG 2000 DICOM series"),
        RealScan("mr-t2-cord", "mr-cervical-cord", "t2.nii.gz", "MR", "T2", "sct-testing-t2", (
            Structure("cord", "t2_seg-manual.nii.gz", (1,)),
        ), "Spinal Cord Toolbox testing data; manual cord mask"),
        RealScan("mr-t2-tptbox", tpt, "sub-mri_label-6_T2w.nii.gz", "MR", "T2", "tptbox-sub-mri", (
            *(Structure(f"C{v}", vert, (v, 200 + v)) for v in (5, 6, 7)),  # 200 + v: the endplates of vertebra v
            Structure("disc_C5_C6", vert, (105,)),
            Structure("disc_C6_C7", vert, (106,)),
            Structure(THECAL_SAC, subreg, (60, 61)),  # its cord label is a third of the cord (module docstring)
        ), "TPTBox test data; labelled C5-C7 but lumbar-sized anatomy"),
        RealScan("mr-t1-abdomen", mr, "mr_3mm.nii.gz", "MR", "T1", "totalseg-mr", (
            Structure("vertebra", "mr_3mm_seg.nii.gz", _totalseg_values(data_dir, mr, "vertebrae")),
            Structure("disc", "mr_3mm_seg.nii.gz", _totalseg_values(data_dir, mr, "intervertebral_discs")),
            Structure(THECAL_SAC, "mr_3mm_seg.nii.gz", _totalseg_values(data_dir, mr, "spinal_cord")),
        ), f"{totalseg_note} (thoracolumbar vertebrae and discs)"),
    )


@dataclass(frozen=True)
class LoadedScan:
    """A real scan's image and its reference ``masks`` (structure name -> ``(z, y, x)`` bool array on the image's
    grid; structures absent from the label are left out)."""

    scan: RealScan
    image: sitk.Image
    masks: Mapping[str, np.ndarray]

    def kind_mask(self, kind: str) -> np.ndarray | None:
        """The union of the masks of ``kind`` (every vertebra, every disc...), ``None`` when there is none."""
        masks = [m for name, m in self.masks.items() if label_kind(name) == kind]
        return np.logical_or.reduce(masks) if masks else None


def _read_image(path: Path) -> sitk.Image:
    return read_series(path) if path.is_dir() else sitk.ReadImage(str(path))


def _on_grid(label: sitk.Image, image: sitk.Image) -> sitk.Image:
    """``label`` on ``image``'s voxel grid: as is when it already lies on it, else resampled (nearest neighbour)."""
    if grid_mismatch(image, label) is None:
        return label
    return sitk.Resample(label, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())


def read_labels(scan: RealScan, data_dir: Path, image: sitk.Image) -> dict[str, np.ndarray]:
    """Every label file ``scan``'s structures come from, as ``(z, y, x)`` arrays on ``image``'s grid (all their
    values, not only the structures')."""
    folder = data_dir / scan.folder
    return {name: sitk.GetArrayFromImage(_on_grid(sitk.ReadImage(str(folder / name)), image))
            for name in dict.fromkeys(s.label for s in scan.structures)}


def load_scan(scan: RealScan, data_dir: Path) -> LoadedScan:
    """Read ``scan``'s image and its structures' masks from ``data_dir``."""
    image = _read_image(data_dir / scan.folder / scan.image)
    labels = read_labels(scan, data_dir, image)
    masks = {}
    for structure in scan.structures:
        mask = np.isin(labels[structure.label], structure.values)
        if mask.any():
            masks[structure.name] = mask
    return LoadedScan(scan, image, masks)


def load_scans(data_dir: Path, names: set[str] | None = None) -> list[LoadedScan]:
    """Every scan of :func:`real_scans` (only those named in ``names`` when given), loaded."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"shared data folder {data_dir} is missing (pass --shared DIR)")
    return [load_scan(s, data_dir) for s in real_scans(data_dir) if names is None or s.name in names]


def structure_bounds(loaded: LoadedScan, margin_mm: float) -> tuple[slice, slice, slice]:
    """The ``(z, y, x)`` slices of the bounding box of all ``loaded``'s structures, ``margin_mm`` wider on each side
    (within the image)."""
    union = np.logical_or.reduce(list(loaded.masks.values()))
    spacing_zyx = loaded.image.GetSpacing()[::-1]
    bounds = []
    for axis, (n, spacing) in enumerate(zip(union.shape, spacing_zyx, strict=True)):
        present = np.flatnonzero(union.any(axis=tuple(a for a in range(3) if a != axis)))
        margin = int(np.ceil(margin_mm / spacing))
        bounds.append(slice(max(0, int(present[0]) - margin), min(n, int(present[-1]) + 1 + margin)))
    z, y, x = bounds
    return z, y, x


def crop_to_structures(loaded: LoadedScan, margin_mm: float) -> LoadedScan:
    """``loaded`` cut to the bounding box of all its structures, ``margin_mm`` wider on each side (within the image)."""
    z, y, x = structure_bounds(loaded, margin_mm)
    return LoadedScan(loaded.scan, loaded.image[x, y, z], {name: m[z, y, x] for name, m in loaded.masks.items()})
