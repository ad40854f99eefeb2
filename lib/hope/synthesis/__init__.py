"""SynthSeg-style training data: random-contrast images synthesised from label maps (Billot et al., 2023).

HOPE's spine networks have no real labelled training scans, so they are trained on images drawn on the fly from
phantom anatomies, with a new contrast, deformation and acquisition every time, to segment real CT and MR alike.

* :mod:`~hope.synthesis.mixture`: :class:`RandGaussianMixtureFromLabelsd`, an image from a label map;
* :mod:`~hope.synthesis.resolution`: :class:`RandThickSlicesd`, thick slices along a random axis;
* :mod:`~hope.synthesis.pipeline`: :func:`synthesis_transforms`, the whole randomisation, ending with the task's
  own intensity normalisation, and its :class:`SynthesisSettings`;
* :mod:`~hope.synthesis.anatomy`: phantom anatomies and renderings on a task's grid;
* :mod:`~hope.synthesis.dataset`: the endless stream of synthetic training batches;
* :mod:`~hope.synthesis.evaluation`: held-out Dice with the served sliding window.
"""

from hope.synthesis.anatomy import RENDERINGS, anatomy_pool, on_task_grid, render_phantom, renderings
from hope.synthesis.dataset import synthetic_loader
from hope.synthesis.evaluation import held_out_dice
from hope.synthesis.mixture import RandGaussianMixtureFromLabelsd
from hope.synthesis.pipeline import TISSUES, SynthesisSettings, synthesis_transforms
from hope.synthesis.resolution import RandThickSlicesd

__all__ = [
    "RENDERINGS",
    "TISSUES",
    "RandGaussianMixtureFromLabelsd",
    "RandThickSlicesd",
    "SynthesisSettings",
    "anatomy_pool",
    "held_out_dice",
    "on_task_grid",
    "render_phantom",
    "renderings",
    "synthesis_transforms",
    "synthetic_loader",
]
