"""Real label maps as training anatomy: the shared data's labelled scans of the *other* modality than a task's.

SynthSeg trains on images synthesised from real segmentations. HOPE's real labelled scans (``shared/data``,
:mod:`hope.benchmarks.real_cases`) are few, and every one of a task's own modality is a test case of
``scripts/bench_real.py``; so a task takes as donors only the scans of the other modality (``spine_mr`` learns from
the CTs' label maps, ``spine_ct`` from the MRs'), and no subject it is tested on is trained on. Synthesis is
contrast-agnostic, so a CT's anatomy teaches an MR network as well as an MR's would.

A donor item is the whole scan, with the keys of :func:`hope.synthesis.anatomy.anatomy_pool`, on the task's
grid (the pipeline takes its patches around the structures or, for a share, anywhere in it):

- ``tissues``: every value of the donor's label files is a tissue class (TotalSegmentator's organs, muscles and
  bones; TPTBox's vertebral sub-regions), and the unlabelled voxels are split into :data:`BACKGROUND_CLASSES`
  classes by the quantiles of the donor's own intensities, so the synthesised surroundings keep the real scan's
  texture (SynthSeg's extra-cerebral classes).
- ``label``: the task's labels. Named levels keep their names (TPTBox's C5-C7); unnamed vertebrae (a union, or one
  value per level of the thoracolumbar spine) become the task's lowest levels in head-to-foot order, ending at C7,
  and each disc is named after the vertebra above it. Real thoracolumbar anatomy stands in for cervical anatomy:
  its shapes and surroundings are real, its level names are not. A thecal sac (TotalSegmentator's ``spinal_cord``,
  the cord and its CSF as one, :data:`hope.benchmarks.real_cases.THECAL_SAC`) is a ``spinal_canal`` as it is; for a
  task that tells the cord from the CSF, its core deeper than :data:`CSF_RIM_MM` is drawn as the cord and the rest
  is the ``canal``. A donor without disc labels (the CTs) gets discs drawn in the unlabelled gaps between
  consecutive vertebrae in front of the cord (:func:`_drawn_discs`). Drawn structures are rough stand-ins, each a
  tissue of its own.
- ``rendered``: the donor's real image, windowed to its 0.5th-99.5th percentiles in ``[0, 1]``: its own real contrast.
"""

from __future__ import annotations

import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import (
    Compose,
    EnsureChannelFirstd,
    LoadImaged,
    Orientationd,
    ScaleIntensityRangePercentilesd,
    Spacingd,
)
from scipy import ndimage

from hope.benchmarks.real_cases import (
    THECAL_SAC,
    LoadedScan,
    RealScan,
    load_scan,
    read_labels,
    real_scans,
)
from hope.config import TaskDefinition
from hope.label_kinds import label_kind
from hope.synthesis.pipeline import RENDERED, TISSUES

BACKGROUND_CLASSES = 6  # intensity classes of a donor's unlabelled voxels
CSF_RIM_MM = 3.0  # a thecal sac's CSF around the cord: the sacs of the real thoracolumbar scans are 14-18 mm across,
                  # a cord there 7-10 mm
DISC_GAP_MM = 15.0  # the widest gap between two vertebrae that a drawn disc fills
MIN_COMPONENT_VOXELS = 30  # smaller pieces of a split union are left unnamed (label 0, tissue kept)


def donor_scans(task: TaskDefinition, data_dir: Path) -> list[RealScan]:
    """The real scans that may train ``task``: of a modality the task does not annotate, with vertebrae labelled
    (a scan with the cord alone would teach that its unlabelled vertebrae are background)."""
    return [s for s in real_scans(data_dir) if s.modality not in task.modalities and "vertebra" in s.kinds()]


