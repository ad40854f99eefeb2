"""Scribble corrections of one structure: histogram likelihood and current-label prior, optimised by GraphCut.

The client uploads one label volume on the image's grid as the ``label`` of ``POST /infer/<model>``: the current
label (HOPE's suggestion or the annotator's working label) with the scribbles painted over it. That is what the 3D
Slicer MONAI Label module sends (all segments exported to one labelmap, described by ``label_info``) and what OHIF
sends as ``.bin`` (the server converts it to a volume on the image's grid). Scribble voxels carry the values of
``interactive.scribbles`` in ``configs/tasks/<task>.yaml`` unless ``label_info`` names segments
``background_scribbles`` / ``foreground_scribbles`` (MONAI Label's convention); other segments named in
``label_info`` are mapped to the task's label values by name (Slicer numbers segments in its own order). The
request parameter ``selected_label_name`` chooses the structure.

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
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpymaxflow
import torch
import yaml
from monai.config import KeysCollection
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    CopyItemsd,
    EnsureChannelFirstd,
    LoadImaged,
    MapTransform,
    ScaleIntensityRanged,
    SpatialCrop,
    SqueezeDimd,
    Transform,
)
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.scribbles.transforms import MakeISegUnaryd
from monailabel.tasks.infer.basic_infer import BasicInferTask
from monailabel.transform.writer import Writer
from scipy import ndimage
from scipy.special import expit, logit

from hope.config import ConfigError, TaskDefinition, config_dir
from hope.errors import InvalidInputError

OUTPUT_LABELS = ("all", "selected")
BACKGROUND_SCRIBBLES = "background_scribbles"
FOREGROUND_SCRIBBLES = "foreground_scribbles"
_EPS = 1e-6


@dataclass(frozen=True)
class InteractiveSettings:
    """The ``interactive:`` section of a task YAML: how scribble corrections are computed."""

    structure: str
    background_scribble: int
    foreground_scribble: int
    intensity_range: tuple[float, float]
    num_bins: int
    lamda: float
    sigma: float
    prior_weight: float
    prior_sigma_mm: float
    scribble_radius_mm: float
    margin_mm: float
    connectivity: int
    output_label: str
    overrides: tuple[str, ...]


def load_interactive_settings(task: TaskDefinition, directory: Path | None = None) -> InteractiveSettings:
    """Read and validate ``interactive:`` of ``<directory>/tasks/<task>.yaml`` (default: :func:`config_dir`)."""
    path = (directory or config_dir()) / "tasks" / f"{task.name}.yaml"
    data = yaml.safe_load(path.read_text()) if path.is_file() else None
    raw = data.get("interactive") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: missing the 'interactive' section that scribble corrections need")
    where = f"{path}: interactive"
    try:
        scribbles = raw.get("scribbles", {})
        low, high = (float(v) for v in raw.get("intensity_range", task.preprocessing.intensity_range))
        settings = InteractiveSettings(
            structure=str(raw["structure"]),
            background_scribble=int(scribbles["background"]),
            foreground_scribble=int(scribbles["foreground"]),
            intensity_range=(low, high),
            num_bins=int(raw.get("num_bins", 64)),
            lamda=float(raw.get("lamda", 1.0)),
            sigma=float(raw.get("sigma", 0.1)),
            prior_weight=float(raw.get("prior_weight", 0.5)),
            prior_sigma_mm=float(raw.get("prior_sigma_mm", 2.0)),
            scribble_radius_mm=float(raw.get("scribble_radius_mm", 3.0)),
            margin_mm=float(raw.get("margin_mm", 15.0)),
            connectivity=int(raw.get("connectivity", 6)),
            output_label=str(raw.get("output_label", "all")),
            overrides=tuple(str(name) for name in raw.get("overrides", [])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc!r}; see configs/tasks/spine_ct.yaml for the expected keys") from exc
    problems = []
    unknown = sorted({settings.structure, *settings.overrides} - set(task.labels))
    if unknown:
        problems.append(f"structure / overrides name {unknown}, which are not labels {sorted(task.labels)}")
    scribble_values = {settings.background_scribble, settings.foreground_scribble}
    if len(scribble_values) != 2 or scribble_values & {0, *task.labels.values()} or max(scribble_values) > 255:
        problems.append("scribble values must be two different values in 1..255 that are not label values")
    if high <= low:
        problems.append("intensity_range: the upper bound must exceed the lower bound")
    if settings.num_bins < 2 or settings.lamda < 0 or settings.sigma <= 0:
        problems.append("num_bins must be >= 2, lamda >= 0 and sigma > 0")
    if not 0.0 <= settings.prior_weight <= 1.0 or settings.prior_sigma_mm <= 0:
        problems.append("prior_weight must lie in [0, 1] and prior_sigma_mm > 0")
    if settings.scribble_radius_mm < 0 or settings.margin_mm < 0:
        problems.append("scribble_radius_mm and margin_mm must be >= 0")
    if settings.connectivity not in (6, 18, 26):
        problems.append("connectivity must be 6, 18 or 26")
    if settings.output_label not in OUTPUT_LABELS:
        problems.append(f"output_label must be one of {OUTPUT_LABELS}")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return settings


def scribble_values(label_info: Any, background: int, foreground: int) -> tuple[int, int]:
    """Scribble values of a request: ``label_info`` entries named like MONAI Label's scribble layers, else defaults."""
    ids = {BACKGROUND_SCRIBBLES: background, FOREGROUND_SCRIBBLES: foreground}
    for entry in label_info if isinstance(label_info, list) else []:
        if isinstance(entry, dict) and entry.get("name") in ids and entry.get("id") is not None:
            ids[entry["name"]] = int(entry["id"])
    return ids[BACKGROUND_SCRIBBLES], ids[FOREGROUND_SCRIBBLES]


