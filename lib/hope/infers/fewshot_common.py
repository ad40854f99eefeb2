"""What the few-shot infer tasks share: the served model reloaded when a new version is published, request
parameters, and the lesion label written on the image's grid."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Generic, TypeVar

import numpy as np
import SimpleITK as sitk

from hope.dicom.volume import label_like
from hope.errors import InvalidInputError

Model = TypeVar("Model")


class ReloadingModel(Generic[Model]):
    """The model in ``path``, loaded with ``load(path)`` and loaded again whenever the file changes
    (a new version published or pinned by :class:`~hope.models.registry.ModelRegistry`)."""

    def __init__(self, path: Path, load: Callable[[Path], Model]) -> None:
        self.path = path
        self._load = load
        self._cached: tuple[float, Model] | None = None
        self._lock = threading.Lock()

    def get(self) -> Model:
        """The current model."""
        with self._lock:
            mtime = self.path.stat().st_mtime
            if self._cached is None or self._cached[0] != mtime:
                self._cached = (mtime, self._load(self.path))
            return self._cached[1]


def int_param(request: Mapping[str, Any], name: str, low: int, high: int, default: int = 0) -> int:
    """An integer request parameter within ``[low, high]``; a 422 saying the allowed range otherwise."""
    value = request.get(name, default)
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{name} must be an integer between {low} and {high}, got {value!r}") from None
    if not low <= number <= high:
        raise InvalidInputError(f"{name} must be between {low} and {high}, got {number}")
    return number


def write_lesion_label(mask: np.ndarray, image: sitk.Image, value: int) -> str:
    """``mask`` ``(z, y, x)`` on ``image``'s grid written as a NIfTI label (lesion voxels = ``value``); its path."""
    label = label_like((mask > 0).astype(np.uint8) * np.uint8(value), image)
    fd, path = tempfile.mkstemp(suffix=".nii.gz", prefix="hope-lesion-")
    os.close(fd)
    sitk.WriteImage(label, path, useCompression=True)
    return path


def lesion_size(mask: np.ndarray, image: sitk.Image) -> dict[str, float]:
    """Voxel count and volume (ml) of a ``(z, y, x)`` mask on ``image``'s grid."""
    voxels = int(np.count_nonzero(mask))
    return {"voxels": voxels, "volume_ml": round(voxels * float(np.prod(image.GetSpacing())) / 1000.0, 3)}
