"""Seeded synthetic neck CT volumes with cervical-spine labels (C1-C7, spinal canal, tumour).

Conventions
-----------
* Arrays are ``(z, y, x)`` = (slice, row, column); spacing is ``(x, y, z)`` in mm.
* Voxel ``(k, j, i)`` lies at ``(i * sx, j * sy, k * sz)`` mm, the frame that
  :func:`hope.dicom.series_writer.write_series` gives with ``origin=(0, 0, 0)``. In patient (LPS) terms x
  points to the patient's left, y posterior and z superior. So **z index 0 is the most inferior slice: C7
  sits at low z, C1 at high z**, and the spinal canal lies at higher row indices than the vertebral bodies.
* The column is sized in mm (:mod:`hope.phantoms.layout`): compressed along z when the field of view is too
  short (``params["column"]["z_scale"] < 1``), centred with neck soft tissue above and below when it is longer.
* Every parameter in ``Phantom.params`` is plain JSON: positions are ``[x, y, z]`` mm in the frame above.

The anatomy is :func:`hope.phantoms.anatomy.draw_anatomy`'s, so the same seed and spec give the same anatomy as
:func:`hope.phantoms.neck_mr.generate_neck_mr`.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hope.phantoms.anatomy import draw_anatomy, label_values
from hope.phantoms.render import Contrast, Phantom, draw_intensities, partial_volume, tissue_image
from hope.phantoms.spec import VERTEBRAE, PhantomSpec

REQUIRED_LABELS = (*VERTEBRAE, "spinal_canal", "tumor")
#: The default CT geometry: 40 slices of 2.5 mm, 64 x 64 pixels of 1.8 mm (C1-T1 compressed a little along z).
CT_SPEC = PhantomSpec()

#: Hounsfield units of each tissue; cortex and marrow vary most between patients.
CT_CONTRAST = Contrast(
    tissues={
        "background": (-1000.0, -1000.0),
        "airway": (-1000.0, -1000.0),
        "fat": (-120.0, -80.0),
        "soft_tissue": (30.0, 50.0),
        "muscle": (45.0, 65.0),
        "csf": (0.0, 15.0),
        "cord": (30.0, 40.0),
        "disc_annulus": (80.0, 100.0),
        "disc_nucleus": (60.0, 80.0),
        "cortical_bone": (600.0, 800.0),
        "cancellous_bone": (200.0, 350.0),
    },
    tumor={"lytic": (40.0, 120.0), "sclerotic": (900.0, 1200.0)},
)
_HU_LIMITS = (-1024, 3071)


def generate_neck_ct(seed: int, labels: Mapping[str, int], spec: PhantomSpec = CT_SPEC) -> Phantom:
    """Draw one phantom from ``spec``; the same ``seed`` always gives identical arrays.

    ``labels`` maps the task's label names (at least ``C1``..``C7``, ``spinal_canal``, ``tumor``) to their voxel
    values. Vertebral bodies and posterior arches carry their vertebra's value, the canal (cord included) the
    ``spinal_canal`` value, and the tumour overrides whatever it covers. Discs are background unless the map also
    names them (``disc_C2_C3``...), and ``cord``/``canal`` in the map split the canal. A ``ValueError`` names
    any missing label.
    """
    values = label_values(labels, REQUIRED_LABELS, "neck CT phantom")
    rng = np.random.default_rng(seed)
    anatomy = draw_anatomy(rng, spec)
    intensities = draw_intensities(rng, CT_CONTRAST, anatomy)
    noise_hu = float(rng.uniform(*spec.noise_hu))
    image = partial_volume(tissue_image(anatomy, intensities), spec.spacing)
    image += rng.standard_normal(image.shape, dtype=np.float32) * np.float32(noise_hu)
    params = {
        **anatomy.params(values),
        "modality": "CT",
        "contrast": None,
        **intensities.as_params(),
        "noise_hu": noise_hu,
    }
    hu = np.clip(np.rint(image), *_HU_LIMITS).astype(np.int16)
    return Phantom(hu, anatomy.labels(values), anatomy.layout.grid.spacing, seed, params, anatomy.tissues)
