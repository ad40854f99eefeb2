"""Training anatomies and evaluation cases from the phantom generator, on a task's grid.

A phantom's arrays are ``(z, y, x)`` in the frame :mod:`hope.phantoms` describes (x to the patient's left, y
posterior, z superior: LPS with an identity direction). Here they become channel-first ``(1, X, Y, Z)`` MetaTensors
reoriented to RAS and resampled to the task's spacing, exactly as :func:`hope.transforms.load_and_normalise` sees
such a volume read from a file, so synthetic training patches and served volumes share one orientation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import replace

import numpy as np
import torch
from monai.data import MetaTensor
from monai.transforms import Compose, Orientationd, ScaleIntensityd, Spacingd

from hope.config import TaskDefinition
from hope.phantoms import MR_SPEC, Phantom, generate_neck_ct, generate_neck_mr
from hope.synthesis.pipeline import RENDERED, TISSUES
from hope.transforms import normalise_intensity

#: The anatomies trained and evaluated on, for CT and MR alike: C1 to T1 at true size (1 x 1 x 1.5 mm; CT_SPEC would
#: squeeze the column along z), half of them with a tumour (real scans mostly have none).
ANATOMY_SPEC = replace(MR_SPEC, tumor_probability=0.5)
#: The phantom renderings of each modality: what a task's network is evaluated on besides synthetic images.
RENDERINGS: Mapping[str, tuple[str, ...]] = {"CT": ("CT",), "MR": ("T1", "T2")}


def renderings(task: TaskDefinition) -> tuple[str, ...]:
    """The phantom renderings of the task's (first) modality: ``("CT",)`` or ``("T1", "T2")``."""
    modality = task.modalities[0]
    if modality not in RENDERINGS:
        raise ValueError(f"task {task.name}: no phantom renders modality {modality}; "
                         f"phantoms exist for {', '.join(RENDERINGS)}")
    return RENDERINGS[modality]


def render_phantom(task: TaskDefinition, seed: int, rendering: str) -> Phantom:
    """The phantom of ``seed`` with the task's labels, rendered as ``rendering`` (``CT``, ``T1`` or ``T2``), on
    :data:`ANATOMY_SPEC`.

    Every rendering of one seed shares its anatomy (its tissue map and labels).
    """
    if rendering == "CT":
        return generate_neck_ct(seed, task.labels, ANATOMY_SPEC)
    return generate_neck_mr(seed, task.labels, rendering, ANATOMY_SPEC)


def on_task_grid(task: TaskDefinition, phantom: Phantom, images: Mapping[str, str]) -> dict[str, MetaTensor]:
    """Arrays of ``phantom`` as channel-first RAS volumes on the task's grid.

    ``images`` maps output keys to the phantom's attribute names (``image``, ``label``, ``tissues``). The key
    ``image`` is resampled linearly and normalised as the task's inference normalises, any other key holding the
    phantom's image only resampled; the maps are resampled nearest-neighbour and kept uint8.
    """
    sx, sy, sz = phantom.spacing
    affine = torch.diag(torch.tensor([-sx, -sy, sz, 1.0], dtype=torch.float64))  # LPS, as ITK reads it, in RAS
    data = {key: MetaTensor(np.ascontiguousarray(getattr(phantom, name).T[None]), affine=affine)
            for key, name in images.items()}
    keys = list(data)
    modes = ["bilinear" if images[k] == "image" else "nearest" for k in keys]
    steps = [Orientationd(keys=keys, axcodes="RAS"), Spacingd(keys=keys, pixdim=task.preprocessing.spacing,
                                                              mode=modes)]
    if "image" in data:
        steps.append(normalise_intensity(task))
    out = Compose(steps)(data)
    return {k: v if images[k] == "image" else v.to(torch.uint8) for k, v in out.items()}


def anatomy_pool(task: TaskDefinition, seeds: Iterable[int]) -> list[dict[str, MetaTensor]]:
    """Training anatomies: the tissue map (key ``tissues``), task label (``label``) and phantom rendering
    (``rendered``, min-max scaled to ``[0, 1]``) of each seed's phantom, one item per rendering of the task's
    modality (CT; or T1 and T2, sharing one anatomy).

    The pipeline (:mod:`hope.synthesis.pipeline`) synthesises most images from ``tissues``, and keeps ``rendered``
    for a share of them (``SynthesisSettings.rendered_prob``).
    """
    keys = {TISSUES: "tissues", "label": "label", RENDERED: "image"}
    scale = ScaleIntensityd(keys=RENDERED, minv=0.0, maxv=1.0)
    return [scale(on_task_grid(task, render_phantom(task, seed, rendering), keys))
            for seed in seeds for rendering in renderings(task)]
