"""Slice geometry of single-frame DICOM series: positions, orientation and the slice order of volumes.

A volume's slice ``k`` is the ``k``-th image when the images are sorted by ascending distance along the slice
normal, ``dot(ImagePositionPatient, cross(row_direction, column_direction))``. This is the order SimpleITK's
GDCM ``ImageSeriesReader`` produces, so ``GetArrayFromImage(...)[k]`` is that image's plane.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from pydicom.dataset import Dataset

#: Largest difference between direction cosines that still counts as the same orientation.
ORIENTATION_TOLERANCE = 1e-4
#: Largest distance, in mm, between two positions that still counts as the same position.
POSITION_TOLERANCE_MM = 1e-2


def image_position(dataset: Dataset) -> np.ndarray:
    """ImagePositionPatient as a float array of 3, in mm; ``ValueError`` when it is missing or malformed."""
    return _floats(dataset, "ImagePositionPatient", 3)


def image_orientation(dataset: Dataset) -> np.ndarray:
    """ImageOrientationPatient (row then column direction cosines) as a float array of 6."""
    return _floats(dataset, "ImageOrientationPatient", 6)


def slice_normal(orientation: np.ndarray) -> np.ndarray:
    """The unit slice normal ``cross(row_direction, column_direction)`` of an ImageOrientationPatient."""
    normal = np.cross(orientation[:3], orientation[3:])
    norm = float(np.linalg.norm(normal))
    if norm < 0.5:
        raise ValueError(f"ImageOrientationPatient {orientation.tolist()} has parallel or zero directions")
    return normal / norm


def sort_slices(datasets: Sequence[Dataset]) -> list[Dataset]:
    """``datasets`` in volume slice order: ascending position along the slice normal.

    Raises ``ValueError`` naming the offending dataset when a dataset lacks ImagePositionPatient or
    ImageOrientationPatient (multi-frame and projection images have none), when orientations differ by more
    than :data:`ORIENTATION_TOLERANCE`, or when two datasets lie at the same position along the normal.
    """
    if not datasets:
        raise ValueError("no DICOM datasets to sort")
    orientations = [image_orientation(ds) for ds in datasets]
    for index, orientation in enumerate(orientations):
        if np.abs(orientation - orientations[0]).max() > ORIENTATION_TOLERANCE:
            raise ValueError(
                f"mixed orientation: {_describe(datasets[index], index)} has ImageOrientationPatient "
                f"{orientation.tolist()}, {_describe(datasets[0], 0)} has {orientations[0].tolist()}"
            )
    normal = slice_normal(orientations[0])
    distances = np.array([image_position(ds) @ normal for ds in datasets])
    order = np.argsort(distances, kind="stable")
    for first, second in zip(order[:-1], order[1:], strict=True):
        if distances[second] - distances[first] < POSITION_TOLERANCE_MM:
            raise ValueError(
                f"duplicate slice position {distances[first]:.3f} mm along the slice normal: "
                f"{_describe(datasets[first], first)} and {_describe(datasets[second], second)}"
            )
    return [datasets[index] for index in order]


def _floats(dataset: Dataset, keyword: str, count: int) -> np.ndarray:
    values = dataset.get(keyword)
    if not values or len(values) != count:
        uid = dataset.get("SOPInstanceUID", "?")
        raise ValueError(f"{keyword} is missing or does not hold {count} numbers in SOPInstanceUID {uid}")
    return np.array([float(v) for v in values])


def _describe(dataset: Dataset, index: int) -> str:
    """A short name of ``dataset`` for error messages: its index and SOP Instance UID."""
    return f"dataset {index} (SOPInstanceUID {dataset.get('SOPInstanceUID', '?')})"
