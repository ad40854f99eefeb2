"""SynthSeg-style synthesis (hope.synthesis): the mixture and thick-slice transforms, the pipeline, the phantom
anatomies on a task's grid, and scripts/pretrain_synthesis.py end to end."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monai.data import MetaTensor
from monai.transforms import Compose

from hope.config import REPO_ROOT, TaskDefinition, load_task
from hope.networks import build_network
from hope.synthesis.anatomy import anatomy_pool, on_task_grid, render_phantom
from hope.synthesis.dataset import synthetic_loader
from hope.synthesis.mixture import RandGaussianMixtureFromLabelsd
from hope.synthesis.pipeline import RENDERED, TISSUES, SynthesisSettings, synthesis_transforms
from hope.synthesis.resolution import RandThickSlicesd
from hope.transforms import val_transforms

PATCH = (32, 32, 32)
#: Every acquisition effect off and no texture: the image is piecewise constant on the (deformed) tissue map.
NOISELESS = SynthesisSettings(std_range=(0.0, 0.0), merge_prob=0.0, blur_prob=0.0, low_res_prob=0.0,
                              thick_slice_prob=0.0, bias_prob=0.0, noise_prob=0.0, gamma_prob=0.0, fov_prob=0.0)


def _small(name: str) -> TaskDefinition:
    task = load_task(name)
    return replace(task, preprocessing=replace(task.preprocessing, patch_size=PATCH))


def _nested_boxes(classes: int = 6, size: int = 40) -> torch.Tensor:
    """A channel-first label map of ``classes`` nested boxes (0 outside), off-centre so no two are alike."""
    label = torch.zeros(1, size, size, size)
    for c in range(1, classes):
        lo, hi = 2 + 2 * c, size - 2 - 3 * c
        label[0, lo:hi, lo + 1:hi, lo:hi - 1] = c
    return label


def _mixture(seed: int, **kwargs: object) -> np.ndarray:
    transform = RandGaussianMixtureFromLabelsd(keys="label", **kwargs)
    transform.set_random_state(seed)
    return np.asarray(transform({"label": _nested_boxes()})["image"])


def test_mixture_is_seeded() -> None:
    np.testing.assert_array_equal(_mixture(3), _mixture(3))
    assert not np.array_equal(_mixture(3), _mixture(4))


def test_every_class_is_homogeneous_without_texture() -> None:
    label = _nested_boxes().numpy()
    image = _mixture(0, std_range=(0.0, 0.0))
    means = [image[label == c] for c in range(6)]
    assert all(np.ptp(values) == 0.0 for values in means)
    assert len({float(values[0]) for values in means}) == 6  # six classes, six intensities
    textured = _mixture(0, std_range=(0.05, 0.05))
    assert all(np.std(textured[label == c]) == pytest.approx(0.05, rel=0.1) for c in range(6))


def test_contrast_changes_between_seeds() -> None:
    label = _nested_boxes().numpy()
    orders = set()
    brighter = []
    for seed in range(12):
        image = _mixture(seed, std_range=(0.0, 0.0))
        means = [float(image[label == c][0]) for c in range(6)]
        orders.add(tuple(np.argsort(means)))
        brighter.append(means[3] > means[2])
    assert len(orders) > 6  # no fixed rank order of the classes
    assert any(brighter) and not all(brighter)  # class 3 is sometimes brighter than class 2, sometimes darker


def test_merging_makes_classes_alike() -> None:
    image = _mixture(0, std_range=(0.0, 0.0), merge_prob=1.0)
    assert len(np.unique(image)) < 6


def test_mixture_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="non-negative integer"):
        RandGaussianMixtureFromLabelsd(keys="label")({"label": torch.full((1, 4, 4, 4), 0.5)})
    with pytest.raises(ValueError, match="one image from one label map"):
        RandGaussianMixtureFromLabelsd(keys=["a", "b"])
    with pytest.raises(ValueError, match="std_range"):
        RandGaussianMixtureFromLabelsd(keys="label", std_range=(-1.0, 0.1))


def test_thick_slices_blur_one_axis_only() -> None:
    z_stripes = torch.zeros(1, 24, 24, 24)
    z_stripes[..., ::2] = 1.0  # varies along axis 2 only
    x_stripes = z_stripes.permute(0, 3, 2, 1).contiguous()  # varies along axis 0 only
    affine = torch.diag(torch.tensor([1.5, 1.5, 1.5, 1.0], dtype=torch.float64))
    transform = RandThickSlicesd(keys=["z", "x"], spacing=(1.5, 1.5, 1.5), thickness_mm=(6.0, 6.0), prob=1.0,
                                 axes=(2,))
    out = transform({"z": MetaTensor(z_stripes, affine=affine), "x": x_stripes})
    assert float(out["z"].std()) < 0.1 * float(z_stripes.std())  # thick slices average the stripes away
    torch.testing.assert_close(out["x"], x_stripes)  # nothing changes across the other axes
    assert isinstance(out["z"], MetaTensor) and torch.equal(out["z"].affine, affine)
    thin = RandThickSlicesd(keys="z", spacing=(1.5, 1.5, 1.5), thickness_mm=(1.0, 1.0), prob=1.0)
    torch.testing.assert_close(thin({"z": z_stripes})["z"], z_stripes)


@pytest.mark.parametrize("name", ["spine_ct", "spine_mr"])
def test_pipeline_output_matches_the_task(name: str) -> None:
    task = _small(name)
    pipeline = Compose(synthesis_transforms(task))
    pipeline.set_random_state(0)
    pool = anatomy_pool(task, [10_000])
    seen = set()
    for _ in range(3):
        item = pipeline(pool[0])
        assert set(item) == {"image", "label"}
        for key in ("image", "label"):
            assert item[key].shape == (1, *PATCH) and item[key].dtype == torch.float32
            assert type(item[key]) is torch.Tensor
        assert float(item["image"].min()) >= 0.0 and float(item["image"].max()) <= 1.0
        seen |= set(item["label"].unique().tolist())
    assert {0} < seen <= {0, *task.labels.values()}  # a small patch may miss the spine, three rarely all do


def _corner_structure(size: int = 160) -> dict[str, MetaTensor]:
    """A large anatomy whose one structure (a 6-voxel cube) sits in a corner, far from the volume's centre."""
    affine = torch.diag(torch.tensor([1.5, 1.5, 1.5, 1.0], dtype=torch.float64))
    tissues = torch.ones(1, size, size, size)
    label = torch.zeros(1, size, size, size)
    label[0, 10:16, 10:16, 10:16] = 1
    tissues[label > 0] = 2
    return {TISSUES: MetaTensor(tissues, affine=affine), "label": MetaTensor(label, affine=affine),
            RENDERED: MetaTensor(tissues / 2, affine=affine)}


