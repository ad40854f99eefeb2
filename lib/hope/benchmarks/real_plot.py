"""A picture of the supervised tasks' suggestions on the real scans: reference and suggestion outlined on a
sagittal and an axial slice through each scan's structures, so a reader sees where the figures of
``scripts/bench_real.py`` come from."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk

from hope.benchmarks.real_cases import LoadedScan


@dataclass(frozen=True)
class Suggestion:
    """A task's label of a real scan (``(z, y, x)`` on its grid), with the scan and its reference."""

    task: str
    scan: LoadedScan
    label: np.ndarray


#: Around the reference structures, how much of each plane a panel shows (mm).
MARGIN_MM = 25.0


def _lps(image: sitk.Image, array: np.ndarray) -> tuple[np.ndarray, tuple[float, float, float]]:
    """A ``(z, y, x)`` array on ``image``'s grid reoriented to LPS with the head at row 0 (a sagittal plane
    ``[:, :, x]`` shows the head up and the front left, an axial plane ``[z]`` the front up and the patient's right
    on the left: radiological), and its ``(x, y, z)`` spacing."""
    oriented = sitk.DICOMOrient(_as_image(array, image), "LPS")
    return sitk.GetArrayFromImage(oriented)[::-1], oriented.GetSpacing()


def _as_image(array: np.ndarray, grid: sitk.Image) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.CopyInformation(grid)
    return image


def plane_window(mask: np.ndarray, spacing: tuple[float, float]) -> tuple[slice, slice]:
    """The rows and columns of a 2D plane within :data:`MARGIN_MM` of ``mask`` (the whole plane without it)."""
    if not mask.any():
        return slice(None), slice(None)
    cuts = []
    for axis, mm in enumerate(spacing):
        found = np.flatnonzero(mask.any(axis=1 - axis))
        pad = int(round(MARGIN_MM / mm))
        cuts.append(slice(max(0, found[0] - pad), found[-1] + pad + 1))
    return cuts[0], cuts[1]


def _panel(ax: Any, image: np.ndarray, truth: np.ndarray, label: np.ndarray, spacing: tuple[float, float],
           title: str) -> None:
    """One plane: the image cropped around the reference, the reference outlined in green, the suggestion in red."""
    rows, columns = plane_window(truth, spacing)
    image, truth, label = image[rows, columns], truth[rows, columns], label[rows, columns]
    low, high = np.percentile(image, [1, 99])
    ax.imshow(image, cmap="gray", vmin=low, vmax=high, aspect=spacing[0] / spacing[1])
    for mask, colour in ((truth, "lime"), (label, "red")):
        if mask.any() and not mask.all():
            ax.contour(mask, levels=[0.5], colors=colour, linewidths=0.8)
    ax.set_title(title, fontsize=8)
    ax.set_axis_off()


def plot_suggestions(path: Path, suggestions: Sequence[Suggestion]) -> None:
    """Two panels per suggestion, a sagittal and an axial plane through the middle of the scan's structures, each
    cut to :data:`MARGIN_MM` around them: the union of the reference structures outlined in green and the union
    of the suggestion's labels in red; written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not suggestions:
        raise ValueError("no suggestion to plot")
    fig, axes = plt.subplots(2, len(suggestions), figsize=(2.8 * len(suggestions), 6.0), squeeze=False)
    for column, suggestion in enumerate(suggestions):
        scan = suggestion.scan
        reference = np.logical_or.reduce(list(scan.masks.values())).astype(np.uint8)
        image, (sx, sy, sz) = _lps(scan.image, sitk.GetArrayFromImage(scan.image).astype(np.float32))
        truth, _ = _lps(scan.image, reference)
        label, _ = _lps(scan.image, (suggestion.label > 0).astype(np.uint8))
        z, _, x = (int(np.median(np.flatnonzero(truth.any(axis=other)))) if truth.any() else n // 2
                   for other, n in zip(((1, 2), (0, 2), (0, 1)), truth.shape, strict=True))
        name = f"{suggestion.task}\n{scan.scan.name}"
        _panel(axes[0, column], image[:, :, x], truth[:, :, x], label[:, :, x], (sz, sy), f"{name}, sagittal")
        _panel(axes[1, column], image[z], truth[z], label[z], (sy, sx), "axial")
    fig.suptitle(f"real scans: reference (green), suggestion (red), {MARGIN_MM:g} mm around the reference",
                 fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
