"""Interactive correction: the scribble transforms and a simulated annotator for benchmarks and tests.

* :mod:`hope.interactive.transforms`: the MONAI transforms of scribble corrections (GraphCut), used by
  :class:`hope.infers.scribbles.StructureScribblesInfer`; imported on demand (they pull in MONAI and numpymaxflow);
* :mod:`hope.interactive.geometry`: voxel-grid helpers (bounding boxes, nearest-label filling);
* :mod:`hope.interactive.simulate`: scribbles drawn from the ground truth where a prediction is wrong.
"""

from hope.interactive.simulate import Scribble, dice, error_regions, next_scribble, paint

__all__ = ["Scribble", "dice", "error_regions", "next_scribble", "paint"]
