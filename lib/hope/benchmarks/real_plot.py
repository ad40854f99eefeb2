"""A picture of the supervised tasks' suggestions on the real scans: reference and suggestion outlined on a
slice through each scan's structures, so a reader sees where the figures of ``scripts/bench_real.py`` come from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk

from hope.benchmarks.real_cases import LoadedScan


@dataclass(frozen=True)
class Suggestion:
    """A task's label of a real scan (``(z, y, x)`` on its grid), with the scan and its reference."""

    task: str
    scan: LoadedScan
    label: np.ndarray


def _sagittal(image: sitk.Image, array: np.ndarray) -> tuple[np.ndarray, float]:
    """A ``(z, y, x)`` array on ``image``'s grid reoriented to LPS with the head at row 0 (so a sagittal plane
    ``[:, :, x]`` shows the head up and the front left), and a sagittal plane's aspect ratio."""
    oriented = sitk.DICOMOrient(_as_image(array, image), "LPS")
    data = sitk.GetArrayFromImage(oriented)  # z (inferior->superior), y (anterior->posterior), x
    spacing = oriented.GetSpacing()
    return data[::-1, :, :], spacing[2] / spacing[1]


def _as_image(array: np.ndarray, grid: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    return image


def plot_suggestions(path: Path, suggestions: Sequence[Suggestion]) -> None:
    """One panel per suggestion: the scan's sagittal plane through the middle of its structures, the union of the
    reference structures outlined in green and the union of the suggestion's labels in red; written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not suggestions:
        raise ValueError("no suggestion to plot")
    fig, axes = plt.subplots(1, len(suggestions), figsize=(3.2 * len(suggestions), 3.8), squeeze=False)
    for ax, suggestion in zip(axes[0], suggestions, strict=True):
        scan = suggestion.scan
        reference = np.logical_or.reduce(list(scan.masks.values())).astype(np.uint8)
        image, aspect = _sagittal(scan.image, sitk.GetArrayFromImage(scan.image).astype(np.float32))
        truth, _ = _sagittal(scan.image, reference)
        label, _ = _sagittal(scan.image, (suggestion.label > 0).astype(np.uint8))
        columns = np.flatnonzero(truth.any(axis=(0, 1)))
        x = int(np.median(columns)) if len(columns) else image.shape[2] // 2
        low, high = np.percentile(image[:, :, x], [1, 99])
        ax.imshow(image[:, :, x], cmap="gray", vmin=low, vmax=high, aspect=aspect)
        for mask, colour in ((truth, "lime"), (label, "red")):
            if mask[:, :, x].any():
                ax.contour(mask[:, :, x], levels=[0.5], colors=colour, linewidths=0.8)
        ax.set_title(f"{suggestion.task}\n{scan.scan.name}", fontsize=8)
        ax.set_axis_off()
    fig.suptitle("real scans, sagittal: reference (green), suggestion (red)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
