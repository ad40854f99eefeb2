"""Measurements taken on label volumes: :mod:`~hope.measure.spine` (canal, cord, discs, sagittal alignment), and of
label images and files in their physical frame (:mod:`~hope.measure.images`)."""

from hope.measure.images import measure_label_file, measure_label_image
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
    "measure_label_file",
    "measure_label_image",
    "measure_spine",
]
