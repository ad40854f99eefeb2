"""Held-out Dice of a segmentation network on labelled volumes (synthetic images or rendered phantoms)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import torch

from hope.activelearning.uncertainty import dice_per_label
from hope.config import TaskDefinition
from hope.sliding_window import served_inferer


@torch.no_grad()
def held_out_dice(
    net: torch.nn.Module, cases: Iterable[Mapping[str, torch.Tensor]], task: TaskDefinition, device: torch.device
) -> dict[str, float]:
    """Dice of each of the task's labels, averaged over ``cases``, and their ``mean``.

    A case is ``{"image": (1, X, Y, Z), "label": (1, X, Y, Z)}`` on the task's grid, normalised as for inference.
    A label absent from both a case's reference and its prediction does not count for that case; a label that
    never counts is left out (and out of the mean). A ``ValueError`` if no label counts in any case.
    """
    net.eval()
    inferer = served_inferer(task)
    scores: dict[int, list[float]] = {value: [] for value in task.labels.values()}
    for case in cases:
        logits = inferer(torch.as_tensor(case["image"])[None].float().to(device), net)
        prediction = logits.argmax(dim=1)[0].cpu()
        reference = torch.as_tensor(case["label"])[0].long()
        for value, score in dice_per_label(reference, prediction, list(scores)).items():
            scores[value].append(score)
    per_label = {name: float(np.mean(scores[value])) for name, value in task.labels.items() if scores[value]}
    if not per_label:
        raise ValueError(f"no case holds a label of task {task.name}, and nothing was predicted: no Dice to report")
    return {**per_label, "mean": float(np.mean(list(per_label.values())))}
