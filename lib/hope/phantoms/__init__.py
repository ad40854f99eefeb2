"""Synthetic, seeded data for tests, demos and benchmarks; the server itself never imports it.

* :mod:`~hope.phantoms.anatomy`: one seeded neck anatomy (:mod:`~hope.phantoms.layout` draws it from a
  :class:`~hope.phantoms.spec.PhantomSpec`) as a tissue map and cervical-spine structures;
* :mod:`~hope.phantoms.neck_ct` and :mod:`~hope.phantoms.neck_mr`: that anatomy rendered as a 3D neck CT, or as
  a T1/T2 MR (:mod:`~hope.phantoms.mr_artefacts`: bias field, Rician noise), with labels; all exported here;
* :mod:`~hope.phantoms.tumor_types`: 2D phantoms of rare bone-tumour types, for few-shot pretraining and benchmarks;
* :mod:`~hope.phantoms.tumor_stacks`: short CT stacks through those tumour types, to store in Orthanc.

The tumour-type modules need torch (through :mod:`hope.fewshot`), so they are imported only where used.
"""

from hope.phantoms.anatomy import LABEL_NAMES, TISSUES
from hope.phantoms.cohort import generate_cohort
from hope.phantoms.layout import DISCS
from hope.phantoms.neck_ct import CT_SPEC, REQUIRED_LABELS, generate_neck_ct
from hope.phantoms.neck_mr import MR_REQUIRED_LABELS, MR_SPEC, generate_neck_mr
from hope.phantoms.render import Phantom
from hope.phantoms.spec import MIN_SLICES, VERTEBRAE, PhantomSpec

__all__ = [
    "CT_SPEC",
    "DISCS",
    "LABEL_NAMES",
    "MIN_SLICES",
    "MR_REQUIRED_LABELS",
    "MR_SPEC",
    "REQUIRED_LABELS",
    "TISSUES",
    "VERTEBRAE",
    "Phantom",
    "PhantomSpec",
    "generate_cohort",
    "generate_neck_ct",
    "generate_neck_mr",
]
