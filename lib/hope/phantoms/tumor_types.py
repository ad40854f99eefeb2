"""Seeded 2D phantoms of cervical vertebrae with rare bone-tumour TYPES, for few-shot meta-learning.

Each case is one axial slice (``size`` x ``size`` pixels, about 1 mm each, values roughly in ``[0, 1]`` like a
bone-windowed CT): a vertebral body with trabecular texture and a cortical rim, the spinal canal, the posterior
arch with pedicles, laminae, transverse and spinous processes, and paraspinal soft tissue. One lesion is drawn
per case, and its TYPE fixes the *site*, *shape*, *internal texture* and *margin*; intensities overlap between
types and grades, so neither the type nor the grade is a function of mean intensity.

Grades follow the WHO bone-tumour categories (benign / intermediate, here "borderline" / malignant) and correlate
with features shared across types: benign lesions have sharp or sclerotic margins, borderline lesions are
expansile with thin rims, malignant ones are ill-defined, destroy the cortex and often grow a soft-tissue
component. The held-out types (:data:`HELDOUT_TYPES`) recombine these features in ways no base type
(:data:`BASE_TYPES`) shows, so they measure few-shot generalisation.

These are stand-ins: no freely licensed spine scan with tumour labels exists, so numbers on these phantoms are not
clinical numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from scipy import ndimage

from hope.fewshot.episodes import LabelledCase
from hope.label_kinds import kind_index, one_hot_kinds

Site = Literal["body", "body_posterior", "posterior"]
Shape = Literal["round", "lobulated", "multicystic", "spiculated", "infiltrative", "expansile"]
Texture = Literal["homogeneous", "polka_dot", "septated", "bubbly", "mottled", "ring_arc", "struts", "nidus"]
Margin = Literal["sclerotic_rim", "sharp", "thin_rim", "ill_defined"]

_SOFT_TISSUE = 0.30
_FAT = 0.16
_CSF = 0.22
_CANCELLOUS = 0.55
_CORTEX = 0.88
_RIM = {"sclerotic_rim": (0.85, 2.0), "thin_rim": (0.75, 1.0)}  # margin -> (intensity, width px)
_EDGE_SIGMA = {"sclerotic_rim": 0.5, "sharp": 0.5, "thin_rim": 0.7, "ill_defined": 1.6}


@dataclass(frozen=True)
class TumorType:
    """A phantom tumour type: where it grows, what it looks like, and its grade.

    ``intensity`` is the range the lesion matrix is drawn from (uniformly, per case), ``radius`` the range of its
    size in pixels at ``size=64``, ``soft_tissue`` the chance of an extra-osseous soft-tissue component.
    """

    name: str
    grade: str
    site: Site
    shape: Shape
    texture: Texture
    margin: Margin
    intensity: tuple[float, float]
    radius: tuple[float, float]
    soft_tissue: float = 0.0


_TYPES = (
    # name, grade, site, shape, texture, margin, intensity, radius[, soft_tissue]
    # base types: meta-training
    ("enostosis", "benign", "body", "round", "homogeneous", "sharp", (0.8, 0.95), (3.5, 5.5)),
    ("haemangioma", "benign", "body", "round", "polka_dot", "sharp", (0.35, 0.5), (6.0, 8.5)),
    ("osteoid_osteoma", "benign", "posterior", "round", "nidus", "sclerotic_rim", (0.6, 0.8), (3.5, 5.0)),
    ("giant_cell_tumour", "borderline", "body", "expansile", "septated", "sharp", (0.2, 0.35), (7.0, 9.5)),
    ("osteoblastoma", "borderline", "posterior", "lobulated", "mottled", "thin_rim", (0.5, 0.7), (5.0, 7.0)),
    ("chondrosarcoma", "malignant", "posterior", "lobulated", "ring_arc", "ill_defined", (0.3, 0.45), (6, 8), 0.8),
    ("lytic_metastasis", "malignant", "body", "infiltrative", "homogeneous", "ill_defined", (0.15, 0.3), (6, 9), 0.5),
    ("blastic_metastasis", "malignant", "body", "spiculated", "mottled", "ill_defined", (0.7, 0.9), (5.0, 8.0)),
    # held-out types: never seen in meta-training
    ("simple_bone_cyst", "benign", "body", "round", "homogeneous", "sclerotic_rim", (0.2, 0.35), (5.0, 7.5)),
    ("aneurysmal_bone_cyst", "borderline", "posterior", "multicystic", "bubbly", "thin_rim", (0.25, 0.45), (6, 8)),
    ("plasmacytoma", "malignant", "body", "expansile", "struts", "ill_defined", (0.25, 0.4), (7.0, 9.5), 0.4),
    ("chordoma", "malignant", "body_posterior", "lobulated", "bubbly", "ill_defined", (0.35, 0.5), (6.0, 8.5), 0.9),
)
TUMOR_TYPES: dict[str, TumorType] = {row[0]: TumorType(*row) for row in _TYPES}
BASE_TYPES = tuple(list(TUMOR_TYPES)[:8])
HELDOUT_TYPES = tuple(list(TUMOR_TYPES)[8:])


@dataclass(frozen=True)
class _Anatomy:
    """The rendered background and the pieces lesions are placed against (all ``size`` x ``size``)."""

    image: np.ndarray
    bone: np.ndarray
    canal: np.ndarray
    body_centre: np.ndarray
    canal_centre: np.ndarray
    pedicles: tuple[np.ndarray, np.ndarray]


def _smooth_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Gaussian-filtered white noise scaled to unit standard deviation."""
    noise = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    return noise / (noise.std() + 1e-8)


