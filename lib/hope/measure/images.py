"""Spine measurements of label images and files, in their own physical frame (SimpleITK's spacing and direction)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import SimpleITK as sitk

from hope.measure.spine import SpineMeasurements, measure_spine


def measure_label_image(label: sitk.Image, labels: Mapping[str, int]) -> SpineMeasurements:
    """:func:`~hope.measure.spine.measure_spine` of a 3-D label image, in mm in the patient frame."""
    return measure_spine(sitk.GetArrayFromImage(label), labels, label.GetSpacing(), label.GetDirection())


def measure_label_file(path: str | Path, labels: Mapping[str, int]) -> SpineMeasurements:
    """:func:`measure_label_image` of a label file (NIfTI, NRRD: anything SimpleITK reads)."""
    return measure_label_image(sitk.ReadImage(str(path)), labels)