def fill_nearest(values: np.ndarray, unknown: np.ndarray, sources: np.ndarray, sampling: Sequence[float]) -> None:
    """In place: every ``unknown`` voxel takes the value of the nearest ``sources`` voxel (0 if there is none).

    Works on the bounding box of ``unknown`` grown by one voxel, so thin scribbles cost little on large volumes.
    """
    if not unknown.any():
        return
    box = _bounding_box(unknown, [1] * unknown.ndim)
    window, holes, wells = values[box], unknown[box], sources[box]
    if not wells.any():
        window[holes] = 0
        return
    nearest = ndimage.distance_transform_edt(~wells, sampling=sampling, return_distances=False, return_indices=True)
    window[holes] = window[tuple(index[holes] for index in nearest)]


def _bounding_box(mask: np.ndarray, margin: Sequence[int]) -> tuple[slice, ...]:
    """The slices of ``mask``'s bounding box grown by ``margin`` voxels per axis, clipped to the array."""
    box = []
    for axis, size in enumerate(mask.shape):
        hits = np.flatnonzero(mask.any(axis=tuple(a for a in range(mask.ndim) if a != axis)))
        box.append(slice(max(int(hits[0]) - margin[axis], 0), min(int(hits[-1]) + 1 + margin[axis], size)))
    return tuple(box)


def _spacing(data: torch.Tensor) -> list[float]:
    """Voxel size in mm along the array's spatial axes (1 mm without metadata)."""
    if isinstance(data, MetaTensor):
        return [float(s) for s in data.pixdim]
    return [1.0] * (data.ndim - 1)


def _array(data: Any) -> np.ndarray:
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
        box = _bounding_box(seeds, [math.ceil(self.margin_mm / s) for s in sampling])
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