@pytest.mark.parametrize(("background_prob", "with_structure"), [(0.0, 8), (1.0, 0)])
def test_patches_lie_around_the_structures_or_anywhere(background_prob: float, with_structure: int) -> None:
    """Patches hold an anatomy's structures however far from its centre they lie; with ``background_prob`` 1
    they come from anywhere in the volume, which a small corner structure rarely reaches."""
    task = _small("spine_ct")
    settings = replace(NOISELESS, background_prob=background_prob, translate_mm=0.0, rotate_deg=0.0, scale=0.0)
    pipeline = Compose(synthesis_transforms(task, settings))
    pipeline.set_random_state(0)
    anatomy = _corner_structure()
    held = [bool((pipeline(anatomy)["label"] > 0).any()) for _ in range(8)]
    assert sum(held) == with_structure


def test_deformed_labels_stay_aligned_with_the_image() -> None:
    """With no texture, blur or noise, image edges fall exactly on label edges after the spatial deformation."""
    task = _small("spine_mr")
    tissues = MetaTensor(_nested_boxes(size=48), affine=torch.diag(torch.tensor([1.5, 1.5, 1.5, 1.0])))
    pipeline = Compose(synthesis_transforms(task, NOISELESS))
    for seed in range(4):
        pipeline.set_random_state(seed)
        item = pipeline({TISSUES: tissues, "label": tissues.clone(), RENDERED: tissues.float()})
        image, label = item["image"].numpy(), item["label"].numpy()
        pairs = set(zip(label.ravel().tolist(), np.round(image, 6).ravel().tolist(), strict=True))
        assert len(pairs) == len({lab for lab, _ in pairs}) == len({value for _, value in pairs}) > 1


def test_anatomies_are_on_the_grid_the_served_task_reads(tmp_path: Path) -> None:
    """A phantom on the task grid equals the phantom written to a file and read by the served pre-processing."""
    task = load_task("spine_ct")
    phantom = render_phantom(task, 10_000, "CT")
    files = {}
    for key in ("image", "label"):
        volume = sitk.GetImageFromArray(getattr(phantom, key))
        volume.SetSpacing(phantom.spacing)
        files[key] = str(tmp_path / f"{key}.nii.gz")
        sitk.WriteImage(volume, files[key])
    served = Compose(val_transforms(task))(files)
    ours = on_task_grid(task, phantom, {"image": "image", "label": "label"})
    assert ours["label"].shape == served["label"].shape
    torch.testing.assert_close(ours["label"].affine, served["label"].affine)
    np.testing.assert_allclose(ours["image"].numpy(), served["image"].numpy(), atol=1e-5)
    # NIfTI keeps the spacing as float32, which flips a few nearest-neighbour ties on label boundaries
    assert np.mean(ours["label"].numpy() != served["label"].numpy()) < 1e-3
    pool = anatomy_pool(task, [10_000])[0]
    np.testing.assert_array_equal(pool["label"].numpy(), ours["label"].numpy())
    assert pool[TISSUES].dtype == torch.uint8 and pool[TISSUES].shape == pool["label"].shape


