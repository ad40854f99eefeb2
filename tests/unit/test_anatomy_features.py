"""Anatomy features for few-shot matching: kinds, joining, geometry on flipped grids, and the shipped MR network on a
held-out phantom."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
import torch.nn.functional as F
from monai.transforms import Compose

from hope.config import load_task
from hope.fewshot.anatomy_features import (
    KINDS,
    AnatomyError,
    AnatomyFeatures,
    kind_channels,
    pool_kinds,
    shipped_definition,
    task_grid_image,
)
from hope.fewshot.checkpoint import build_segmenter
from hope.fewshot.config import load_fewshot_task
from hope.fewshot.episodes import LabelledCase, build_support_set
from hope.fewshot.prototypes import join_features
from hope.fewshot.volume_inference import lesion_probabilities
from hope.fewshot.volumes import mask_on_slices, to_slices
from hope.phantoms import generate_neck_mr
from hope.transforms import infer_transforms

HELD_OUT_SEED = 20_000  # scripts/pretrain_synthesis.py never trains on phantom seeds from 20000
FLIPS = {"as stored": (1, 1, 1), "negated axial (x, z)": (-1, 1, -1), "negated y": (1, -1, 1)}


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def _flipped(image: sitk.Image, signs: tuple[int, int, int]) -> sitk.Image:
    """The same voxels with a direction whose axes are negated by ``signs`` (the origin moved so the volume stays
    where it was): what scanners write for feet-first or mirrored acquisitions."""
    array = sitk.GetArrayFromImage(image)
    for axis, sign in zip((2, 1, 0), signs, strict=True):
        if sign < 0:
            array = np.flip(array, axis=axis)
    flipped = sitk.GetImageFromArray(np.ascontiguousarray(array))
    flipped.SetSpacing(image.GetSpacing())
    flipped.SetDirection(tuple(float(v) for v in np.diag(signs).ravel()))
    far = image.TransformIndexToPhysicalPoint([n - 1 if s < 0 else 0
                                               for n, s in zip(image.GetSize(), signs, strict=True)])
    flipped.SetOrigin(far)
    return flipped


def test_kinds_pool_levels_and_the_ct_canal() -> None:
    """Every level is a vertebra, every disc a disc; spine_ct's spinal canal is the canal; probabilities add up."""
    labels = {"C1": 1, "C2": 2, "spinal_canal": 3, "cord": 4, "disc_C2_C3": 5, "tumor": 6}
    groups = kind_channels(labels)
    assert dict(zip(KINDS, groups, strict=True)) == {"background": [0], "vertebra": [1, 2], "disc": [5],
                                                      "cord": [4], "canal": [3], "tumor": [6]}
    probabilities = torch.rand(7, 4, 4).softmax(dim=0)
    pooled = pool_kinds(probabilities, groups)
    assert pooled.shape == (len(KINDS), 4, 4)
    torch.testing.assert_close(pooled.sum(dim=0), torch.ones(4, 4))
    assert kind_channels({"C1": 1})[KINDS.index("cord")] == []


def test_joined_cosine_mixes_the_parts_by_weight() -> None:
    """cos(joined) = (cos_encoder + w^2 cos_anatomy) / (1 + w^2); without anatomy the features are untouched."""
    a, b = torch.randn(2, 8, 3, 3), torch.rand(2, len(KINDS), 6, 6)
    assert join_features(a, None, 2.0) is a and join_features(a, b, 0.0) is a
    weight = 2.0
    joined = join_features(a, b, weight)
    assert joined.shape == (2, 8 + len(KINDS), 3, 3)
    pooled = F.interpolate(b, size=(3, 3), mode="area")
    cos_e = F.cosine_similarity(a[0], a[1], dim=0)
    cos_a = F.cosine_similarity(pooled[0], pooled[1], dim=0)
    expected = (cos_e + weight**2 * cos_a) / (1 + weight**2)
    torch.testing.assert_close(F.cosine_similarity(joined[0], joined[1], dim=0), expected)


def test_support_sets_carry_anatomy_padded_and_refuse_a_mix() -> None:
    """Anatomy features are stacked and padded like images; a set of cases with and without them is refused, and
    so is a query that does not match its support."""
    small = LabelledCase(np.zeros((8, 8), np.float32), np.ones((8, 8), np.float32), "t",
                         anatomy=np.full((len(KINDS), 8, 8), 0.5, np.float32))
    large = LabelledCase(np.zeros((16, 16), np.float32), np.eye(16, dtype=np.float32), "t",
                         anatomy=np.ones((len(KINDS), 16, 16), np.float32))
    support = build_support_set([small, large])
    assert support.anatomy is not None and support.anatomy.shape == (2, len(KINDS), 16, 16)
    assert float(support.anatomy[0, 0, 0, 0]) == 0.5  # edge-padded, not zero
    with pytest.raises(ValueError, match="some support cases have anatomy"):
        build_support_set([small, LabelledCase(small.image, small.mask, "t")])
    with pytest.raises(ValueError, match=r"\(K, H, W\)"):
        build_support_set([LabelledCase(small.image, small.mask, "t", anatomy=np.ones((len(KINDS), 4, 4)))])
    segmenter = build_segmenter(load_fewshot_task("fewshot_tumor"))
    with pytest.raises(ValueError, match="anatomy"):
        lesion_probabilities(segmenter, {"t": support}, np.zeros((2, 16, 16), np.float32))