def _ellipse(yy: np.ndarray, xx: np.ndarray, centre: np.ndarray, radii: tuple[float, float]) -> np.ndarray:
    """Boolean ellipse with ``radii = (ry, rx)``."""
    return ((yy - centre[0]) / radii[0]) ** 2 + ((xx - centre[1]) / radii[1]) ** 2 <= 1.0


def _segment(yy: np.ndarray, xx: np.ndarray, a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    """Boolean thick line segment from ``a`` to ``b`` (``(y, x)`` points)."""
    d = b - a
    t = np.clip(((yy - a[0]) * d[0] + (xx - a[1]) * d[1]) / (d @ d), 0.0, 1.0)
    return (yy - a[0] - t * d[0]) ** 2 + (xx - a[1] - t * d[1]) ** 2 <= (width / 2) ** 2


def _anatomy(rng: np.random.Generator, size: int) -> _Anatomy:
    """A randomly posed axial cervical vertebra in paraspinal soft tissue (anterior is up)."""
    s = size / 64.0
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    angle = rng.uniform(-0.2, 0.2)
    scale = s * rng.uniform(0.9, 1.1)
    shift = rng.uniform(-3, 3, 2) * s + size / 2

    def place(dy: float, dx: float) -> np.ndarray:
        """A point given in the vertebra's frame (pixels at size 64, origin mid-canal-front) in image rows/cols."""
        c, sn = np.cos(angle), np.sin(angle)
        return shift + scale * np.array([c * dy - sn * dx, sn * dy + c * dx])

    body_c, canal_c = place(-11, 0), place(8, 0)
    body_r = (scale * rng.uniform(9, 11), scale * rng.uniform(12, 14))
    canal_r = (scale * rng.uniform(5, 6.5), scale * rng.uniform(7, 9))
    body = _ellipse(yy, xx, body_c, body_r)
    canal = _ellipse(yy, xx, canal_c, canal_r)
    ring = _ellipse(yy, xx, canal_c, (canal_r[0] + 3 * scale, canal_r[1] + 3 * scale)) & ~canal
    ring &= ~_ellipse(yy, xx, body_c, (body_r[0] + 1.5 * scale, body_r[1] + 1.5 * scale))
    ped = (place(1, -9), place(1, 9))
    posterior = ring.copy()
    for side in (-1, 1):
        posterior |= _segment(yy, xx, place(-3, side * 8), place(4, side * 10), 4 * scale)
        posterior |= _segment(yy, xx, place(2, side * 10), place(0, side * rng.uniform(22, 26)), 3.5 * scale)
    posterior |= _segment(yy, xx, place(15, 0), place(rng.uniform(24, 28), 0), 3.5 * scale)
    posterior &= ~canal & ~body
    bone = body | posterior

    image = _SOFT_TISSUE + 0.03 * _smooth_noise(rng, (size, size), 4 * s)
    fat = _smooth_noise(rng, (size, size), 3 * s) > 1.2
    image[fat] = _FAT
    cancellous = _CANCELLOUS + 0.06 * _smooth_noise(rng, (size, size), 0.8 * s)
    image[body] = cancellous[body]
    cortex = body & ~ndimage.binary_erosion(body, iterations=max(1, round(1.5 * s)))
    image[cortex | posterior] = _CORTEX
    medulla = ndimage.binary_erosion(posterior, iterations=max(1, round(1.2 * s)))
    image[medulla] = cancellous[medulla]
    image[canal] = _CSF
    return _Anatomy(image, bone, canal, body_c, canal_c, ped)


def _site_centre(rng: np.random.Generator, anatomy: _Anatomy, site: Site, s: float) -> np.ndarray:
    """Where a lesion of this site is centred."""
    if site == "body":
        return anatomy.body_centre + rng.uniform(-3, 3, 2) * s
    if site == "body_posterior":
        towards_canal = anatomy.canal_centre - anatomy.body_centre
        return anatomy.body_centre + 0.55 * towards_canal + rng.uniform(-2, 2, 2) * s
    return anatomy.pedicles[int(rng.integers(2))] + rng.uniform(-1.5, 1.5, 2) * s


def _radial(rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, centre: np.ndarray, radius: float,
            waves: Sequence[int], amplitude: float) -> np.ndarray:
    """A star-shaped region ``r <= R(1 + sum a_k cos(k theta + phi_k))`` with a random anisotropy."""
    dy, dx = yy - centre[0], xx - centre[1]
    theta = np.arctan2(dy, dx)
    stretch = rng.uniform(0.8, 1.25)
    r = np.hypot(dy * stretch, dx / stretch)
    bound = np.ones_like(theta)
    for k in waves:
        bound += amplitude * rng.uniform(0.5, 1.0) * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    return r <= radius * bound


def _shape(rng: np.random.Generator, shape: Shape, yy: np.ndarray, xx: np.ndarray, centre: np.ndarray,
           radius: float, anatomy: _Anatomy) -> np.ndarray:
    """The lesion's extent (boolean) for a shape family."""
    if shape == "round":
        return _radial(rng, yy, xx, centre, radius, (2, 3), 0.05)
    if shape in ("lobulated", "multicystic"):
        n = int(rng.integers(3, 5)) if shape == "lobulated" else int(rng.integers(4, 7))
        lobe = 0.6 if shape == "lobulated" else 0.45
        region = _radial(rng, yy, xx, centre, radius * 0.55, (2,), 0.05)
        for _ in range(n):
            phi = rng.uniform(0, 2 * np.pi)
            offset = rng.uniform(0.35, 0.65) * radius * np.array([np.sin(phi), np.cos(phi)])
            region |= _radial(rng, yy, xx, centre + offset, radius * lobe * rng.uniform(0.8, 1.1), (3,), 0.05)
        return region
    if shape == "spiculated":
        return _radial(rng, yy, xx, centre, radius * 0.85, (2, 7, 11), 0.22)
    if shape == "infiltrative":
        blob = _radial(rng, yy, xx, centre, radius, (2, 3), 0.1)
        patchy = _smooth_noise(rng, yy.shape, 1.5 * radius / 7) > -0.6
        return ndimage.binary_opening(blob & patchy) & (anatomy.bone | blob)
    # expansile: grows from the bone outwards, pushing the cortex beyond its outline
    away = centre - anatomy.canal_centre
    away = away / (np.linalg.norm(away) + 1e-8)
    return _radial(rng, yy, xx, centre + away * radius * 0.3, radius, (2,), 0.08)


def _texture(rng: np.random.Generator, texture: Texture, region: np.ndarray, base: float, radius: float,
             yy: np.ndarray, xx: np.ndarray, centre: np.ndarray) -> np.ndarray:
    """The lesion's internal intensities (full image; only ``region`` is used)."""
    size = region.shape
    values = base + 0.025 * rng.standard_normal(size)
    if texture == "polka_dot":
        dots = ndimage.gaussian_filter(rng.standard_normal(size), 0.7) > 1.0
        values[dots] = base + 0.35
    elif texture in ("septated", "bubbly", "struts"):
        n = int(rng.integers(5, 9)) if texture != "struts" else int(rng.integers(9, 14))
        ys, xs = np.nonzero(region)
        pick = rng.integers(len(ys), size=n)
        seeds = np.stack([ys[pick], xs[pick]], 1).astype(float)
        dist = np.sort(np.hypot(yy[..., None] - seeds[:, 0], xx[..., None] - seeds[:, 1]), axis=-1)
        width = {"septated": 0.7, "bubbly": 1.1, "struts": 1.8}[texture]
        walls = (dist[..., 1] - dist[..., 0]) < width
        values[walls] = base + (0.3 if texture != "struts" else 0.4)
        if texture == "bubbly":  # fluid-fluid levels: the dependent half of each cyst is denser
            nearest = np.argmin(np.hypot(yy[..., None] - seeds[:, 0], xx[..., None] - seeds[:, 1]), axis=-1)
            dependent = yy > seeds[nearest, 0]
            values[dependent & ~walls] += 0.12
    elif texture == "mottled":
        values = values + 0.12 * _smooth_noise(rng, size, 1.0)
    elif texture == "ring_arc":
        rings = np.abs(_smooth_noise(rng, size, 1.8)) < 0.18
        values[rings] = base + 0.4
    elif texture == "nidus":
        nidus = np.hypot(yy - centre[0], xx - centre[1]) <= max(1.2, 0.4 * radius)
        values[nidus] = 0.25
    return values


def render_case(tumor_type: TumorType, seed: int, size: int = 64, with_anatomy: bool = False) -> LabelledCase:
    """Draw one case of ``tumor_type``: image (``float32``) and lesion mask (``uint8``), seeded and deterministic.

    With ``with_anatomy`` the case carries its exact kind maps (:func:`hope.label_kinds.one_hot_kinds`: vertebra,
    canal, tumour) as anatomy features, for meta-training with them (:mod:`hope.fewshot.anatomy_training`).
    """
    rng = np.random.default_rng([seed, list(TUMOR_TYPES).index(tumor_type.name), size])
    s = size / 64.0
    anatomy = _anatomy(rng, size)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    centre = _site_centre(rng, anatomy, tumor_type.site, s)
    radius = rng.uniform(*tumor_type.radius) * s
    region = _shape(rng, tumor_type.shape, yy, xx, centre, radius, anatomy)
    if rng.random() < tumor_type.soft_tissue:  # extra-osseous soft-tissue component, beyond the cortex
        outward = centre - anatomy.canal_centre
        outward = outward / (np.linalg.norm(outward) + 1e-8)
        lump_centre = centre + outward * radius * rng.uniform(0.7, 1.0) + rng.uniform(-2, 2, 2) * s
        lump = _radial(rng, yy, xx, lump_centre, radius * rng.uniform(0.6, 0.9), (3, 5), 0.15)
        region |= lump & ~anatomy.canal
    region = ndimage.binary_fill_holes(region & ~anatomy.canal)
    if region.sum() < 4:  # a degenerate draw (lesion clipped away): fall back to a small disc at the centre
        region = np.hypot(yy - centre[0], xx - centre[1]) <= 2.5 * s

    base = rng.uniform(*tumor_type.intensity)
    values = _texture(rng, tumor_type.texture, region, base, radius, yy, xx, centre)
    image = anatomy.image.copy()
    label = region.copy()
    if tumor_type.margin in _RIM:
        rim_value, rim_width = _RIM[tumor_type.margin]
        rim = ndimage.binary_dilation(region, iterations=max(1, round(rim_width * s))) & ~region & ~anatomy.canal
        image[rim] = rim_value + 0.03 * rng.standard_normal(int(rim.sum()))
        label |= rim
    weight = ndimage.gaussian_filter(region.astype(np.float64), _EDGE_SIGMA[tumor_type.margin] * s)
    if tumor_type.margin == "ill_defined":  # permeative edge: a ragged transition zone
        weight *= np.clip(1.0 + 0.5 * _smooth_noise(rng, region.shape, 0.8), 0.0, 1.5)
        weight = np.clip(weight, 0.0, 1.0)
    image = image * (1 - weight) + values * weight

    contrast, offset = rng.uniform(0.9, 1.1), rng.uniform(-0.04, 0.04)
    image = ndimage.gaussian_filter(image, 0.5 * s) * contrast + offset
    image = image + rng.uniform(0.015, 0.035) * rng.standard_normal(image.shape)
    kinds = None
    if with_anatomy:
        kinds = one_hot_kinds(kind_index({"vertebra": anatomy.bone, "canal": anatomy.canal, "tumor": label}))
    return LabelledCase(
        image=image.astype(np.float32),
        mask=label.astype(np.uint8),
        tumor_type=tumor_type.name,
        grade=tumor_type.grade,
        anatomy=kinds,
    )


def generate_cases(types: Sequence[str], n_per_type: int, seed: int = 0, size: int = 64, with_anatomy: bool = False
                   ) -> list[LabelledCase]:
    """``n_per_type`` cases of each named type (with their kind maps when ``with_anatomy``); case ``i`` of a type
    uses seed ``seed * 100003 + i``."""
    return [render_case(TUMOR_TYPES[name], seed * 100_003 + i, size, with_anatomy)
            for name in types for i in range(n_per_type)]


def generate_unlabelled(n: int, types: Sequence[str] = BASE_TYPES, seed: int = 0, size: int = 64) -> np.ndarray:
    """``(n, size, size)`` unlabelled images for self-supervision: cases of ``types`` cycled, labels dropped."""
    cases = [render_case(TUMOR_TYPES[types[i % len(types)]], 7_000_003 + seed * 100_003 + i, size) for i in range(n)]
    return np.stack([c.image for c in cases])
