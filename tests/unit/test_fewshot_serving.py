"""Serving pieces of the few-shot tasks: slice stacks, support sets from records and labels, checkpoints,
the served-model cache, task definitions and attachment naming."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from hope.config import ConfigError
from hope.datastore.attachments import attachment_name
from hope.datastore.gateway import orthanc_rest_url
from hope.errors import InvalidInputError
from hope.fewshot.checkpoint import build_embedder, build_segmenter, load_grader, load_segmenter, save_checkpoint
from hope.fewshot.config import SliceSpec, load_fewshot_task, parse_fewshot_task
from hope.fewshot.episodes import LabelledCase, build_support_set
from hope.fewshot.support_library import LabelledSeries, SupportLibrary
from hope.fewshot.volume_inference import lesion_probabilities
from hope.fewshot.volumes import (
    largest_component,
    lesion_slices,
    mask_on_slices,
    probability_on_image,
    support_size,
    to_slices,
)
from hope.infers.fewshot_common import ReloadingModel, int_param
from hope.phantoms.tumor_stacks import phantom_stack

SPEC = SliceSpec(support_slices_per_case=2, support_window=32)
TUMOR = 9


def _image(array: np.ndarray, spacing: tuple[float, float, float]) -> sitk.Image:
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(spacing)
    image.SetOrigin((-10.0, 5.0, 30.0))
    return image


def test_slices_are_resampled_in_plane_and_windowed() -> None:
    """A 0.5 mm series becomes a 1 mm stack, HU scaled to [0, 1] through the window, slice count kept."""
    hu = np.full((4, 40, 60), SPEC.intensity_range[0], np.float32)
    hu[:, :, 30:] = SPEC.intensity_range[1] + 500
    stack = to_slices(_image(hu, (0.5, 0.5, 2.0)), SPEC)
    assert stack.pixels.shape == (4, 20, 30)
    assert stack.grid.GetSpacing() == pytest.approx((1.0, 1.0, 2.0))
    assert stack.pixels.min() == 0.0 and stack.pixels.max() == 1.0


def test_masks_and_probabilities_map_between_grids() -> None:
    """A mask goes onto the stack and a probability comes back onto the image grid, in the same place."""
    image = _image(np.zeros((4, 40, 60), np.float32), (0.5, 0.5, 2.0))
    truth = np.zeros((4, 40, 60), np.uint8)
    truth[1:3, 10:30, 20:40] = 1
    mask = sitk.GetImageFromArray(truth)
    mask.CopyInformation(image)
    stack = to_slices(image, SPEC)
    on_stack = mask_on_slices(mask, stack)
    assert on_stack.sum() == truth.sum() / 4
    back = probability_on_image(on_stack.astype(np.float32), stack, image) > 0.5
    assert 2 * (back & (truth > 0)).sum() / (back.sum() + truth.sum()) > 0.9


def test_lesion_slices_pick_the_largest_and_centre_the_window() -> None:
    """The slices with most lesion come first; each window is centred on its lesion; empty slices never come."""
    pixels = np.random.default_rng(0).random((5, 50, 50)).astype(np.float32)
    mask = np.zeros((5, 50, 50), np.uint8)
    mask[1, 40:46, 40:46] = 1
    mask[3, 5:15, 5:15] = 1
    pairs = lesion_slices(pixels, mask, count=3, window=20)
    assert [int(m.sum()) for _, m in pairs] == [100, 36]
    image, lesion = pairs[0]
    assert image.shape == lesion.shape == (20, 20)
    ys, xs = np.nonzero(lesion)
    assert abs(ys.mean() - 9.5) <= 1 and abs(xs.mean() - 9.5) <= 1


def test_a_large_lesion_keeps_its_surroundings() -> None:
    """A lesion wider than half the window gets a cut of ``context`` times its extent, rounded up to 8 pixels, one
    size for every slice of the call; a small lesion keeps the configured window."""
    pixels = np.random.default_rng(0).random((3, 120, 120)).astype(np.float32)
    mask = np.zeros((3, 120, 120), np.uint8)
    mask[0, 30:70, 40:61] = 1  # 40 x 21 pixels
    mask[1, 50:60, 50:60] = 1
    assert support_size([mask[1] > 0], window=32, context=2.0) == 32
    assert support_size([mask[0] > 0, mask[1] > 0], window=32, context=2.0) == 80
    pairs = lesion_slices(pixels, mask, count=2, window=32, context=2.0)
    assert [p[0].shape for p in pairs] == [(80, 80), (80, 80)]
    assert [int(p[1].sum()) for p in pairs] == [840, 100]


def test_support_cases_of_different_sizes_are_padded_to_one() -> None:
    """Cut to different sizes, support cases stack centred on the largest: images edge-padded, masks with
    background."""
    small = np.full((8, 8), 0.25, np.float32)
    large = np.full((16, 16), 0.75, np.float32)
    support = build_support_set([LabelledCase(small, np.ones((8, 8), np.float32), "t"),
                                 LabelledCase(large, np.eye(16, dtype=np.float32), "t")])
    assert tuple(support.images.shape) == tuple(support.masks.shape) == (2, 1, 16, 16)
    assert float(support.images[0].min()) == float(support.images[0].max()) == 0.25
    assert float(support.masks[0].sum()) == 64 and float(support.masks[0, 0, 4:12, 4:12].sum()) == 64


def test_largest_component_keeps_one_blob() -> None:
    """Of two blobs the larger one stays."""
    mask = np.zeros((3, 20, 20), np.uint8)
    mask[1, 2:4, 2:4] = 1
    mask[:, 10:15, 10:15] = 1
    kept = largest_component(mask)
    assert kept.sum() == 75 and kept[1, 2, 2] == 0


@dataclass
class _Record:
    study_uid: str
    tumor_type: str
    verdict: str


class _Store:
    """Labelled series held in memory: what the app reads from Orthanc."""

    def __init__(self) -> None:
        self.volumes: dict[str, tuple[sitk.Image, sitk.Image]] = {}
        self.series: list[LabelledSeries] = []
        self.loads: list[str] = []

    def add(self, series_uid: str, study_uid: str, seg_uid: str, tumor_type: str, seed: int,
            lesion: bool = True) -> None:
        stack = phantom_stack(tumor_type, seed, SPEC, slices=3, size=32)
        image = _image(stack.hu.astype(np.float32), stack.spacing)
        label = sitk.GetImageFromArray((stack.mask * (TUMOR if lesion else 3)).astype(np.uint8))
        label.CopyInformation(image)
        self.volumes[series_uid] = (image, label)
        self.series = [s for s in self.series if s.series_uid != series_uid]
        self.series.append(LabelledSeries(series_uid, study_uid, seg_uid, "CT"))

    def load(self, series_uid: str) -> tuple[sitk.Image, sitk.Image]:
        self.loads.append(series_uid)
        return self.volumes[series_uid]


def test_support_cases_come_from_recorded_studies_with_lesion_labels() -> None:
    """Recorded + labelled series are support; unrecorded, lesion-less and the query itself are not; slices are
    cut once per SEG, and a changed record or a new SEG shows on the next call."""
    store, records = _Store(), {"st1": _Record("st1", "chordoma", "malignant")}
    store.add("se1", "st1", "seg1", "chordoma", 1)
    store.add("se2", "st2", "seg2", "chordoma", 2)  # no record
    store.add("se3", "st1", "seg3", "chordoma", 3, lesion=False)  # a label without tumour voxels
    library = SupportLibrary(lambda: records.values(), lambda: store.series, store.load, SPEC, TUMOR)
    cases = library.cases()
    assert [c.series_uid for c in cases] == ["se1"]
    assert len(cases[0].slices) == 2 and cases[0].slices[0].image.shape == (32, 32)
    assert "se3" in library.skipped
    assert library.cases(exclude_series="se1") == []
    assert store.loads.count("se1") == 1  # cached
    records["st1"] = _Record("st1", "chordoma", "borderline")
    assert library.cases()[0].slices[0].grade == "borderline"
    store.add("se1", "st1", "seg1b", "chordoma", 4)  # a newer SEG replaces the label
    assert library.cases()[0].label_uid == "seg1b" and store.loads.count("se1") == 2


def test_segmenting_a_stack_against_several_types() -> None:
    """One probability stack per named support set, each the query's size, values in [0, 1]."""
    segmenter = build_segmenter(load_fewshot_task("fewshot_tumor"))
    store = _Store()
    store.add("a", "s", "g", "chordoma", 1)
    library = SupportLibrary(lambda: [_Record("s", "chordoma", "malignant")], lambda: store.series, store.load,
                             SPEC, TUMOR)
    support = build_support_set(list(library.cases()[0].slices))
    slices = np.random.default_rng(0).random((3, 40, 48)).astype(np.float32)
    result = lesion_probabilities(segmenter, {"x": support, "y": support}, slices, batch=2)
    assert set(result) == {"x", "y"} and result["x"].shape == (3, 40, 48)
    assert result["x"].min() >= 0.0 and result["x"].max() <= 1.0
    np.testing.assert_allclose(result["x"], result["y"], atol=1e-6)