@pytest.mark.parametrize("signs", FLIPS.values(), ids=FLIPS.keys())
def test_the_task_grid_maps_back_onto_the_image(signs: tuple[int, int, int], tmp_path: Path) -> None:
    """What the network sees (RAS, task spacing) comes back onto the image grid in place, whatever its direction:
    the image itself, normalised, resampled back, matches it."""
    task = shipped_definition(load_task("spine_mr"))
    rng = np.random.default_rng(0)
    array = np.zeros((20, 30, 40), np.float32)
    array[4:9, 5:12, 6:30] = 1.0  # an asymmetric block: any mirror moves it
    array += 0.01 * rng.random(array.shape, dtype=np.float32)
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 1.5))
    image = _flipped(image, signs)
    path = tmp_path / "image.nii.gz"
    sitk.WriteImage(image, str(path))
    volume = Compose(infer_transforms(task))({"image": str(path)})["image"]
    back = sitk.Resample(task_grid_image(volume[0].numpy(), np.asarray(volume.affine, dtype=float)), image,
                         sitk.Transform(), sitk.sitkLinear, 0.0, sitk.sitkFloat32)
    assert _dice(sitk.GetArrayFromImage(back) > 0.5, sitk.GetArrayFromImage(image) > 0.5) > 0.95


@pytest.fixture(scope="module")
def features() -> AnatomyFeatures:
    return AnatomyFeatures({"MR": shipped_definition(load_task("spine_mr"))})


@pytest.mark.parametrize("signs", [FLIPS["as stored"], FLIPS["negated axial (x, z)"]],
                         ids=["as stored", "negated axial (x, z)"])
def test_the_shipped_mr_network_finds_a_held_out_phantom_cord(features: AnatomyFeatures,
                                                                signs: tuple[int, int, int]) -> None:
    """On a held-out T2 phantom, the cord kind lies on the phantom's cord, on the slice stack, in either
    orientation; the kinds are probabilities."""
    task = features.tasks["MR"]
    phantom = generate_neck_mr(HELD_OUT_SEED, task.labels, contrast="T2")
    image = sitk.GetImageFromArray(phantom.image.astype(np.float32))
    image.SetSpacing(phantom.spacing)
    label = sitk.GetImageFromArray((phantom.label == task.labels["cord"]).astype(np.uint8))
    label.CopyInformation(image)
    image, label = _flipped(image, signs), _flipped(label, signs)
    spec = load_fewshot_task("fewshot_tumor").slices
    stack = to_slices(image, spec)
    anatomy = features.on_stack(image, "MR", stack)
    assert anatomy.shape == (stack.pixels.shape[0], len(KINDS), *stack.pixels.shape[1:])
    assert anatomy.min() >= 0.0 and np.allclose(anatomy.sum(axis=1), 1.0, atol=1e-3)
    cord = mask_on_slices(label, stack) > 0
    assert _dice(anatomy[:, KINDS.index("cord")] > 0.5, cord) > 0.5


def test_a_modality_without_a_network_is_named(features: AnatomyFeatures) -> None:
    image = sitk.GetImageFromArray(np.zeros((4, 4, 4), np.float32))
    with pytest.raises(AnatomyError, match="no anatomy network for modality 'CT'"):
        features.probabilities(image, "CT")


def test_the_latest_series_features_are_kept() -> None:
    """A series seen again is not run through the network again; another image is, and the oldest is dropped."""
    features = AnatomyFeatures({"MR": shipped_definition(load_task("spine_mr"))}, cache_series=1)
    rng = np.random.default_rng(0)
    first = sitk.GetImageFromArray(rng.random((24, 32, 32)).astype(np.float32))
    second = sitk.GetImageFromArray(rng.random((24, 32, 32)).astype(np.float32))
    once = sitk.GetArrayFromImage(features.probabilities(first, "MR"))
    again = sitk.GetArrayFromImage(features.probabilities(first, "mr"))
    assert features.computed == 1 and np.array_equal(once, again)
    moved = sitk.Image(first)
    moved.SetOrigin((5.0, 0.0, 0.0))
    features.probabilities(second, "MR")
    features.probabilities(moved, "MR")  # the same voxels elsewhere: another series
    features.probabilities(first, "MR")  # dropped when the later ones came
    assert features.computed == 4
    with pytest.raises(ValueError, match="cache_series"):
        AnatomyFeatures({}, cache_series=-1)
