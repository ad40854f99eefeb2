"""Measurements taken on label volumes: :mod:`~hope.measure.spine` (canal, cord, discs, sagittal alignment)."""

from hope.measure.spine import (
    CORD_LABEL,
    CSF_LABEL,
    CT_CANAL_LABEL,
    DISC_LABELS,
    TUMOR_LABEL,
    VERTEBRAE,
    DiscHeight,
    LevelMeasurement,
    SpineMeasurements,
    measure_spine,
)

__all__ = [
    "CORD_LABEL",
    "CSF_LABEL",
    "CT_CANAL_LABEL",
    "DISC_LABELS",
    "TUMOR_LABEL",
    "VERTEBRAE",
    "DiscHeight",
    "LevelMeasurement",
    "SpineMeasurements",
    "measure_spine",
]