def test_checkpoints_round_trip_and_refuse_the_wrong_kind(tmp_path: Path) -> None:
    """Saved weights load back identically; a grading checkpoint is not taken for a segmentation one."""
    seg_task, grade_task = load_fewshot_task("fewshot_tumor"), load_fewshot_task("tumor_grade")
    segmenter = build_segmenter(seg_task)
    path = save_checkpoint(tmp_path / "seg.pt", seg_task, segmenter, {"test": True})
    loaded = load_segmenter(path, seg_task)
    for a, b in zip(segmenter.encoder.state_dict().values(), loaded.encoder.state_dict().values(), strict=True):
        assert torch.equal(a, b)
    grade_path = save_checkpoint(tmp_path / "grade.pt", grade_task, build_embedder(grade_task), {}, temperature=2.5)
    assert load_grader(grade_path, grade_task).temperature == 2.5
    with pytest.raises(ConfigError, match="pretrain_fewshot"):
        load_segmenter(grade_path, seg_task)


def test_served_model_reloads_when_the_file_changes(tmp_path: Path) -> None:
    """A new version published over the served file is picked up; an unchanged file is not reloaded."""
    path = tmp_path / "model.txt"
    path.write_text("v1")
    loads: list[str] = []
    served = ReloadingModel(path, lambda p: loads.append(p.read_text()) or p.read_text())
    assert served.get() == "v1" and served.get() == "v1" and loads == ["v1"]
    path.write_text("v2")
    os.utime(path, (path.stat().st_atime, path.stat().st_mtime + 5))
    assert served.get() == "v2"


