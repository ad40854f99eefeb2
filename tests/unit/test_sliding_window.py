"""The served sliding window: each window of a percentile task is scaled to its own percentiles, never counting the
padding of a small volume, and the answer keeps the input's shape and metadata."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch
from monai.data import MetaTensor
from monai.inferers import SlidingWindowInferer

from hope.config import load_task
from hope.sliding_window import PercentileWindowInferer, scale_to_percentiles, served_inferer

PERCENTILES = (0.5, 99.5)


class Recorder(torch.nn.Module):
    """Returns its input as a one-channel 'logit' and keeps each window it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.windows: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.windows.extend(x.clone())
        return x


def test_each_window_is_scaled_to_its_own_range() -> None:
    """A volume whose halves differ a thousandfold in intensity: every window the network sees spans [0, 1]."""
    torch.manual_seed(0)
    volume = torch.rand(1, 1, 32, 16, 16)
    volume[:, :, 16:] = volume[:, :, 16:] * 1000 + 5000
    network = Recorder()
    out = PercentileWindowInferer((16, 16, 16), sw_batch_size=2, overlap=0.0, percentiles=PERCENTILES)(volume, network)
    assert out.shape == volume.shape
    assert len(network.windows) == 2
    for window in network.windows:
        assert window.shape == (1, 16, 16, 16)
        assert float(window.min()) == 0.0 and float(window.max()) == 1.0
        assert 0.3 < float(window.mean()) < 0.7  # a uniform window stays spread out, not squashed to one end


def test_scaling_ignores_the_volume_scale() -> None:
    """An affine change of the input's intensities (another scanner's gain and offset) changes nothing."""
    torch.manual_seed(1)
    volume = torch.rand(1, 1, 40, 24, 20)
    inferer = PercentileWindowInferer((16, 16, 16), sw_batch_size=4, overlap=0.5, percentiles=PERCENTILES)
    a = inferer(volume, Recorder())
    b = inferer(volume * 37.0 - 900.0, Recorder())
    assert torch.allclose(a, b, atol=1e-4)


def test_padding_of_a_small_volume_is_left_out_of_the_percentiles() -> None:
    """A volume smaller than the window: the network sees it scaled by its own voxels' percentiles, as a training
    patch is normalised before it is padded; the replicated edges would otherwise weigh in the percentiles."""
    quartiles = (25.0, 75.0)
    volume = torch.arange(10.0).expand(1, 1, 10, 10, 10).clone()  # a ramp 0..9 along the last axis
    network = Recorder()
    out = PercentileWindowInferer((16, 16, 16), sw_batch_size=1, overlap=0.25, percentiles=quartiles)(volume, network)
    assert out.shape == volume.shape
    assert len(network.windows) == 1
    expected = scale_to_percentiles(volume, torch.ones_like(volume, dtype=torch.bool), quartiles)
    assert torch.allclose(out, expected, atol=1e-5)
    # counting the padding (3 more copies of each end of the ramp) would have scaled it otherwise
    padded = torch.nn.functional.pad(volume, [3, 3] * 3, mode="replicate")
    counted = scale_to_percentiles(padded, torch.ones_like(padded, dtype=torch.bool), quartiles)[..., 3:13, 3:13, 3:13]
    assert (counted - expected).abs().max() > 0.1


def test_metadata_is_kept() -> None:
    """MONAI Label writes the label with the prediction's affine: the inferer keeps the input's MetaTensor."""
    affine = torch.diag(torch.tensor([1.5, 1.5, 2.0, 1.0], dtype=torch.float64))
    volume = MetaTensor(torch.rand(1, 1, 20, 20, 20), affine=affine)
    out = PercentileWindowInferer((16, 16, 16), 1, 0.25, PERCENTILES)(volume, Recorder())
    assert isinstance(out, MetaTensor)
    assert torch.equal(out.affine, affine)


def test_a_window_without_image_voxels_is_refused() -> None:
    with pytest.raises(ValueError, match="no voxel of the image"):
        scale_to_percentiles(torch.rand(1, 1, 4, 4, 4), torch.zeros(1, 1, 4, 4, 4, dtype=torch.bool), PERCENTILES)


def test_each_task_gets_the_window_its_normalisation_needs() -> None:
    """spine_ct and spine_mr (percentiles) scale each window; a fixed Hounsfield window needs no per-window scaling."""
    for name in ("spine_ct", "spine_mr"):
        task = load_task(name)
        inferer = served_inferer(task)
        assert isinstance(inferer, PercentileWindowInferer)
        assert inferer.percentiles == task.preprocessing.percentiles
        assert inferer.window.overlap == task.inference.overlap
    task = load_task("spine_ct")
    windowed = replace(task, preprocessing=replace(task.preprocessing, normalisation="window",
                                                   intensity_range=(-1000.0, 1500.0)))
    assert type(served_inferer(windowed)) is SlidingWindowInferer


def test_training_crops_are_scaled_as_windows_are(tmp_path) -> None:
    """Retraining from the store: each label-balanced crop of a percentile task is scaled to its own percentiles,
    as the served window is. A crop from the dim third of a volume whose rest is a thousand times brighter spans
    [0, 1] (before the +-10 % intensity augmentation), where the volume's own scaling would leave it near 0."""
    import numpy as np
    import SimpleITK as sitk
    from monai.transforms import Compose

    from hope.transforms import train_transforms

    rng = np.random.default_rng(0)
    image = rng.uniform(1000, 2000, size=(64, 64, 192)).astype(np.float32)  # (z, y, x)
    image[:, :, :64] = rng.uniform(0, 1, size=(64, 64, 64))
    label = np.zeros(image.shape, dtype=np.uint8)
    label[20:40, 20:40, 10:30] = 1  # only in the dim third: every positive crop lies inside it
    paths = {}
    for key, array in (("image", image), ("label", label)):
        volume = sitk.GetImageFromArray(array)
        volume.SetSpacing((1.5, 1.5, 1.5))
        paths[key] = str(tmp_path / f"{key}.nii.gz")
        sitk.WriteImage(volume, paths[key])
    task = load_task("spine_mr")
    pipeline = Compose(train_transforms(task)).set_random_state(seed=0)
    crops = [crop for _ in range(4) for crop in pipeline(dict(paths))]  # half of them centred on the label
    assert len(crops) == 4 * task.training.samples_per_image
    for crop in crops:
        high = float(torch.quantile(crop["image"].flatten().float(), 0.995))
        assert high > 0.8, high
