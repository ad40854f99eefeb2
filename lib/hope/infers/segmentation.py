"""Automatic 3D segmentation inference for a task defined in ``configs/tasks/<name>.yaml``.

A task with ``measurements: spine`` answers its measurements too (``result["measurements"]``, see
:func:`hope.measure.spine.measure_spine`), taken on the suggestion as written, on the image's own grid.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch
from monai.inferers import Inferer
from monai.transforms import Activationsd, AsDiscreted, EnsureTyped, KeepLargestConnectedComponentd, SqueezeDimd
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.tasks.infer.basic_infer import BasicInferTask
from monailabel.transform.writer import Writer

from hope.config import TaskDefinition
from hope.measure import measure_label_file
from hope.sliding_window import served_inferer
from hope.transforms import infer_transforms


class SegmentationInfer(BasicInferTask):
    """Sliding-window segmentation whose label volume is returned on the source image's own grid.

    The pre-transforms (reorientation to RAS, resampling to the task spacing) are inverted on the logits, so the
    written label has the input's shape, spacing, origin and direction, voxel for voxel. On CUDA, pre-processing
    runs on the GPU and the network under autocast when the profile's ``inference.amp`` is on.
    """

    def __init__(self, task: TaskDefinition, path: Sequence[str], network: torch.nn.Module) -> None:
        super().__init__(
            path=list(path),
            network=network,
            type=InferType.SEGMENTATION,
            labels=task.labels,
            dimension=3,
            description=task.description,
            roi_size=task.preprocessing.patch_size,
        )
        self.task = task

    def pre_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        """Load, reorient, resample and window the image (see :mod:`hope.transforms`), on the request's device."""
        return infer_transforms(self.task, str((data or {}).get("device") or "cpu"))

    def inferer(self, data: dict[str, Any] | None = None) -> Inferer:
        """The task's sliding window (:func:`hope.sliding_window.served_inferer`)."""
        return served_inferer(self.task)

    def run_inferer(self, data: dict[str, Any], convert_to_batch: bool = True, device: str = "cuda"
                    ) -> dict[str, Any]:
        """The stock sliding-window run, under CUDA autocast when the profile's ``inference.amp`` is on."""
        amp = self.task.inference.amp and device.startswith("cuda")
        with torch.autocast("cuda", enabled=amp):
            data = super().run_inferer(data, convert_to_batch, device)
        if amp:
            data[self.output_label_key] = data[self.output_label_key].float()
        return data

    def inverse_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        """Invert every invertible pre-transform (orientation and spacing) on the prediction."""
        return []

    def post_transforms(self, data: dict[str, Any] | None = None) -> Sequence[Callable]:
        """Softmax, argmax, the largest 3D component of each label of ``inference.largest_component``, and drop the
        channel axis: an integer label volume whose values are label values."""
        largest = [self.task.labels[name] for name in self.task.inference.largest_component]
        steps = [
            Activationsd(keys="pred", softmax=True),
            AsDiscreted(keys="pred", argmax=True),
            *([KeepLargestConnectedComponentd(keys="pred", applied_labels=largest, independent=True)] if largest
              else []),
            SqueezeDimd(keys="pred", dim=0),
        ]
        if str((data or {}).get("device") or "cpu").startswith("cuda"):
            steps.append(EnsureTyped(keys="pred", device="cpu"))  # the writer reads host memory
        return steps

    def writer(self, data: dict[str, Any], extension: str | None = None, dtype: Any = None) -> tuple[Any, Any]:
        """Write ``pred`` with its own (restored) affine as uint8."""
        data.setdefault("result_dtype", "uint8")
        data["labels"] = self.labels
        path, result = Writer(label="pred", json="result", ref_image="pred")(data)
        if self.task.measurements == "spine":
            result = {**(result or {}), "measurements": measure_label_file(path, self.task.labels).as_dict()}
        return path, result
