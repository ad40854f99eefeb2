"""The scribble-correction infer task (``POST /infer/<task>_scribbles``) of a task with an ``interactive:`` section.

The algorithm and its transforms are in :mod:`hope.interactive.transforms`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from monai.transforms import (
    Compose,
    CopyItemsd,
    EnsureChannelFirstd,
    LoadImaged,
    ScaleIntensityRanged,
    SqueezeDimd,
)
from monailabel.interfaces.tasks.infer_v2 import InferType
from monailabel.scribbles.transforms import MakeISegUnaryd
from monailabel.tasks.infer.basic_infer import BasicInferTask
from monailabel.transform.writer import Writer

from hope.config import ConfigError, TaskDefinition
from hope.errors import InvalidInputError
from hope.interactive.transforms import (
    ApplyGraphCutd,
    CropToStructured,
    MakeLikelihoodFromScribblesAndLabeld,
    MergeStructured,
    SplitScribblesd,
    scribble_values,
)


class StructureScribblesInfer(BasicInferTask):
    """MONAI Label infer task: refine one structure of a task's label volume with scribbles.

    Request parameters: ``selected_label_name`` (the structure; default ``interactive.structure``),
    ``label_info`` (segment names and values of the upload, as Slicer and OHIF send them), ``lamda`` and ``sigma``
    (GraphCut) and ``output_label`` (``all`` or ``selected``). MONAI Label's ``roi`` is not used: the refinement
    is confined to the box around the scribbles anyway. The transforms are in :mod:`hope.interactive.transforms`.
    """

    def __init__(self, task: TaskDefinition) -> None:
        """Serve scribble corrections of ``task`` with its ``interactive`` settings.

        A :class:`ConfigError` at start-up when the task has no ``interactive:`` section.
        """
        if task.interactive is None:
            raise ConfigError(
                f"task {task.name!r}: missing the 'interactive' section of tasks/{task.name}.yaml that scribble "
                "corrections need; see configs/tasks/spine_ct.yaml"
            )
        self.task = task
        self.settings = task.interactive
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
