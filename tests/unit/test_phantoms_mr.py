"""The synthetic neck MR phantom: labels, cord and discs, T1/T2 contrast, artefacts, and its shared anatomy."""

from __future__ import annotations

import itertools
import json
import math
from functools import partial

import numpy as np
import pytest
from scipy import ndimage

from hope.phantoms import (
    DISCS,
    MR_REQUIRED_LABELS,
    MR_SPEC,
    TISSUES,
    VERTEBRAE,
    Phantom,
    PhantomSpec,
    generate_cohort,
    generate_neck_ct,
    generate_neck_mr,
)
from hope.phantoms.mr_artefacts import bias_field

#: A spine_mr-style label map: vertebrae, the CSF space (canal), cord, tumour and the six discs.
MR_LABELS = {name: i for i, name in enumerate(VERTEBRAE, start=1)} | {"canal": 8, "cord": 9, "tumor": 10} | {
    name: i for i, name in enumerate(DISCS, start=11)
}
SMALL = PhantomSpec(shape=(64, 64, 64), spacing=(1.5, 1.5, 2.0))  # for the checks that need no fine cord


@pytest.fixture(scope="module")
def t2() -> list[Phantom]:
    """Three default T2 phantoms, seeds 0..2."""
    return list(generate_cohort(3, MR_LABELS, MR_SPEC, generator=partial(generate_neck_mr, contrast="T2")))


@pytest.fixture(scope="module")
def t1() -> list[Phantom]:
    """Two default T1 phantoms, seeds 0..1."""
    return list(generate_cohort(2, MR_LABELS, MR_SPEC, generator=partial(generate_neck_mr, contrast="T1")))


def _tissue_mean(phantom: Phantom, tissue: str) -> float:
    return float(phantom.image[phantom.tissues == TISSUES[tissue]].mean())


def test_same_seed_gives_identical_phantoms(t2: list[Phantom]) -> None:
    again = generate_neck_mr(1, MR_LABELS, "T2")
    for name in ("image", "label", "tissues"):
        np.testing.assert_array_equal(getattr(again, name), getattr(t2[1], name))
    assert again.params == t2[1].params
    assert not np.array_equal(t2[0].label, t2[1].label)


def test_arrays_and_params_follow_the_conventions(t2: list[Phantom], t1: list[Phantom]) -> None:
    for phantom, contrast in ((t2[0], "T2"), (t1[0], "T1")):
        assert phantom.image.dtype == np.int16 and phantom.image.min() >= 0
        assert phantom.label.dtype == phantom.tissues.dtype == np.uint8
        assert phantom.image.shape == phantom.label.shape == phantom.tissues.shape == MR_SPEC.shape
        assert phantom.spacing == MR_SPEC.spacing
        assert set(np.unique(phantom.tissues)) <= set(TISSUES.values())
        assert (phantom.params["modality"], phantom.params["contrast"]) == ("MR", contrast)
        column = phantom.params["column"]
        assert {"cord_semi_axes_mm", "canal_semi_axes_mm", "lordosis_mm"} <= column.keys()
        assert column["z_scale"] == 1.0  # C1 down to T1 at true size
        json.dumps(phantom.params)


def test_every_label_is_present(t2: list[Phantom], t1: list[Phantom]) -> None:
    for phantom in t2 + t1:
        assert set(np.unique(phantom.label)) == {0, *MR_LABELS.values()}, phantom.seed


def test_labels_agree_with_the_tissue_map(t2: list[Phantom]) -> None:
    for phantom in t2:
        label, tissues = phantom.label, phantom.tissues
        for name, tissue in (("cord", "cord"), ("canal", "csf"), ("tumor", "tumor")):
            np.testing.assert_array_equal(label == MR_LABELS[name], tissues == TISSUES[tissue])
        bone = np.isin(label, [MR_LABELS[v] for v in VERTEBRAE])
        assert np.isin(tissues[bone], [TISSUES["cortical_bone"], TISSUES["cancellous_bone"]]).all()
        disc = np.isin(label, [MR_LABELS[d] for d in DISCS])
        assert np.isin(tissues[disc], [TISSUES["disc_annulus"], TISSUES["disc_nucleus"]]).all()
        unlabelled = (label == 0) & np.isin(tissues, [TISSUES["cortical_bone"], TISSUES["cancellous_bone"]])
        c7_bottom = np.nonzero(label == MR_LABELS["C7"])[0].min()
        assert np.nonzero(unlabelled.any(axis=(1, 2)))[0].max() < c7_bottom  # only T1, below C7, is unlabelled


def test_cord_lies_inside_the_canal(t2: list[Phantom]) -> None:
    for phantom in t2:
        cord = phantom.label == MR_LABELS["cord"]
        around = ndimage.binary_dilation(cord, structure=np.ones((1, 3, 3), bool)) & ~cord
        assert np.isin(phantom.label[around], [MR_LABELS["canal"], MR_LABELS["tumor"]]).all(), phantom.seed
        canal_rows = np.nonzero(phantom.label == MR_LABELS["canal"])[1]
        assert np.nonzero(cord)[1].mean() < canal_rows.mean()  # slightly anterior: lower rows


def test_cord_and_canal_areas_match_their_semi_axes(t2: list[Phantom]) -> None:
    """Every axial slice through the canal away from the tumour shows the drawn ellipses' areas."""
    for phantom in t2:
        column, (sx, sy, _) = phantom.params["column"], phantom.spacing
        cord = math.pi * math.prod(column["cord_semi_axes_mm"])
        csf = math.pi * math.prod(column["canal_semi_axes_mm"]) - cord
        areas = np.stack([(phantom.label == MR_LABELS[n]).sum(axis=(1, 2)) * sx * sy for n in ("cord", "canal")])
        clear = (areas[0] > 0) & ~(phantom.label == MR_LABELS["tumor"]).any(axis=(1, 2))
        assert clear.sum() > 50
        np.testing.assert_allclose(areas[0, clear], cord, rtol=0.1)
        np.testing.assert_allclose(areas[1, clear], csf, rtol=0.1)


