"""Supervised tasks (``spine_ct``, ``spine_mr``) on the real scans: Dice of the served weights and of the same
network untrained, per structure that both the scan's reference and the task have.

Inference is the server's own: :class:`~hope.infers.segmentation.SegmentationInfer` (the task's transforms,
Gaussian sliding window, softmax and argmax, inverted onto the image's grid and written as a label file), on the
scan written as NIfTI as the store's series are. The served weights are the task's shipped ``network.pretrained``
when the repository has them, else the seeded, untrained network HOPE serves as its first version
(:func:`hope.models.initial.ensure_first_version`).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from hope.benchmarks.real_cases import THECAL_SAC, LoadedScan
from hope.benchmarks.real_proxy import dice
from hope.config import REPO_ROOT, TaskDefinition
from hope.infers.segmentation import SegmentationInfer
from hope.label_kinds import label_kind
from hope.models.initial import UNTRAINED_SEED
from hope.networks import build_network


@dataclass(frozen=True)
class Weights:
    """A weights file of a task and where it comes from."""

    path: Path
    source: str


def write_untrained(task: TaskDefinition, path: Path) -> Weights:
    """The task's network as HOPE's first version is when nothing is shipped (seeded, untrained), saved to ``path``."""
    torch.manual_seed(UNTRAINED_SEED)
    torch.save({"model": build_network(task).state_dict()}, path)
    return Weights(path, f"untrained, torch.manual_seed({UNTRAINED_SEED})")


def served_weights(task: TaskDefinition) -> Weights | None:
    """The shipped weights of ``task`` (``network.pretrained``), ``None`` when the repository has none."""
    shipped = REPO_ROOT / task.network.pretrained if task.network.pretrained else None
    if shipped is None or not shipped.exists():
        return None
    return Weights(shipped, f"shipped {task.network.pretrained}")


#: The task labels that together make a reference structure the tasks do not label as one: the thecal sac is
#: spine_mr's cord and the CSF around it, spine_ct's spinal canal.
UNIONS = {THECAL_SAC: ("cord", "canal", "spinal_canal")}


def task_values(structure: str, labels: Mapping[str, int]) -> tuple[int, ...]:
    """The task label values that predict reference ``structure``: its own label (``C5``, ``cord``), for a union
    named after its kind (``vertebra``, ``disc``) every label of that kind, for one of :data:`UNIONS` those of its
    labels the task has; empty when the task has none."""
    if structure in labels:
        return (labels[structure],)
    if structure in UNIONS:
        return tuple(labels[name] for name in UNIONS[structure] if name in labels)
    if structure == label_kind(structure):
        return tuple(v for name, v in labels.items() if label_kind(name) == structure)
    return ()


def predict(infer: SegmentationInfer, image_path: Path, grid: sitk.Image, device: str) -> np.ndarray:
    """The infer task's label of ``image_path`` as a ``(z, y, x)`` array on ``grid`` (nearest neighbour)."""
    written, _ = infer({"image": str(image_path), "device": device, "logging": "WARNING"})
    try:
        label = sitk.ReadImage(written)
    finally:
        os.unlink(written)
    label = sitk.Resample(label, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0, label.GetPixelID())
    return sitk.GetArrayFromImage(label)


def evaluate_supervised(tasks: Sequence[TaskDefinition], scans: Sequence[LoadedScan], device: str,
                        candidates: Mapping[str, Path] | None = None,
                        on_prediction: Callable[[TaskDefinition, LoadedScan, np.ndarray], None] | None = None,
                        ) -> dict[str, Any]:
    """Dice of each task's served and untrained weights on the scans of a modality it annotates.

    Args:
        tasks: the supervised tasks.
        scans: the real scans with their reference masks.
        device: where the networks run.
        candidates: task name -> weights to score as ``served`` instead of the shipped ones (a pretraining run's).
        on_prediction: called with each task, scan and the served weights' label (``(z, y, x)`` on the scan's grid),
            e.g. to plot it.

    Returns ``{"tasks": {task: {"served", "untrained", "served_is_untrained"}}, "rows": [{"task", "case",
    "structure", "served", "untrained"}], "not_compared": [why a reference structure has no row]}``.
    """
    result: dict[str, Any] = {"tasks": {}, "rows": [], "not_compared": []}
    with tempfile.TemporaryDirectory(prefix="hope-bench-real-") as tmp:
        folder = Path(tmp)
        images = {}
        for loaded in scans:
            images[loaded.scan.name] = folder / f"{loaded.scan.name}.nii.gz"
            sitk.WriteImage(loaded.image, str(images[loaded.scan.name]))
        for task in tasks:
            untrained = write_untrained(task, folder / f"{task.name}-untrained.pt")
            candidate = (candidates or {}).get(task.name)
            served = Weights(candidate, f"candidate {candidate}") if candidate else served_weights(task)
            result["tasks"][task.name] = {
                "served": served.source if served else f"{untrained.source} (nothing shipped at "
                                                       f"{task.network.pretrained}: HOPE's first version)",
                "untrained": untrained.source,
                "served_is_untrained": served is None,
            }
            task = replace(task, measurements=None)  # the label is the same; measuring it only costs time
            runs = {name: SegmentationInfer(task, [str(w.path)], build_network(task))
                    for name, w in (("untrained", untrained), ("served", served)) if w is not None}
            for loaded in scans:
                if loaded.scan.modality not in task.modalities:
                    continue
                predictions = {name: predict(infer, images[loaded.scan.name], loaded.image, device)
                               for name, infer in runs.items()}
                predictions.setdefault("served", predictions["untrained"])
                if on_prediction is not None:
                    on_prediction(task, loaded, predictions["served"])
                for structure, truth in loaded.masks.items():
                    values = task_values(structure, task.labels)
                    if not values:
                        result["not_compared"].append(f"{task.name} has no label for {loaded.scan.name}'s {structure}")
                        continue
                    scores = {name: dice(np.isin(p, values), truth) for name, p in predictions.items()}
                    result["rows"].append({"task": task.name, "case": loaded.scan.name, "structure": structure,
                                           "served": scores["served"], "untrained": scores["untrained"]})
    return result
