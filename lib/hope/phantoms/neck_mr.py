"""Seeded synthetic neck MR volumes (T1 or T2) with cervical-spine labels: vertebrae, discs, cord, canal, tumour.

The anatomy is :func:`hope.phantoms.anatomy.draw_anatomy`'s, so a seed and spec give the same vertebrae, discs,
canal and tumour as :func:`hope.phantoms.neck_ct.generate_neck_ct`; only the signal differs. Arrays follow the
CT phantoms' conventions (``(z, y, x)``, z index 0 inferior, spacing ``(x, y, z)`` mm).

Signal, in arbitrary units (~0..3000, drawn per phantom from each tissue's range of :data:`CONTRASTS`):

* **T2**: CSF very bright, disc nucleus and fat bright, cord intermediate, marrow intermediate, muscle and disc
  annulus dark, cortical bone darker; a lytic tumour bright, a sclerotic one dark.
* **T1**: fat bright, fatty marrow bright-ish, cord intermediate, disc and muscle intermediate-dark, CSF dark;
  the tumour dark.

Then partial-volume blur, a smooth coil-shading field (gain 1 / g..g, g drawn from :data:`BIAS_GAIN`) and Rician
noise (sigma from :data:`NOISE_SIGMA`), stored as int16 >= 0.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hope.phantoms.anatomy import draw_anatomy, label_values
from hope.phantoms.layout import DISCS
from hope.phantoms.mr_artefacts import bias_field, rician_noise
from hope.phantoms.render import Contrast, Phantom, draw_intensities, partial_volume, tissue_image
from hope.phantoms.spec import VERTEBRAE, PhantomSpec

MR_REQUIRED_LABELS = (*VERTEBRAE, *DISCS, "cord", "canal", "tumor")
#: C1 to T1 at true size with a visible cord: 1 mm in-plane, 1.5 mm slices, 144 x 100 x 96 mm (0.92 M voxels).
MR_SPEC = PhantomSpec(shape=(96, 100, 96), spacing=(1.0, 1.0, 1.5))

_AIR = (0.0, 0.0)
CONTRASTS: Mapping[str, Contrast] = {
    "T2": Contrast(
        tissues={
            "background": _AIR,
            "airway": _AIR,
            "fat": (1300.0, 1800.0),
            "soft_tissue": (600.0, 900.0),
            "muscle": (300.0, 450.0),
            "csf": (2200.0, 2800.0),
            "cord": (800.0, 1050.0),
            "disc_annulus": (300.0, 500.0),
            "disc_nucleus": (1500.0, 2100.0),
            "cortical_bone": (50.0, 150.0),
            "cancellous_bone": (650.0, 950.0),
        },
        tumor={"lytic": (1400.0, 2200.0), "sclerotic": (150.0, 400.0)},
    ),
    "T1": Contrast(
        tissues={
            "background": _AIR,
            "airway": _AIR,
            "fat": (1800.0, 2400.0),
            "soft_tissue": (800.0, 1000.0),
            "muscle": (600.0, 750.0),
            "csf": (200.0, 400.0),
            "cord": (850.0, 1050.0),
            "disc_annulus": (500.0, 650.0),
            "disc_nucleus": (600.0, 800.0),
            "cortical_bone": (50.0, 150.0),
            "cancellous_bone": (1100.0, 1500.0),
        },
        tumor={"lytic": (300.0, 600.0), "sclerotic": (100.0, 300.0)},
    ),
}
NOISE_SIGMA = (15.0, 40.0)  # per channel of the complex signal, arbitrary units
BIAS_GAIN = (1.1, 1.3)  # the coil shading spans 1 / gain .. gain
_INT16_MAX = int(np.iinfo(np.int16).max)


def generate_neck_mr(
    seed: int, labels: Mapping[str, int], contrast: str = "T2", spec: PhantomSpec = MR_SPEC
) -> Phantom:
    """Draw one MR phantom from ``spec``; the same ``seed`` always gives identical arrays.

    Args:
        seed: seeds the anatomy (shared with the CT phantom of the same seed and spec), then the MR signal.
        labels: label name -> voxel value; needs :data:`MR_REQUIRED_LABELS` (``C1``..``C7``, the six discs
            ``disc_C2_C3``..``disc_C7_T1``, ``cord``, ``canal`` for the CSF around it, ``tumor``). Vertebrae
            carry their vertebra's value, T1 is bone but background, the tumour overrides what it covers.
        contrast: ``"T2"`` or ``"T1"``.
        spec: geometry and anatomy ranges; :data:`MR_SPEC` by default.

    Raises ``ValueError`` naming the missing labels, or for an unknown contrast.
    """
    if contrast not in CONTRASTS:
        raise ValueError(f"contrast must be one of {', '.join(CONTRASTS)}, got {contrast!r}")
    values = label_values(labels, MR_REQUIRED_LABELS, "neck MR phantom")
    rng = np.random.default_rng(seed)
    anatomy = draw_anatomy(rng, spec)
    intensities = draw_intensities(rng, CONTRASTS[contrast], anatomy)
    gain = float(rng.uniform(*BIAS_GAIN))
    sigma = float(rng.uniform(*NOISE_SIGMA))
    signal = partial_volume(tissue_image(anatomy, intensities), spec.spacing) * bias_field(rng, spec.shape, gain)
    image = rician_noise(signal, sigma, rng)
    params = {
        **anatomy.params(values),
        "modality": "MR",
        "contrast": contrast,
        **intensities.as_params(),
        "bias_max_gain": gain,
        "noise_sigma": sigma,
    }
    stored = np.clip(np.rint(image), 0, _INT16_MAX).astype(np.int16)
    return Phantom(stored, anatomy.labels(values), anatomy.layout.grid.spacing, seed, params, anatomy.tissues)