def test_discs_lie_between_their_vertebrae(t2: list[Phantom]) -> None:
    for phantom in t2:
        z_of = {name: np.nonzero(phantom.label == MR_LABELS[name])[0].mean() for name in (*VERTEBRAE, *DISCS)}
        z_of["T1"] = sum(phantom.params["vertebrae"][-1]["z_range_mm"]) / 2 / phantom.spacing[2]
        for disc in DISCS:
            _, upper, lower = disc.split("_")
            assert z_of[lower] < z_of[disc] < z_of[upper], (phantom.seed, disc)  # z index 0 is inferior
        assert [z_of[d] for d in DISCS] == sorted((z_of[d] for d in DISCS), reverse=True)
        assert np.nonzero(phantom.label == MR_LABELS["C1"])[0].min() > z_of["disc_C2_C3"]  # no C1/C2 disc


def test_t2_contrast(t2: list[Phantom]) -> None:
    for phantom in t2:
        csf, cord, muscle, fat = (_tissue_mean(phantom, t) for t in ("csf", "cord", "muscle", "fat"))
        assert csf > cord > muscle and csf > 2 * muscle
        assert fat > max(cord, muscle, _tissue_mean(phantom, "soft_tissue"), _tissue_mean(phantom, "cancellous_bone"))
        assert _tissue_mean(phantom, "disc_nucleus") > _tissue_mean(phantom, "disc_annulus")
        assert _tissue_mean(phantom, "cortical_bone") < _tissue_mean(phantom, "cancellous_bone")


def test_t1_contrast(t1: list[Phantom]) -> None:
    for phantom in t1:
        csf, cord, fat, marrow = (_tissue_mean(phantom, t) for t in ("csf", "cord", "fat", "cancellous_bone"))
        assert fat > marrow > cord > csf
        assert _tissue_mean(phantom, "tumor") < marrow


def test_background_carries_rician_noise(t2: list[Phantom]) -> None:
    for phantom in t2:
        outside = phantom.tissues == TISSUES["background"]
        air = phantom.image[ndimage.binary_erosion(outside, np.ones((1, 5, 5), bool))]  # away from blurred skin
        rayleigh_mean = phantom.params["noise_sigma"] * math.sqrt(math.pi / 2)
        assert air.mean() == pytest.approx(rayleigh_mean, rel=0.1)


def test_bias_field_is_smooth_and_spans_its_gain() -> None:
    field = bias_field(np.random.default_rng(0), (20, 30, 40), 1.25)
    assert field.min() == pytest.approx(1 / 1.25, rel=1e-4) and field.max() == pytest.approx(1.25, rel=1e-4)
    assert max(np.abs(np.diff(field, axis=a)).max() for a in range(3)) < 0.05  # no edges: coil shading
    np.testing.assert_array_equal(bias_field(np.random.default_rng(0), (4, 4, 4), 1.0), np.ones((4, 4, 4)))
    with pytest.raises(ValueError, match="max_gain"):
        bias_field(np.random.default_rng(0), (4, 4, 4), 0.9)


def test_shading_varies_across_the_volume(t2: list[Phantom]) -> None:
    """Soft tissue, divided by its drawn value, averages differently in the volume's octants (noise averages out)."""
    for phantom in t2:
        gain = phantom.image / np.float32(phantom.params["intensities"]["soft_tissue"])
        soft = ndimage.binary_erosion(phantom.tissues == TISSUES["soft_tissue"], iterations=2)
        octants = [
            tuple(slice(0, n // 2) if low else slice(n // 2, n) for n, low in zip(MR_SPEC.shape, lows, strict=True))
            for lows in itertools.product((True, False), repeat=3)
        ]
        means = [gain[o][soft[o]].mean() for o in octants]
        assert max(means) / min(means) > 1.05, (phantom.seed, means)
        assert min(means) >= 1 / 1.3 and max(means) <= 1.3


def test_ct_and_mr_share_the_anatomy() -> None:
    ct_labels = {name: i for i, name in enumerate(VERTEBRAE, start=1)} | {"spinal_canal": 8, "tumor": 9}
    ct, mr = generate_neck_ct(4, ct_labels, SMALL), generate_neck_mr(4, MR_LABELS, "T1", SMALL)
    np.testing.assert_array_equal(ct.tissues, mr.tissues)
    for name in (*VERTEBRAE, "tumor"):
        np.testing.assert_array_equal(ct.label == ct_labels[name], mr.label == MR_LABELS[name])
    canal = np.isin(mr.label, [MR_LABELS["canal"], MR_LABELS["cord"]])
    np.testing.assert_array_equal(ct.label == ct_labels["spinal_canal"], canal)
    assert ct.params["column"] == mr.params["column"] and ct.params["tumor"] == mr.params["tumor"]


def test_missing_labels_are_named() -> None:
    labels = {k: v for k, v in MR_LABELS.items() if k not in ("cord", "disc_C7_T1")}
    with pytest.raises(ValueError, match="lacks disc_C7_T1, cord") as error:
        generate_neck_mr(0, labels)
    assert all(name in str(error.value) for name in MR_REQUIRED_LABELS)


def test_unknown_contrast_is_rejected() -> None:
    with pytest.raises(ValueError, match="contrast"):
        generate_neck_mr(0, MR_LABELS, "FLAIR", SMALL)
