"""MONAI dictionary-transform pipelines for a segmentation task, built from its YAML in one place.

Keys: ``image`` (intensity volume) and, for training, ``label`` (integer label volume whose values are the task's
label values). Loaded volumes are channel-first ``(1, X, Y, Z)`` MetaTensors, reoriented to RAS and resampled to
the task's spacing; intensities are scaled to ``[0, 1]`` (:func:`normalise_intensity`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from monai.transforms import (
    EnsureChannelFirstd,
    EnsureTyped,
    LoadImaged,
    Orientationd,
    RandCropByPosNegLabeld,
    RandFlipd,
    RandScaleIntensityd,
    RandShiftIntensityd,
    ScaleIntensityRanged,
    ScaleIntensityRangePercentilesd,
    Spacingd,
    SpatialPadd,
)

from hope.config import TaskDefinition


def load_and_normalise(task: TaskDefinition, keys: Sequence[str]) -> list[Callable]:
    """Load, reorient to RAS, resample to the task spacing and scale intensities of ``image``.

    ``label`` (when in ``keys``) is resampled with nearest-neighbour interpolation.
    """
    modes = ["bilinear" if k == "image" else "nearest" for k in keys]
    return [
        LoadImaged(keys=keys, reader="ITKReader", image_only=False),
        EnsureChannelFirstd(keys=keys),
        Orientationd(keys=keys, axcodes="RAS"),
        Spacingd(keys=keys, pixdim=task.preprocessing.spacing, mode=modes),
        normalise_intensity(task),
    ]


def normalise_intensity(task: TaskDefinition, key: str = "image") -> Callable:
    """Scale ``key`` to ``[0, 1]`` as the task's ``preprocessing.normalisation`` says (clipped either way).

    ``window``: the fixed ``intensity_range`` (CT's Hounsfield units mean the same in every scanner);
    ``percentile``: the volume's own ``percentiles`` (MR's intensities have no absolute scale).
    """
    pre = task.preprocessing
    if pre.normalisation == "percentile":
        low, high = pre.percentiles
        return ScaleIntensityRangePercentilesd(keys=key, lower=low, upper=high, b_min=0.0, b_max=1.0, clip=True)
    if pre.intensity_range is None:
        raise ValueError(f"task {task.name}: window normalisation needs preprocessing.intensity_range")
    low, high = pre.intensity_range
    return ScaleIntensityRanged(keys=key, a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True)


def train_transforms(task: TaskDefinition) -> list[Callable]:
    """Training pipeline: :func:`load_and_normalise`, padding, label-balanced random crops (for a ``percentile``
    task each scaled again to its own percentiles, as the served sliding window scales each window:
    :mod:`hope.sliding_window`) and augmentation."""
    keys = ["image", "label"]
    patch = task.preprocessing.patch_size
    return [
        *load_and_normalise(task, keys),
        SpatialPadd(keys=keys, spatial_size=patch),
        RandCropByPosNegLabeld(
            keys=keys,
            label_key="label",
            spatial_size=patch,
            pos=1,
            neg=1,
            num_samples=task.training.samples_per_image,
            image_key="image",
            image_threshold=0,
        ),
        *([normalise_intensity(task)] if task.preprocessing.normalisation == "percentile" else []),
        RandFlipd(keys=keys, prob=0.5, spatial_axis=0),
        RandScaleIntensityd(keys="image", factors=0.1, prob=0.5),
        RandShiftIntensityd(keys="image", offsets=0.05, prob=0.5),
        EnsureTyped(keys=keys),
    ]


def val_transforms(task: TaskDefinition) -> list[Callable]:
    """Validation pipeline: whole volumes, no augmentation."""
    keys = ["image", "label"]
    return [*load_and_normalise(task, keys), EnsureTyped(keys=keys)]


def infer_transforms(task: TaskDefinition, device: str | None = None) -> list[Callable]:
    """Inference pre-processing of ``image``; with a CUDA ``device`` the volume moves there once loaded, so
    reorientation, resampling and windowing run on the GPU."""
    steps = load_and_normalise(task, ["image"])
    if device is not None and device.startswith("cuda"):
        steps.insert(2, EnsureTyped(keys="image", device=device, track_meta=True))
    return [*steps, EnsureTyped(keys="image")]
