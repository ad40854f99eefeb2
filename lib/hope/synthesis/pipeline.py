"""The synthesis pipeline: (tissue map, task label) -> a random training image, as SynthSeg (Billot et al. 2023).

Input keys: ``tissues`` (channel-first integer tissue classes), ``label`` (the task's label values) and ``rendered``
(the phantom generator's own CT, T1 or T2 image of the anatomy, in ``[0, 1]``), on the task's grid
(:mod:`hope.synthesis.anatomy`). Output keys: ``image`` and ``label``, patches of the task's ``patch_size``.
Every call draws a new deformation, contrast and acquisition, so a network trained on the stream sees no fixed CT or
MR contrast, and has to segment from shape and context alone; a share ``rendered_prob`` of the images keeps the
phantom's own rendering as the contrast (deformed and acquired alike), which anchors the network to the contrasts
it serves while the random ones make it generalise.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from monai.transforms import (
    CopyItemsd,
    CropForegroundd,
    DeleteItemsd,
    EnsureTyped,
    OneOf,
    RandAdjustContrastd,
    RandAffined,
    RandBiasFieldd,
    RandFlipd,
    RandGaussianNoised,
    RandGaussianSmoothd,
    RandRicianNoised,
    RandSimulateLowResolutiond,
    RandSmoothDeformd,
    RandSpatialCropd,
    ScaleIntensityd,
    SpatialPadd,
)

from hope.config import TaskDefinition
from hope.synthesis.mixture import RandGaussianMixtureFromLabelsd
from hope.synthesis.resolution import RandThickSlicesd
from hope.transforms import normalise_intensity

TISSUES = "tissues"
RENDERED = "rendered"
Range = tuple[float, float]
_MARGIN = 4  # voxels rendered around a patch on each side, then cropped away: MONAI's blur pads with zeros and
             # would otherwise darken the patch's rim


@dataclass(frozen=True)
class SynthesisSettings:
    """How random the synthetic images are. Ranges are sampled uniformly per image; probabilities are per image.

    Intensities are in units of the image's range (``[0, 1]``) until the task's normalisation. Deformations act on
    the label maps before any image exists, with nearest-neighbour interpolation, so labels stay exact.
    """

    # contrast (hope.synthesis.mixture)
    mean_range: Range = (0.0, 1.0)  # class means
    std_range: Range = (0.0, 0.1)  # within-class texture
    merge_prob: float = 0.03  # per class: look like another class (~30 % of images merge some)
    rendered_prob: float = 0.0  # per image: the phantom's own rendering instead of a random contrast
    # where a patch lies in its anatomy
    background_prob: float = 0.0  # per image: anywhere in the volume (air, table, organs), not around its structures
    structure_margin_mm: float = 40.0  # otherwise: the structures' bounding box and this much around, whose centre
                                       # (shifted by translate_mm) is the patch's
    # deformation of the label maps
    rotate_deg: float = 15.0  # about each axis, +-
    scale: float = 0.15  # per axis, +- (fraction)
    shear: float = 0.05
    translate_mm: float = 15.0  # +-, per axis
    elastic_control_points: int = 5  # per axis: the elastic field's resolution over a patch
    elastic_mm: float = 4.0  # the largest displacement of a control point, mm
    flip_prob: float = 0.5  # left-right
    # acquisition
    blur_prob: float = 0.5  # partial volume: a blur of the rendered image
    blur_sigma: Range = (0.3, 1.0)  # voxels
    low_res_prob: float = 0.25  # a coarser isotropic acquisition, interpolated back (e.g. a 3 mm CT)
    low_res_zoom: Range = (0.5, 1.0)  # its resolution, as a fraction of the task's
    thick_slice_prob: float = 0.5  # a stack of thick slices along a random axis
    slice_thickness_mm: Range = (3.0, 6.0)
    bias_prob: float = 0.5  # smooth multiplicative field (coil shading)
    bias_coeff: float = 0.15  # polynomial coefficients in +-bias_coeff
    noise_prob: float = 0.8  # Gaussian or Rician, half and half
    noise_std: float = 0.05  # upper bound of the noise's standard deviation
    gamma_prob: float = 0.5
    gamma: Range = (0.5, 2.0)
    # field of view: a smaller scan than a patch, padded as sliding-window inference pads
    fov_prob: float = 0.3
    fov_min: float = 0.3  # smallest extent, as a fraction of the patch per axis (a 20-slice 2 mm CT: 0.42)

    def as_dict(self) -> dict[str, Any]:
        """The settings as plain JSON (for a report)."""
        return asdict(self)


def synthesis_transforms(task: TaskDefinition, settings: SynthesisSettings = SynthesisSettings()) -> list[Callable]:
    """The training-item pipeline of ``task``: deform, synthesise, acquire, then normalise as inference does.

    The image ends with :func:`hope.transforms.normalise_intensity` of the task. For a ``window`` task the
    synthetic image is first spread over the task's intensity window, so the window maps it back to ``[0, 1]``; for
    a ``percentile`` task the same operator as at inference sees the synthetic image, with nothing in between.
    """
    return [
        _context(task, settings),
        *_deform_labels(task, settings),
        OneOf([RandGaussianMixtureFromLabelsd(keys=TISSUES, image_key="image", mean_range=settings.mean_range,
                                              std_range=settings.std_range, merge_prob=settings.merge_prob),
               CopyItemsd(keys=RENDERED, names="image")],
              weights=[1.0 - settings.rendered_prob, settings.rendered_prob]),
        *_acquire(task, settings),
        *_field_of_view_and_normalise(task, settings),
        DeleteItemsd(keys=[TISSUES, RENDERED]),
        EnsureTyped(keys=["image", "label"], track_meta=False),
    ]


def _context(task: TaskDefinition, s: SynthesisSettings) -> Callable:
    """The part of an anatomy a patch is taken from: the bounding box of its structures with a margin, or (with
    ``background_prob``) a random box anywhere in the volume, of the size that holds a patch at any rotation.

    Anatomies are whole scans; without background boxes a network never sees what lies far from the spine, and
    sliding-window inference over a whole scan labels the air, the table or the bowel (measured on a 512² CT).
    """
    keys = [TISSUES, "label", RENDERED]
    pre = task.preprocessing
    margin = [math.ceil(s.structure_margin_mm / mm) for mm in pre.spacing]
    anywhere = [math.ceil((n + 2 * _MARGIN) * math.sqrt(2)) for n in pre.patch_size]
    return OneOf([CropForegroundd(keys=keys, source_key="label", margin=margin, allow_smaller=True,
                                  start_coord_key=None, end_coord_key=None),
                  RandSpatialCropd(keys=keys, roi_size=anywhere, random_size=False)],
                 weights=[1.0 - s.background_prob, s.background_prob])


def _deform_labels(task: TaskDefinition, s: SynthesisSettings) -> list[Callable]:
    """Affine then smooth elastic deformation of both label maps (nearest-neighbour) and the rendering (linear), to a
    patch with a margin of :data:`_MARGIN` voxels, then a flip.

    The maps are resampled as float32 (MONAI resamples uint8 volumes several times slower). The elastic field is a
    few random control points upsampled linearly (``RandSmoothDeformd``): ``Rand3DElasticd`` smooths a full-size
    random field and costs most of a training step on a CPU.
    """
    keys = [TISSUES, "label", RENDERED]
    modes = ["nearest", "nearest", "bilinear"]
    pre = task.preprocessing
    size = [n + 2 * _MARGIN for n in pre.patch_size]
    half_extent_mm = np.mean([n * mm / 2 for n, mm in zip(size, pre.spacing, strict=True)])
    return [
        EnsureTyped(keys=keys, dtype=torch.float32),
        RandAffined(
            keys=keys,
            spatial_size=size,
            prob=1.0,
            rotate_range=[np.deg2rad(s.rotate_deg)] * 3,
            shear_range=[s.shear] * 6,
            translate_range=[s.translate_mm / mm for mm in pre.spacing],
            scale_range=[s.scale] * 3,
            mode=modes,
            padding_mode="zeros",
        ),
        RandSmoothDeformd(
            keys=keys,
            spatial_size=size,
            rand_size=[s.elastic_control_points] * 3,
            prob=1.0,
            def_range=s.elastic_mm / half_extent_mm,
            field_mode="trilinear",
            align_corners=True,
            grid_mode=modes,
            grid_padding_mode="zeros",
        ),
        RandFlipd(keys=keys, prob=s.flip_prob, spatial_axis=0),
    ]


def _acquire(task: TaskDefinition, s: SynthesisSettings) -> list[Callable]:
    """Partial volume, resolution, slice thickness, bias field, noise and gamma, in the order a scanner adds them."""
    blur = s.blur_sigma
    noise = [RandGaussianNoised(keys="image", prob=s.noise_prob, std=s.noise_std),
             RandRicianNoised(keys="image", prob=s.noise_prob, std=s.noise_std)]
    return [
        RandGaussianSmoothd(keys="image", prob=s.blur_prob, sigma_x=blur, sigma_y=blur, sigma_z=blur),
        RandSimulateLowResolutiond(keys="image", prob=s.low_res_prob, zoom_range=s.low_res_zoom),
        RandThickSlicesd(keys="image", spacing=task.preprocessing.spacing, thickness_mm=s.slice_thickness_mm,
                         prob=s.thick_slice_prob),
        RandBiasFieldd(keys="image", prob=s.bias_prob, coeff_range=(-s.bias_coeff, s.bias_coeff)),
        OneOf(noise),
        RandAdjustContrastd(keys="image", prob=s.gamma_prob, gamma=s.gamma),
    ]


def _field_of_view_and_normalise(task: TaskDefinition, s: SynthesisSettings) -> list[Callable]:
    """Min-max to the task's units, a crop to a patch (or, with ``fov_prob``, to a smaller field of view), the
    task's normalisation, padding to a patch.

    The crop drops the rendered margin, and comes before the normalisation, so a small scan is normalised on its
    own voxels, as at inference;
    the padding comes after, replicating the image's edges as the served sliding window pads a volume smaller than
    a patch (:class:`hope.infers.segmentation.SegmentationInfer`); the label is padded with background (the served
    prediction of padding is cropped away).
    """
    pre = task.preprocessing
    low, high = pre.intensity_range if pre.normalisation == "window" else (0.0, 1.0)
    keys = ["image", "label"]
    smallest = [max(1, round(n * s.fov_min)) for n in pre.patch_size]
    small = RandSpatialCropd(keys=keys, roi_size=smallest, max_roi_size=pre.patch_size, random_size=True)
    patch = RandSpatialCropd(keys=keys, roi_size=pre.patch_size, random_size=False)
    return [
        ScaleIntensityd(keys="image", minv=low, maxv=high),
        OneOf([small, patch], weights=[s.fov_prob, 1.0 - s.fov_prob]),
        normalise_intensity(task),
        SpatialPadd(keys="image", spatial_size=pre.patch_size, mode="replicate"),
        SpatialPadd(keys="label", spatial_size=pre.patch_size, mode="constant"),
    ]
