"""The supervised infer task's post-processing (hope.infers.segmentation): argmax, then only the largest 3D
component of each single-structure label (``inference.largest_component``), the tumour's lesions all kept."""

from __future__ import annotations

import torch
from monai.transforms import Compose

from hope.config import load_task
from hope.infers.segmentation import SegmentationInfer
from hope.networks import build_network


def test_scattered_false_positives_of_a_structure_are_dropped_and_lesions_kept() -> None:
    task = load_task("spine_mr").with_profile("cpu")
    cord, tumor = task.labels["cord"], task.labels["tumor"]
    logits = torch.zeros(len(task.labels) + 1, 24, 24, 24)
    logits[0] = 1.0
    logits[cord, 2:12, 2:12, 2:12] = 5.0  # the cord
    logits[cord, 18:20, 18:20, 18:20] = 5.0  # a stray blob of "cord" elsewhere
    logits[tumor, 14:16, 2:4, 2:4] = 5.0  # two lesions
    logits[tumor, 20:22, 2:4, 2:4] = 5.0
    infer = SegmentationInfer(task, [], build_network(task))
    label = Compose(infer.post_transforms({"device": "cpu"}))({"pred": logits})["pred"]
    assert label.shape == (24, 24, 24)
    assert int((label == cord).sum()) == 10**3  # the stray blob is background now
    assert int((label == tumor).sum()) == 2 * 2**3  # both lesions stay