def test_int_param_bounds() -> None:
    """Integer request parameters are checked against their range with a reason."""
    assert int_param({"n": "3"}, "n", 0, 5) == 3
    assert int_param({}, "n", 0, 5) == 0
    with pytest.raises(InvalidInputError, match="between 0 and 5"):
        int_param({"n": 6}, "n", 0, 5)
    with pytest.raises(InvalidInputError, match="integer"):
        int_param({"n": "many"}, "n", 0, 5)


def test_fewshot_task_definitions_are_validated() -> None:
    """The shipped definitions load; a wrong kind or an empty window is refused with the key named."""
    assert load_fewshot_task("tumor_grade").kind == "lesion_grading"
    base = {"name": "t", "kind": "fewshot_segmentation", "lesion_label": "tumor", "network": {}}
    assert parse_fewshot_task(base).slices == SliceSpec()
    with pytest.raises(ConfigError, match="kind"):
        parse_fewshot_task({**base, "kind": "magic"})
    with pytest.raises(ConfigError, match="intensity_range"):
        parse_fewshot_task({**base, "slices": {"intensity_range": [5, 1]}})


def test_attachment_names_and_rest_root() -> None:
    """Attachments are named per task, and Orthanc's REST root is derived from its DICOMweb root."""
    assert attachment_name("tumor_grade") == "hope-tumor-grade"
    assert orthanc_rest_url("http://127.0.0.1:8042/dicom-web/") == "http://127.0.0.1:8042"
    assert orthanc_rest_url("http://orthanc:8042") == "http://orthanc:8042"


def test_support_ensemble_averages_one_shot_predictions() -> None:
    """With ``support_ensemble``, k support images give the mean of their k one-shot probabilities; without it,
    their prototypes are pooled (a different answer)."""
    torch.manual_seed(0)
    segmenter = build_segmenter(load_fewshot_task("fewshot_tumor")).eval()
    rng = np.random.default_rng(1)
    images = torch.from_numpy(rng.random((3, 1, 32, 32), dtype=np.float32))
    masks = torch.zeros(3, 1, 32, 32)
    masks[0, :, 4:12, 4:12], masks[1, :, 10:30, 10:30], masks[2, :, 20:24, 2:30] = 1.0, 1.0, 1.0
    query = torch.from_numpy(rng.random((2, 1, 32, 32), dtype=np.float32))
    with torch.no_grad():
        segmenter.support_ensemble = True
        ensemble = segmenter(images, masks, query).softmax(dim=1)
        one_shot = torch.stack([segmenter(images[i : i + 1], masks[i : i + 1], query).softmax(dim=1)
                                for i in range(3)]).mean(dim=0)
        segmenter.support_ensemble = False
        pooled = segmenter(images, masks, query).softmax(dim=1)
    torch.testing.assert_close(ensemble, one_shot, atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ensemble, pooled, atol=1e-3)
