"""Scribble corrections of one structure: histogram likelihood and current-label prior, optimised by GraphCut.

The MONAI transforms here are chained by :class:`hope.infers.scribbles.StructureScribblesInfer`, the infer task
behind ``POST /infer/<task>_scribbles``, with the task's ``interactive:`` settings
(:class:`hope.config.InteractiveSettings`).

The client uploads one label volume on the image's grid as the ``label`` of ``POST /infer/<model>``: the current
label (HOPE's suggestion or the annotator's working label) with the scribbles painted over it. That is what the 3D
Slicer MONAI Label module sends (all segments exported to one labelmap, described by ``label_info``) and what OHIF
sends as ``.bin`` (the server converts it to a volume on the image's grid). Scribble voxels carry the values of
``interactive.scribbles`` in ``configs/tasks/<task>.yaml`` unless ``label_info`` names segments
``background_scribbles`` / ``foreground_scribbles`` (MONAI Label's convention, :func:`scribble_values`); other
segments named in ``label_info`` are mapped to the task's label values by name (Slicer numbers segments in its own
order). The request parameter ``selected_label_name`` chooses the structure.

Only that structure is refined, and only within ``margin_mm`` of the scribbles (:class:`CropToStructured`):

1. a spatial prior from the current structure, with the scribbles' surroundings added or removed, and intensity
   histograms learnt from it and from the scribbles give the structure's probability
   (:class:`MakeLikelihoodFromScribblesAndLabeld`); other labels are kept off unless the structure is listed in
   ``interactive.overrides`` (the tumour grows inside its vertebra) or a foreground scribble is drawn over them;
2. scribbles become hard constraints (ISeg unary, :class:`monailabel.scribbles.transforms.MakeISegUnaryd`) and
   numpymaxflow's GraphCut segments the structure (:class:`ApplyGraphCutd`);
3. the result is merged into the whole label (:class:`MergeStructured`): voxels the structure gives up take the
   label of the nearest voxel that is neither the structure nor given up (a tumour trimmed out of a vertebra gives
   its voxels back to the vertebra); voxels under scribbles in the upload take the label of the nearest
   unscribbled voxel (:class:`SplitScribblesd`).

The result is written on the input image's grid (same size, spacing, origin and direction): the whole label volume
(``output_label: all``) or, for clients that import the result into the selected segment only (the Slicer module),
the refined structure as 0/1 (``output_label: selected``).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import numpymaxflow
import torch
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import MapTransform, SpatialCrop, Transform
from scipy import ndimage
from scipy.special import expit, logit

from hope.config.interactive import OUTPUT_LABELS
from hope.errors import InvalidInputError
from hope.interactive.geometry import bounding_box, fill_nearest

BACKGROUND_SCRIBBLES = "background_scribbles"
FOREGROUND_SCRIBBLES = "foreground_scribbles"
_EPS = 1e-6


def scribble_values(label_info: Any, background: int, foreground: int) -> tuple[int, int]:
    """Scribble values of a request: ``label_info`` entries named like MONAI Label's scribble layers, else defaults."""
    ids = {BACKGROUND_SCRIBBLES: background, FOREGROUND_SCRIBBLES: foreground}
    for entry in label_info if isinstance(label_info, list) else []:
        if isinstance(entry, dict) and entry.get("name") in ids and entry.get("id") is not None:
            ids[entry["name"]] = int(entry["id"])
    return ids[BACKGROUND_SCRIBBLES], ids[FOREGROUND_SCRIBBLES]


def _spacing(data: torch.Tensor) -> list[float]:
    """Voxel size in mm along the array's spatial axes (1 mm without metadata)."""
    if isinstance(data, MetaTensor):
        return [float(s) for s in data.pixdim]
    return [1.0] * (data.ndim - 1)


def _array(data: Any) -> np.ndarray:
    """``data`` (tensor or array-like) as a numpy array."""
    return data.detach().cpu().numpy() if isinstance(data, torch.Tensor) else np.asarray(data)