class StructureScribblesInfer(BasicInferTask):
    """MONAI Label infer task: refine one structure of a task's label volume with scribbles (see module doc).

    Request parameters: ``selected_label_name`` (the structure; default ``interactive.structure``),
    ``label_info`` (segment names and values of the upload, as Slicer and OHIF send them), ``lamda`` and ``sigma``
    (GraphCut) and ``output_label`` (``all`` or ``selected``). MONAI Label's ``roi`` is not used: the refinement
    is confined to the box around the scribbles anyway.
    """

    def __init__(self, task: TaskDefinition, settings: InteractiveSettings | None = None) -> None:
        self.task = task
        self.settings = settings or load_interactive_settings(task)
        super().__init__(
            path=None,
            network=None,
            type=InferType.SCRIBBLES,
            labels=task.labels,
            dimension=3,
            description=f"{task.description}: refine one structure with scribbles (histogram likelihood + GraphCut)",
            config={
                "selected_label_name": self.settings.structure,
                "lamda": self.settings.lamda,
                "sigma": self.settings.sigma,
                "output_label": self.settings.output_label,
            },
        )

    def _name(self, data: Mapping[str, Any] | None) -> str:
        """The structure a request refines; a 422 for a name that is not a label of the task."""
        name = str((data or {}).get("selected_label_name") or self.settings.structure)
        if name not in self.task.labels:
            raise InvalidInputError(f"unknown structure {name!r}; this task's labels are {sorted(self.task.labels)}")
        return name

    def _request(self, data: Mapping[str, Any] | None) -> tuple[int, int, int]:
        """The structure's label value and the scribble values of a request."""
        background, foreground = scribble_values(
            (data or {}).get("label_info"), self.settings.background_scribble, self.settings.foreground_scribble
        )
        return self.task.labels[self._name(data)], background, foreground

    def pre_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        """Load image and upload, split current label and scribbles, crop around the structure, window intensities."""
        if not (data or {}).get("label"):
            raise InvalidInputError("send the current label with the scribbles painted in as the 'label' upload")
        structure, background, foreground = self._request(data)
        low, high = self.settings.intensity_range
        keys = ["image", "label", "scribbles"]
        return [
            LoadImaged(keys="image", reader="ITKReader"),
            LoadImaged(keys="label", reader="ITKReader", dtype=np.int32),
            EnsureChannelFirstd(keys=["image", "label"]),
            SplitScribblesd(keys="label", label_values=self.task.labels, background=background, foreground=foreground),
            CopyItemsd(keys="label", names="label_full"),
            CropToStructured(keys=keys, structure=structure, foreground=foreground, margin_mm=self.settings.margin_mm),
            ScaleIntensityRanged(keys="image", a_min=low, a_max=high, b_min=0.0, b_max=1.0, clip=True),
        ]

    def inferer(self, data: dict[str, Any] | None = None) -> Compose:
        """The likelihood of the structure inside the box (no network)."""
        structure, background, foreground = self._request(data)
        return Compose(
            [
                MakeLikelihoodFromScribblesAndLabeld(
                    image="image",
                    label="label",
                    scribbles="scribbles",
                    structure=structure,
                    background=background,
                    foreground=foreground,
                    num_bins=self.settings.num_bins,
                    prior_weight=self.settings.prior_weight,
                    prior_sigma_mm=self.settings.prior_sigma_mm,
                    scribble_radius_mm=self.settings.scribble_radius_mm,
                    protect_others=self._name(data) not in self.settings.overrides,
                )
            ]
        )

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        """Scribbles as hard constraints, GraphCut, merge into the whole label on the image's grid."""
        structure, background, foreground = self._request(data)
        output_label = str((data or {}).get("output_label") or self.settings.output_label)
        return [
            MakeISegUnaryd(
                image="image",
                logits="prob",
                scribbles="scribbles",
                unary="unary",
                scribbles_bg_label=background,
                scribbles_fg_label=foreground,
            ),
            ApplyGraphCutd(
                unary="unary",
                pairwise="image",
                lamda=self.settings.lamda,
                sigma=self.settings.sigma,
                connectivity=self.settings.connectivity,
            ),
            MergeStructured(structure=structure, output_label=output_label),
            SqueezeDimd(keys="pred", dim=0),
        ]

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
        """Write ``pred`` as uint8 with the input image's affine."""
        data.setdefault("result_dtype", "uint8")
        data["labels"] = self.labels
        return Writer(label="pred", json="result", ref_image="pred")(data)
