"""MR image artefacts for synthetic volumes: coil shading (a smooth bias field) and Rician noise."""

from __future__ import annotations

import math

import numpy as np


def bias_field(rng: np.random.Generator, shape: tuple[int, int, int], max_gain: float) -> np.ndarray:
    """A smooth multiplicative field over ``shape``, spanning exactly ``[1 / max_gain, max_gain]`` (float32).

    The exponential of a random quadratic polynomial in the voxel coordinates (each axis scaled to -1..1), so
    it varies slowly across the whole volume like a receive coil's sensitivity. ``max_gain`` must be >= 1.
    """
    if max_gain < 1.0:
        raise ValueError(f"max_gain must be >= 1 (1 gives a flat field), got {max_gain}")
    z, y, x = (np.linspace(-1.0, 1.0, n, dtype=np.float32).reshape(
        [n if axis == a else 1 for a in range(3)]) for axis, n in enumerate(shape))
    terms = (z, y, x, z * z, y * y, x * x, z * y, z * x, y * x)
    field = np.zeros(shape, dtype=np.float32)
    for coefficient, term in zip(rng.normal(size=len(terms)), terms, strict=True):
        field += np.float32(coefficient) * term
    low, high = float(field.min()), float(field.max())
    half_range = (high - low) / 2
    if half_range == 0.0:
        return np.ones(shape, dtype=np.float32)
    field -= np.float32(low + half_range)
    field *= np.float32(math.log(max_gain) / half_range)
    return np.exp(field)


def rician_noise(signal: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """The magnitude of ``signal`` plus complex gaussian noise of standard deviation ``sigma`` per channel.

    In air this gives the Rayleigh-distributed background of magnitude images (mean ``sigma * sqrt(pi / 2)``).
    """
    real = signal + rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    imaginary = rng.standard_normal(signal.shape, dtype=np.float32) * np.float32(sigma)
    return np.hypot(real, imaginary)