def _like(reference: torch.Tensor, array: np.ndarray) -> MetaTensor:
    """``array`` as a MetaTensor carrying ``reference``'s metadata (affine included)."""
    meta = dict(reference.meta) if isinstance(reference, MetaTensor) else {}
    return MetaTensor(torch.as_tensor(array), meta=meta)


class SplitScribblesd(MapTransform):
    """Split an uploaded label volume into the current label (task label values) and a scribbles volume.

    ``keys`` names the upload; it is replaced by the current label, and ``scribbles_key`` receives a volume that
    holds ``background`` / ``foreground`` where scribbles are and 0 elsewhere. With ``label_info`` (a list of
    ``{"name", "id"}``), upload values are mapped to ``label_values`` by segment name; without it they are taken as
    label values. Values that are neither become background. Voxels under scribbles take the label of the nearest
    unscribbled voxel. The upload must lie on ``image_key``'s grid (a 422 otherwise).

    Args:
        keys: the uploaded label volume(s), channel first, on the image's grid.
        label_values: the task's label names and values.
        background: the value of background scribbles in the upload.
        foreground: the value of foreground scribbles in the upload.
        image_key: the image whose grid the upload must share.
        scribbles_key: where the scribbles volume is written.
        label_info_key: the request's segment names and values (``[{"name", "id"}]``), if any.
    """

    def __init__(
        self,
        keys: KeysCollection,
        label_values: Mapping[str, int],
        background: int,
        foreground: int,
        image_key: str = "image",
        scribbles_key: str = "scribbles",
        label_info_key: str = "label_info",
    ) -> None:
        super().__init__(keys)
        self.label_values = dict(label_values)
        self.background = background
        self.foreground = foreground
        self.image_key = image_key
        self.scribbles_key = scribbles_key
        self.label_info_key = label_info_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = d[self.image_key]
        for key in self.key_iterator(d):
            upload = d[key]
            self._check_grid(image, upload)
            values = _array(upload).astype(np.int32, copy=False)
            scribbled = (values == self.background) | (values == self.foreground)
            scribbles = np.where(scribbled, values, 0).astype(np.uint8)
            current = self._lookup(d.get(self.label_info_key), int(values.max(initial=0)))[np.maximum(values, 0)]
            fill_nearest(current[0], scribbled[0], ~scribbled[0], _spacing(upload))
            d[key] = _like(upload, current)
            d[self.scribbles_key] = _like(upload, scribbles)
        return d

    def _lookup(self, label_info: Any, max_value: int) -> np.ndarray:
        """Upload value -> task label value (index = upload value)."""
        table = np.zeros(max(max_value, *self.label_values.values()) + 1, dtype=np.uint8)
        named = {
            int(entry["id"]): entry["name"]
            for entry in (label_info if isinstance(label_info, list) else [])
            if isinstance(entry, dict) and entry.get("name") in self.label_values and entry.get("id") is not None
        }
        identity = {v: v for v in self.label_values.values()}
        mapping = {i: self.label_values[name] for i, name in named.items()} if named else identity
        for upload_value, label_value in mapping.items():
            if 0 < upload_value < table.size:
                table[upload_value] = label_value
        return table

    def _check_grid(self, image: torch.Tensor, upload: torch.Tensor) -> None:
        if tuple(image.shape[1:]) != tuple(upload.shape[1:]):
            raise InvalidInputError(
                f"the uploaded label has {tuple(upload.shape[1:])} voxels but the image has {tuple(image.shape[1:])}; "
                "send the label (with the scribbles) on the image's own grid"
            )
        if (
            isinstance(image, MetaTensor)
            and isinstance(upload, MetaTensor)
            and not np.allclose(_array(image.affine), _array(upload.affine), atol=1e-3)
        ):
            raise InvalidInputError(
                "the uploaded label's spacing, origin or direction differ from the image's; "
                "send the label (with the scribbles) on the image's own grid"
            )