def donor_pool(task: TaskDefinition, data_dir: Path) -> list[dict[str, MetaTensor]]:
    """The donor items of ``task`` (:func:`donor_scans`), on its grid; raises ``FileNotFoundError`` without
    ``data_dir``."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"shared data folder {data_dir} is missing: pass the folder that holds the real "
                                "labelled scans (shared/data), or train on phantoms alone")
    items = []
    for scan in donor_scans(task, data_dir):
        whole = load_scan(scan, data_dir)
        items.append(donor_item(task, whole, read_labels(scan, data_dir, whole.image)))
    return items


def donor_item(task: TaskDefinition, loaded: LoadedScan, label_files: Mapping[str, np.ndarray]
               ) -> dict[str, MetaTensor]:
    """One donor's ``tissues``, ``label`` and ``rendered`` on the task's grid (channel-first RAS).

    Args:
        task: the task whose labels and grid the item takes.
        loaded: the donor scan and its reference masks (:func:`hope.benchmarks.real_cases.load_scan`).
        label_files: every label file of the scan, whole, on the image's grid
            (:func:`hope.benchmarks.real_cases.read_labels`).
    """
    image = sitk.GetArrayFromImage(loaded.image).astype(np.float32)
    tissues = tissue_map(image, list(label_files.values()))
    label, drawn = task_label(task, loaded, label_files)
    for mask in drawn:  # a drawn structure is a tissue of its own, as a labelled one is
        tissues[mask] = tissues.max() + 1
    return _on_task_grid(task, loaded.image, {TISSUES: tissues, "label": label, RENDERED: image})


def tissue_map(image: np.ndarray, label_arrays: Sequence[np.ndarray]) -> np.ndarray:
    """Tissue classes: ``1..BACKGROUND_CLASSES`` for the unlabelled voxels by intensity quantile, then one class per
    value of each label array (a later array's values over an earlier's where both label a voxel)."""
    labelled = np.logical_or.reduce([a > 0 for a in label_arrays])
    edges = np.quantile(image[~labelled], np.linspace(0, 1, BACKGROUND_CLASSES + 1)[1:-1])
    tissues = (1 + np.searchsorted(edges, image)).astype(np.int32)
    next_class = BACKGROUND_CLASSES + 1
    for array in label_arrays:
        for value in np.unique(array[array > 0]):
            tissues[array == value] = next_class
            next_class += 1
    return tissues


def task_label(task: TaskDefinition, loaded: LoadedScan, label_files: Mapping[str, np.ndarray]
               ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The task's label map of a donor (see the module's docstring), and the structures it drew (a cord in a thecal
    sac, discs) where the donor's reference has none."""
    labels = task.labels
    label = np.zeros(loaded.image.GetSize()[::-1], dtype=np.uint8)
    levels = _vertebra_levels(task, loaded, label_files)
    heights = {name: _height(loaded, mask) for name, mask in levels}
    for name, mask in levels:
        label[mask] = labels[name]
    named_discs = [(name, m) for name, m in loaded.masks.items() if label_kind(name) == "disc" and name in labels]
    for mask in _pieces(loaded, "disc", label_files):
        above = [name for name, height in heights.items() if height > _height(loaded, mask)]
        named_discs.append((_disc_below(task, min(above, key=heights.__getitem__)) if above else None, mask))
    cord, canal, sac = (loaded.kind_mask(kind) for kind in ("cord", "canal", THECAL_SAC))
    drawn = []
    if sac is not None and "cord" in labels:
        depth = ndimage.distance_transform_edt(sac, sampling=loaded.image.GetSpacing()[::-1])
        cord, canal = sac & (depth > CSF_RIM_MM), sac & (depth <= CSF_RIM_MM)
        drawn.append(cord)
    middle = next((m for m in (cord, sac) if m is not None), None)
    if not named_discs and middle is not None and any(label_kind(n) == "disc" for n in labels):
        unlabelled = ~np.logical_or.reduce([a > 0 for a in label_files.values()])
        named_discs = _drawn_discs(task, loaded, levels, heights, unlabelled & _anterior_of(loaded, middle))
        drawn += [mask for _, mask in named_discs]
    for name, mask in named_discs:
        if name in labels:
            label[mask] = labels[name]
    if "cord" in labels:
        for mask, name in ((canal, "canal"), (cord, "cord")):
            if mask is not None and name in labels:
                label[mask] = labels[name]
    elif "spinal_canal" in labels:
        for mask in (canal, cord, sac):
            if mask is not None:
                label[mask] = labels["spinal_canal"]
    return label, drawn


def _drawn_discs(task: TaskDefinition, loaded: LoadedScan, levels: Sequence[tuple[str, np.ndarray]],
                 heights: Mapping[str, float], allowed: np.ndarray) -> list[tuple[str | None, np.ndarray]]:
    """Discs for a donor whose reference has none (TotalSegmentator's CT labels): the ``allowed`` voxels that
    closing each two consecutive vertebrae along the head-to-foot axis (over :data:`DISC_GAP_MM`) adds, each named
    after the vertebra above it."""
    axis = _array_axis(loaded.image, 2)
    length = max(3, round(DISC_GAP_MM / loaded.image.GetSpacing()[2 - axis]))
    line = np.ones([length if a == axis else 1 for a in range(3)], dtype=bool)
    masks = dict(levels)
    order = sorted(masks, key=lambda n: -heights[n])
    discs = []
    for upper, lower in zip(order, order[1:], strict=False):
        pair = masks[upper] | masks[lower]
        gap = ndimage.binary_closing(pair, structure=line) & ~pair & allowed
        if gap.sum() >= MIN_COMPONENT_VOXELS:
            discs.append((_disc_below(task, upper), gap))
    return discs