def test_a_rendered_share_keeps_the_phantoms_own_contrast() -> None:
    """With ``rendered_prob`` 1 the image is the deformed rendering (here brighter with every label value), not a
    random contrast, and stays aligned with the label; the pool holds one rendering per MR contrast."""
    task = _small("spine_mr")
    tissues = MetaTensor(_nested_boxes(size=48), affine=torch.diag(torch.tensor([1.5, 1.5, 1.5, 1.0])))
    pipeline = Compose(synthesis_transforms(task, replace(NOISELESS, rendered_prob=1.0)))
    for seed in range(3):
        pipeline.set_random_state(seed)
        item = pipeline({TISSUES: tissues, "label": tissues.clone(), RENDERED: tissues.float() / 10})
        image, label = item["image"].numpy(), item["label"].numpy()
        medians = [float(np.median(image[label == v])) for v in np.unique(label)]
        assert len(medians) > 1 and medians == sorted(medians)
    pool = anatomy_pool(task, [10_000])
    assert len(pool) == 2 and torch.equal(pool[0]["label"], pool[1]["label"])
    assert not torch.equal(pool[0][RENDERED], pool[1][RENDERED])
    assert all(float(p[RENDERED].min()) >= 0.0 and float(p[RENDERED].max()) <= 1.0 for p in pool)


def test_loader_is_seeded() -> None:
    task = _small("spine_ct")
    pool = [{TISSUES: t, "label": t.clone(), RENDERED: t.float()} for t in (_nested_boxes(), _nested_boxes(4))]

    def first(seed: int) -> torch.Tensor:
        return next(iter(synthetic_loader(pool, synthesis_transforms(task), batch_size=2, batches=1, seed=seed)))

    a, b, c = first(5), first(5), first(6)
    assert a["image"].shape == (2, 1, *PATCH)
    torch.testing.assert_close(a["image"], b["image"])
    assert not torch.equal(a["image"], c["image"])


def test_pretrain_synthesis_tiny_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec = importlib.util.spec_from_file_location("pretrain_synthesis", REPO_ROOT / "scripts" / "pretrain_synthesis.py")
    assert spec is not None and spec.loader is not None
    script = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, script)  # its dataclass resolves annotations through sys.modules
    spec.loader.exec_module(script)
    with pytest.raises(SystemExit, match="needs --out"):
        script.main(["--task", "spine_ct", "--tiny"])
    out = tmp_path / "weights" / "spine_ct.pt"
    with pytest.raises(SystemExit):  # not a setting: argparse says which are
        script.main(["--task", "spine_ct", "--tiny", "--out", str(out), "--synthesis", "scal=0.3"])
    script.main(["--task", "spine_ct", "--tiny", "--threads", "2", "--out", str(out),
                 "--json", str(tmp_path / "copy.json"), "--synthesis", "scale=0.3", "--synthesis", "gamma=0.7,1.5"])
    report = json.loads(out.with_suffix(".json").read_text())
    assert report == json.loads((tmp_path / "copy.json").read_text())
    assert report["complete"] and report["steps"] == 2 and report["task"] == "spine_ct"
    assert report["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert set(report["held_out_dice_by_rendering"]) == {"CT"}
    assert all(isinstance(v, float) for v in report["held_out_dice"].values())  # what the model registry reads
    assert "mean" in report["held_out_dice_synthetic"] and report["synthesis"]["mean_range"] == [0.0, 1.0]
    assert report["synthesis"]["scale"] == 0.3 and report["synthesis"]["gamma"] == [0.7, 1.5]
    network = build_network(load_task("spine_ct"))
    network.load_state_dict(torch.load(out, map_location="cpu")["model"])
    assert out.stat().st_size < 5_000_000
    first = report["sha256"]
    again = tmp_path / "again.pt"
    script.main(["--task", "spine_ct", "--tiny", "--threads", "2", "--out", str(again), "--init", str(out)])
    assert json.loads(again.with_suffix(".json").read_text())["initialised_from"]["sha256"] == first