class CropToStructured(MapTransform):
    """Crop ``keys`` to the box around the scribbles (around the structure when there are none), plus ``margin_mm``.

    Corrections stay local: only voxels within ``margin_mm`` of a scribble (of the structure, without scribbles)
    may change. ``frozen_key`` receives the others, and the box's outer faces inside the volume, where the current
    label is kept so the result joins the label outside the box. The box (``[start, end)`` per spatial axis) is
    stored under ``box_key`` for :class:`MergeStructured`. A request with neither the structure nor foreground
    scribbles has nothing to refine: a 422.

    Args:
        keys: the volumes to crop (image, current label, scribbles), channel first.
        structure: the label value of the structure to refine.
        foreground: the value of foreground scribbles.
        margin_mm: how far from the scribbles (from the structure, without scribbles) voxels may change.
        label_key: the current label.
        scribbles_key: the scribbles volume (0 where there is none).
        box_key: where the box is stored.
        frozen_key: where the mask of the voxels that must keep their label is stored.
    """

    def __init__(
        self,
        keys: KeysCollection,
        structure: int,
        foreground: int,
        margin_mm: float,
        label_key: str = "label",
        scribbles_key: str = "scribbles",
        box_key: str = "roi_box",
        frozen_key: str = "frozen",
    ) -> None:
        super().__init__(keys)
        self.structure = structure
        self.foreground = foreground
        self.margin_mm = margin_mm
        self.label_key = label_key
        self.scribbles_key = scribbles_key
        self.box_key = box_key
        self.frozen_key = frozen_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        label = d[self.label_key]
        structure, scribbles = _array(label)[0] == self.structure, _array(d[self.scribbles_key])[0]
        if not (structure.any() or (scribbles == self.foreground).any()):
            raise InvalidInputError(
                f"the label holds no voxel of value {self.structure} and there are no foreground scribbles "
                f"(value {self.foreground}): nothing to refine"
            )
        seeds = scribbles != 0 if scribbles.any() else structure
        sampling = _spacing(label)
        box = bounding_box(seeds, [math.ceil(self.margin_mm / s) for s in sampling])
        crop = SpatialCrop(roi_start=[s.start for s in box], roi_end=[s.stop for s in box])
        for key in self.key_iterator(d):
            d[key] = crop(d[key])
        frozen = ndimage.distance_transform_edt(~seeds[box], sampling=sampling) > self.margin_mm
        for axis, (window, size) in enumerate(zip(box, structure.shape, strict=True)):
            faces = frozen.swapaxes(0, axis)
            faces[0] |= window.start > 0
            faces[-1] |= window.stop < size
        d[self.box_key] = [[s.start for s in box], [s.stop for s in box]]
        d[self.frozen_key] = frozen
        return d


