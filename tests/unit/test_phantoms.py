"""The synthetic neck CT phantom: determinism, labels, anatomy, variation and spec handling."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from scipy import ndimage

from hope.phantoms import DISCS, TISSUES, VERTEBRAE, Phantom, PhantomSpec, generate_cohort, generate_neck_ct


@pytest.fixture(scope="module")
def cohort(spine_labels: dict[str, int]) -> list[Phantom]:
    """Ten default phantoms, seeds 0..9."""
    return list(generate_cohort(10, spine_labels))


def _vertebra_values(labels: dict[str, int]) -> list[int]:
    return [labels[name] for name in VERTEBRAE]


def test_same_seed_gives_identical_phantoms(spine_labels: dict[str, int]) -> None:
    a, b = generate_neck_ct(7, spine_labels), generate_neck_ct(7, spine_labels)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.label, b.label)
    assert a.params == b.params


def test_different_seeds_give_different_phantoms(cohort: list[Phantom]) -> None:
    first, second = cohort[0], cohort[1]
    assert not np.array_equal(first.image, second.image)
    assert not np.array_equal(first.label, second.label)


def test_arrays_follow_the_conventions(cohort: list[Phantom]) -> None:
    phantom = cohort[0]
    assert phantom.image.dtype == np.int16 and phantom.label.dtype == np.uint8
    assert phantom.image.shape == phantom.label.shape == PhantomSpec().shape
    assert phantom.spacing == PhantomSpec().spacing
    assert phantom.seed == 0
    json.dumps(phantom.params)


def test_every_label_is_present(cohort: list[Phantom], spine_labels: dict[str, int]) -> None:
    for phantom in cohort:
        assert set(np.unique(phantom.label)) == {0, *spine_labels.values()}


def test_tumor_touches_a_vertebra(cohort: list[Phantom], spine_labels: dict[str, int]) -> None:
    for phantom in cohort:
        tumor = phantom.label == spine_labels["tumor"]
        near = ndimage.binary_dilation(tumor, structure=np.ones((3, 3, 3), bool))
        assert np.isin(phantom.label[near], _vertebra_values(spine_labels)).any(), phantom.seed


def test_tumor_covers_its_centre(cohort: list[Phantom], spine_labels: dict[str, int]) -> None:
    for phantom in cohort:
        centre = tuple(round(c) for c in phantom.params["tumor"]["centre_index"])
        assert phantom.label[centre] == spine_labels["tumor"]


def test_c1_is_superior_and_canal_posterior(cohort: list[Phantom], spine_labels: dict[str, int]) -> None:
    phantom = cohort[0]
    z_of = {name: np.argwhere(phantom.label == spine_labels[name])[:, 0].mean() for name in VERTEBRAE}
    assert list(z_of.values()) == sorted(z_of.values(), reverse=True)  # C1 highest z ... C7 lowest
    c4 = phantom.params["vertebrae"][3]
    z = round(sum(c4["z_range_mm"]) / 2 / phantom.spacing[2])
    bone_rows = np.nonzero(phantom.label[z] == spine_labels["C4"])[0]
    canal_rows = np.nonzero(phantom.label[z] == spine_labels["spinal_canal"])[0]
    assert bone_rows.min() < canal_rows.min()  # the body lies anterior (lower row) to the canal


def test_anatomy_varies_between_seeds(cohort: list[Phantom]) -> None:
    centres = {tuple(np.round(p.params["tumor"]["centre_mm"], 1)) for p in cohort}
    radii = {round(p.params["tumor"]["radius_mm"], 2) for p in cohort}
    bodies = {tuple(np.round(p.params["vertebrae"][3]["body_semi_axes_mm"], 2)) for p in cohort}
    lordosis = {round(p.params["column"]["lordosis_mm"], 2) for p in cohort}
    assert min(len(centres), len(radii), len(bodies), len(lordosis)) == len(cohort)
    assert {p.params["tumor"]["kind"] for p in cohort} == {"lytic", "sclerotic"}
    assert len({p.params["tumor"]["vertebra"] for p in cohort}) > 2


def test_vertebrae_grow_from_c1_to_c7(cohort: list[Phantom]) -> None:
    for phantom in cohort:
        widths = [v["body_semi_axes_mm"][0] for v in phantom.params["vertebrae"]]
        assert widths == sorted(widths) and widths[-1] > widths[0]


def test_hounsfield_units_are_plausible(cohort: list[Phantom], spine_labels: dict[str, int]) -> None:
    for phantom in cohort:
        image, label = phantom.image, phantom.label
        bone = image[np.isin(label, _vertebra_values(spine_labels))].mean()
        canal = np.median(image[label == spine_labels["spinal_canal"]])
        corners = image[:, [0, 0, -1, -1], [0, -1, 0, -1]]
        assert np.median(corners) < -900  # air outside the neck
        assert -50 < canal < 120  # CSF, blurred with the arch around it
        assert bone > 200 and bone > canal + 150
        tumor = np.median(image[label == spine_labels["tumor"]])
        if phantom.params["tumor"]["kind"] == "sclerotic":
            assert tumor > bone
        else:
            assert tumor < bone


def test_tissue_map_matches_the_labels(cohort: list[Phantom], spine_labels: dict[str, int]) -> None:
    for phantom in cohort[:3]:
        assert phantom.tissues.dtype == np.uint8 and phantom.tissues.shape == phantom.image.shape
        assert phantom.params["modality"] == "CT"
        canal = np.isin(phantom.tissues, [TISSUES["csf"], TISSUES["cord"]])
        np.testing.assert_array_equal(phantom.label == spine_labels["spinal_canal"], canal)
        np.testing.assert_array_equal(phantom.label == spine_labels["tumor"], phantom.tissues == TISSUES["tumor"])
        air = np.median(phantom.image[phantom.tissues == TISSUES["background"]])
        fat = np.median(phantom.image[phantom.tissues == TISSUES["fat"]])
        assert air < -900 and -150 < fat < -50


def test_optional_labels_split_the_canal_and_paint_discs(spine_labels: dict[str, int]) -> None:
    extra = {"cord": 20, **{name: 21 + i for i, name in enumerate(DISCS)}}
    plain, detailed = generate_neck_ct(5, spine_labels), generate_neck_ct(5, {**spine_labels, **extra})
    np.testing.assert_array_equal(plain.image, detailed.image)
    assert set(np.unique(detailed.label)) == {0, *spine_labels.values(), *extra.values()}
    canal = np.isin(detailed.label, [spine_labels["spinal_canal"], extra["cord"]])
    np.testing.assert_array_equal(canal, plain.label == spine_labels["spinal_canal"])


def test_custom_label_values_are_used() -> None:
    labels = {**{name: 10 + i for i, name in enumerate(VERTEBRAE)}, "spinal_canal": 40, "tumor": 99}
    phantom = generate_neck_ct(3, labels)
    assert set(np.unique(phantom.label)) == {0, *labels.values()}


def test_missing_label_name_is_rejected(spine_labels: dict[str, int]) -> None:
    labels = {k: v for k, v in spine_labels.items() if k != "spinal_canal"}
    with pytest.raises(ValueError, match="spinal_canal"):
        generate_neck_ct(0, labels)


@pytest.mark.parametrize("bad", [{"tumor": 0}, {"tumor": 256}, {"tumor": 1}])
def test_invalid_label_values_are_rejected(spine_labels: dict[str, int], bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="label values"):
        generate_neck_ct(0, {**spine_labels, **bad})


def test_tumor_probability_zero_gives_no_tumor(spine_labels: dict[str, int]) -> None:
    phantom = generate_neck_ct(0, spine_labels, PhantomSpec(tumor_probability=0.0))
    assert phantom.params["tumor"] is None
    assert spine_labels["tumor"] not in phantom.label


@pytest.mark.parametrize(
    "kwargs",
    [
        {"shape": (10, 64, 64)},
        {"spacing": (1.0, 0.0, 1.0)},
        {"noise_hu": (5.0, 1.0)},
        {"tumor_probability": 2.0},
        {"cord_width_mm": (8.0, 30.0)},
    ],
)
def test_invalid_specs_are_rejected(kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        PhantomSpec(**kwargs)


def test_cohort_uses_consecutive_seeds(spine_labels: dict[str, int]) -> None:
    phantoms = list(generate_cohort(2, spine_labels, first_seed=5))
    assert [p.seed for p in phantoms] == [5, 6]
    np.testing.assert_array_equal(phantoms[1].image, generate_neck_ct(6, spine_labels).image)


def test_long_fine_volume_keeps_the_spine_at_true_size(spine_labels: dict[str, int]) -> None:
    spec = PhantomSpec(shape=(200, 128, 128), spacing=(1.0, 1.0, 0.8))
    start = time.perf_counter()
    phantom = generate_neck_ct(1, spine_labels, spec)
    assert time.perf_counter() - start < 5.0
    assert phantom.image.shape == (200, 128, 128)
    assert set(np.unique(phantom.label)) == {0, *spine_labels.values()}
    assert phantom.params["column"]["z_scale"] == 1.0  # 160 mm of z holds C1-C7 uncompressed
    spine_slices = np.nonzero(np.isin(phantom.label, _vertebra_values(spine_labels)).any(axis=(1, 2)))[0]
    assert spine_slices.min() > 0 and spine_slices.max() < 199  # centred, soft tissue above and below


def test_short_field_of_view_compresses_the_column(spine_labels: dict[str, int]) -> None:
    phantom = generate_neck_ct(2, spine_labels, PhantomSpec(shape=(24, 64, 64)))
    assert phantom.params["column"]["z_scale"] < 1.0  # 60 mm of z is shorter than C1-C7
    assert set(np.unique(phantom.label)) == {0, *spine_labels.values()}
