"""DICOM series on disk <-> SimpleITK volumes, and grid comparison between an image and a label."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pydicom
import SimpleITK as sitk
from pydicom.dataset import Dataset

from hope.dicom.geometry import sort_slices


def read_datasets(series_dir: Path, *, with_pixels: bool = False) -> list[Dataset]:
    """Every DICOM file in ``series_dir``, each with its ``filename``, sorted along the slice normal."""
    files = sorted(p for p in Path(series_dir).iterdir() if p.is_file())
    if not files:
        raise FileNotFoundError(f"no DICOM files in {series_dir}")
    datasets = [pydicom.dcmread(p, stop_before_pixels=not with_pixels) for p in files]
    return sort_slices(datasets) if len(datasets) > 1 else datasets


def read_series(series_dir: Path) -> sitk.Image:
    """Read a series as one SimpleITK volume whose slice ``k`` is the ``k``-th dataset of :func:`read_datasets`.

    Compressed transfer syntaxes (JPEG, JPEG 2000, RLE) are decoded by SimpleITK's GDCM. A single-image series
    (CR, DX) becomes a volume of one slice.
    """
    files = [str(ds.filename) for ds in read_datasets(series_dir)]
    if len(files) == 1:
        image = sitk.ReadImage(files[0])
        return image if image.GetDimension() == 3 else sitk.JoinSeries(image)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(files)
    return reader.Execute()


def grid_mismatch(image: sitk.Image, label: sitk.Image, tolerance_mm: float = 1e-3) -> str | None:
    """Why ``label`` does not lie on ``image``'s voxel grid, or ``None`` when it does."""
    if image.GetSize() != label.GetSize():
        return f"label size {label.GetSize()} differs from image size {image.GetSize()} (x, y, z voxels)"
    checks: Sequence[tuple[str, tuple[float, ...], tuple[float, ...], float]] = (
        ("spacing", image.GetSpacing(), label.GetSpacing(), tolerance_mm),
        ("origin", image.GetOrigin(), label.GetOrigin(), tolerance_mm * 10),
        ("direction", image.GetDirection(), label.GetDirection(), 1e-4),
    )
    for name, expected, got, tol in checks:
        if not np.allclose(expected, got, atol=tol):
            rounded = tuple(round(v, 4) for v in got)
            want = tuple(round(v, 4) for v in expected)
            return f"label {name} {rounded} differs from image {name} {want}"
    return None


def write_volume(image: sitk.Image, path: Path) -> Path:
    """Write ``image`` (NIfTI, NRRD... by extension) and return the path."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), useCompression=True)
    return path


def label_like(array: np.ndarray, reference: sitk.Image) -> sitk.Image:
    """A uint8 label volume from a ``(z, y, x)`` array, with ``reference``'s geometry."""
    label = sitk.GetImageFromArray(array.astype(np.uint8))
    label.CopyInformation(reference)
    return label