class MakeLikelihoodFromScribblesAndLabeld(Transform):
    """Foreground probability of the structure from intensity histograms and the current label.

    The current structure (with foreground scribbles added and background scribbles removed) gives a spatial prior,
    a sigmoid of the signed distance (mm) to its boundary. Intensity histograms (``num_bins`` over ``[0, 1]``,
    smoothed, with a 1 % uniform floor) are learnt with that prior as soft membership: foreground weighted by the
    prior, background by its complement, each mixed half and half with the histogram of its scribbles when there
    are any. Both are fused in logit space:
    ``logit p = (1 - prior_weight) * logit(f / (f + b)) + prior_weight * distance / prior_sigma_mm``.

    With ``protect_others``, voxels of other labels are left out of the histograms and get probability 0, so a
    vertebra cannot swallow its neighbour, except labels that foreground scribbles are drawn over (the annotator
    says that label is wrong there); a structure drawn over others (the tumour inside its vertebra) is refined
    without. Voxels of ``frozen`` keep the current label. Writes ``post_proc_label`` as ``[background, foreground]``
    probabilities, channel first.

    Args:
        image: the image key, intensities windowed to ``[0, 1]``.
        label: the current label key.
        scribbles: the scribbles key.
        structure: the label value of the structure.
        background: the value of background scribbles.
        foreground: the value of foreground scribbles.
        num_bins: intensity histogram bins.
        prior_weight: 0 for the intensity likelihood only, 1 for the current label's prior only.
        prior_sigma_mm: the scale (mm) of the prior's sigmoid across the structure's boundary.
        scribble_radius_mm: voxels this close to a scribble count as marked in the prior (0: scribble voxels only).
        protect_others: keep the structure off the voxels of other labels.
        frozen: the key of the mask of voxels that keep the current label.
        post_proc_label: where the probabilities are written.
    """

    def __init__(
        self,
        image: str,
        label: str,
        scribbles: str,
        structure: int,
        background: int,
        foreground: int,
        num_bins: int,
        prior_weight: float,
        prior_sigma_mm: float,
        scribble_radius_mm: float,
        protect_others: bool,
        frozen: str = "frozen",
        post_proc_label: str = "prob",
    ) -> None:
        self.image = image
        self.label = label
        self.scribbles = scribbles
        self.structure = structure
        self.background = background
        self.foreground = foreground
        self.num_bins = num_bins
        self.prior_weight = prior_weight
        self.prior_sigma_mm = prior_sigma_mm
        self.scribble_radius_mm = scribble_radius_mm
        self.protect_others = protect_others
        self.frozen = frozen
        self.post_proc_label = post_proc_label

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        image = _array(d[self.image])[0].astype(np.float32)
        label = _array(d[self.label])[0]
        scribbles = _array(d[self.scribbles])[0]
        sampling = _spacing(d[self.image])
        marked_fg, marked_bg = scribbles == self.foreground, scribbles == self.background
        inside = ((label == self.structure) | self._reach(marked_fg, sampling)) & ~self._reach(marked_bg, sampling)
        distance = ndimage.distance_transform_edt(inside, sampling=sampling) - ndimage.distance_transform_edt(
            ~inside, sampling=sampling
        )
        prior = expit(distance / self.prior_sigma_mm)
        others = np.zeros_like(inside)
        if self.protect_others:
            covered = np.unique(label[marked_fg])  # labels a foreground scribble is drawn over are fair game
            others = (label != 0) & (label != self.structure) & ~np.isin(label, covered)
        bins = np.clip((image * self.num_bins).astype(np.int64), 0, self.num_bins - 1)
        fg_hist = self._histogram(bins, np.where(others, 0.0, prior), marked_fg)
        bg_hist = self._histogram(bins, np.where(others, 0.0, 1.0 - prior), marked_bg)
        intensity = np.clip(fg_hist[bins] / (fg_hist[bins] + bg_hist[bins]), _EPS, 1.0 - _EPS)
        fused = (1.0 - self.prior_weight) * logit(intensity) + self.prior_weight * distance / self.prior_sigma_mm
        foreground = np.where(others, _EPS, np.clip(expit(fused), _EPS, 1.0 - _EPS))
        frozen = np.asarray(d[self.frozen])
        foreground[frozen] = np.where(label[frozen] == self.structure, 1.0 - _EPS, _EPS)
        foreground = foreground.astype(np.float32)
        d[self.post_proc_label] = np.stack([1.0 - foreground, foreground])
        return d

    def _reach(self, scribbled: np.ndarray, sampling: Sequence[float]) -> np.ndarray:
        """Voxels within ``scribble_radius_mm`` of a scribble."""
        if not scribbled.any() or self.scribble_radius_mm <= 0:
            return scribbled
        return ndimage.distance_transform_edt(~scribbled, sampling=sampling) <= self.scribble_radius_mm

    def _histogram(self, bins: np.ndarray, weights: np.ndarray, scribbled: np.ndarray) -> np.ndarray:
        """Weighted intensity density, mixed half and half with the scribbles' density when there are scribbles."""
        density = self._density(np.bincount(bins.ravel(), weights.ravel(), minlength=self.num_bins))
        if scribbled.any():
            density = (density + self._density(np.bincount(bins[scribbled], minlength=self.num_bins))) / 2
        return density

    def _density(self, counts: np.ndarray) -> np.ndarray:
        smoothed = ndimage.gaussian_filter1d(counts.astype(np.float64), sigma=1.0, mode="nearest")
        total = smoothed.sum()
        uniform = np.full(self.num_bins, 1.0 / self.num_bins)
        return uniform if total <= 0 else 0.99 * smoothed / total + 0.01 * uniform