def _array_axis(image: sitk.Image, physical: int) -> int:
    """The ``(z, y, x)`` array axis of ``image`` closest to physical (LPS) axis ``physical`` (0 x, 1 y, 2 z)."""
    direction = np.asarray(image.GetDirection()).reshape(3, 3)  # column j: index axis j in physical space
    return 2 - int(np.argmax(np.abs(direction[physical])))


def _anterior_of(loaded: LoadedScan, cord: np.ndarray) -> np.ndarray:
    """The voxels in front of the cord's centroid (the side of the vertebral bodies and discs)."""
    axis = _array_axis(loaded.image, 1)
    sign = np.sign(np.asarray(loaded.image.GetDirection()).reshape(3, 3)[1, 2 - axis])  # index up: +y, posterior
    centre = np.argwhere(cord)[:, axis].mean()
    index = np.arange(cord.shape[axis]).reshape([-1 if a == axis else 1 for a in range(3)])
    return np.broadcast_to(sign * (index - centre) < 0, cord.shape)


def _vertebra_levels(task: TaskDefinition, loaded: LoadedScan, label_files: Mapping[str, np.ndarray]
                     ) -> list[tuple[str, np.ndarray]]:
    """The donor's vertebrae as (task level name, mask): named levels as named, the rest (pieces of unions) the
    task's lowest levels, head to foot, ending at its last."""
    order = [name for name in task.labels if label_kind(name) == "vertebra"]
    named = [(name, m) for name, m in loaded.masks.items() if label_kind(name) == "vertebra" and name in order]
    if named:
        return named
    pieces = sorted(_pieces(loaded, "vertebra", label_files), key=lambda m: -_height(loaded, m))[-len(order):]
    return list(zip(order[len(order) - len(pieces):], pieces, strict=True))


def _pieces(loaded: LoadedScan, kind: str, label_files: Mapping[str, np.ndarray]) -> list[np.ndarray]:
    """The union structure named ``kind`` one mask per level: per reference value when the union has several (one
    per TotalSegmentator vertebra), else its connected components; pieces under :data:`MIN_COMPONENT_VOXELS` voxels
    are left out."""
    union = next((s for s in loaded.scan.structures if s.name == kind and kind in loaded.masks), None)
    if union is None:
        return []
    if len(union.values) > 1:
        pieces = [label_files[union.label] == v for v in union.values]
    else:
        components, count = ndimage.label(loaded.masks[kind])
        pieces = [components == i for i in range(1, count + 1)]
    return [p for p in pieces if p.sum() >= MIN_COMPONENT_VOXELS]


def _height(loaded: LoadedScan, mask: np.ndarray) -> float:
    """The head-to-foot position (LPS z, mm) of ``mask``'s centroid."""
    centroid = np.argwhere(mask).mean(axis=0)[::-1]
    return loaded.image.TransformContinuousIndexToPhysicalPoint([float(c) for c in centroid])[2]


def _disc_below(task: TaskDefinition, vertebra: str) -> str | None:
    """The task's disc name below ``vertebra`` (``disc_C5_C6``; ``disc_C7_T1`` for the last), ``None`` if none."""
    for name in task.labels:
        if label_kind(name) == "disc" and name.split("_")[1] == vertebra:
            return name
    return None


def _on_task_grid(task: TaskDefinition, grid: sitk.Image, arrays: Mapping[str, np.ndarray]
                  ) -> dict[str, MetaTensor]:
    """``arrays`` (``(z, y, x)`` on ``grid``) as channel-first RAS volumes at the task's spacing: the maps nearest
    neighbour and uint8, ``rendered`` linear and windowed to ``[0, 1]``."""
    with tempfile.TemporaryDirectory(prefix="hope-donor-") as tmp:
        paths = {}
        for key, array in arrays.items():
            volume = sitk.GetImageFromArray(array.astype(np.float32 if key == RENDERED else np.uint8))
            volume.CopyInformation(grid)
            paths[key] = str(Path(tmp) / f"{key}.nii.gz")
            sitk.WriteImage(volume, paths[key])
        keys = list(paths)
        out = Compose([
            LoadImaged(keys=keys, reader="ITKReader"),
            EnsureChannelFirstd(keys=keys),
            Orientationd(keys=keys, axcodes="RAS"),
            Spacingd(keys=keys, pixdim=task.preprocessing.spacing,
                     mode=["bilinear" if k == RENDERED else "nearest" for k in keys]),
            ScaleIntensityRangePercentilesd(keys=RENDERED, lower=0.5, upper=99.5, b_min=0.0, b_max=1.0, clip=True),
        ])(paths)
    return {k: out[k] if k == RENDERED else out[k].to(torch.uint8) for k in keys}
