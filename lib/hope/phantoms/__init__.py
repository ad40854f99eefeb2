"""Synthetic, seeded data for tests, demos and benchmarks; the server itself never imports it.

* :mod:`~hope.phantoms.neck_ct`: 3D neck CT phantoms with cervical-spine and tumour labels (exported here);
* :mod:`~hope.phantoms.tumor_types`: 2D phantoms of rare bone-tumour types, for few-shot pretraining and benchmarks;
* :mod:`~hope.phantoms.tumor_stacks`: short CT stacks through those tumour types, to store in Orthanc.

The tumour-type modules need torch (through :mod:`hope.fewshot`), so they are imported only where used.
"""

from hope.phantoms.neck_ct import (
    MIN_SLICES,
    REQUIRED_LABELS,
    VERTEBRAE,
    Phantom,
    PhantomSpec,
    generate_cohort,
    generate_neck_ct,
)

__all__ = [
    "MIN_SLICES",
    "REQUIRED_LABELS",
    "VERTEBRAE",
    "Phantom",
    "PhantomSpec",
    "generate_cohort",
    "generate_neck_ct",
]
