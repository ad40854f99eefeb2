"""Synthetic, seeded test data: neck CT phantoms with cervical-spine and tumour labels."""

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