class ApplyGraphCutd(Transform):
    """numpymaxflow GraphCut of a ``[background, foreground]`` unary with the image as the pairwise term.

    Like :class:`monailabel.scribbles.transforms.ApplyGraphCutOptimisationd` (``lamda`` and ``sigma`` of the
    request win over the constructor's), with an explicit neighbourhood ``connectivity`` (6, 18 or 26).

    Args:
        unary: the key of the ``[background, foreground]`` unary term.
        pairwise: the key of the image of the pairwise term.
        lamda: the weight of the pairwise (smoothness) term.
        sigma: the intensity scale of the pairwise term.
        connectivity: the neighbourhood, 6, 18 or 26.
        post_proc_label: where the segmentation is written.
    """

    def __init__(
        self,
        unary: str,
        pairwise: str,
        lamda: float,
        sigma: float,
        connectivity: int,
        post_proc_label: str = "pred",
    ) -> None:
        self.unary = unary
        self.pairwise = pairwise
        self.lamda = lamda
        self.sigma = sigma
        self.connectivity = connectivity
        self.post_proc_label = post_proc_label

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        unary = np.ascontiguousarray(_array(d[self.unary]), dtype=np.float32)
        image = np.ascontiguousarray(_array(d[self.pairwise]), dtype=np.float32)
        lamda, sigma = float(d.get("lamda", self.lamda)), float(d.get("sigma", self.sigma))
        d[self.post_proc_label] = numpymaxflow.maxflow(image, unary, lamda, sigma, self.connectivity)
        return d


class MergeStructured(Transform):
    """Write the GraphCut mask of the structure back into the whole current label.

    Inside the box, mask voxels take the structure's value; voxels that leave the structure (or lie under scribbles
    outside the mask) take the value of the nearest voxel that is neither. ``output_label="selected"`` writes the
    refined structure as 0/1 instead of the whole label. ``pred`` gets the full label's metadata (its affine).

    Args:
        structure: the label value of the structure.
        output_label: ``all`` or ``selected`` (a 422 otherwise).
        pred: the GraphCut mask's key, replaced by the result.
        label: the current label inside the box.
        full_label: the whole current label.
        scribbles: the scribbles inside the box.
        box_key: the box stored by :class:`CropToStructured`.
    """

    def __init__(
        self,
        structure: int,
        output_label: str,
        pred: str = "pred",
        label: str = "label",
        full_label: str = "label_full",
        scribbles: str = "scribbles",
        box_key: str = "roi_box",
    ) -> None:
        if output_label not in OUTPUT_LABELS:
            raise InvalidInputError(f"output_label must be one of {OUTPUT_LABELS}, got {output_label!r}")
        self.structure = structure
        self.output_label = output_label
        self.pred = pred
        self.label = label
        self.full_label = full_label
        self.scribbles = scribbles
        self.box_key = box_key

    def __call__(self, data: Mapping[Hashable, Any]) -> dict[Hashable, Any]:
        d = dict(data)
        mask = _array(d[self.pred])[0] > 0.5
        region = _array(d[self.label])[0].astype(np.uint8)
        given_up = ~mask & ((region == self.structure) | (_array(d[self.scribbles])[0] != 0))
        region[mask] = self.structure
        fill_nearest(region, given_up, ~(mask | given_up), _spacing(d[self.label]))
        full = d[self.full_label]
        merged = _array(full).astype(np.uint8)
        start, end = d[self.box_key]
        merged[(slice(None), *(slice(s, e) for s, e in zip(start, end, strict=True)))] = region
        if self.output_label == "selected":
            merged = (merged == self.structure).astype(np.uint8)
        d[self.pred] = _like(full, merged)
        return d
