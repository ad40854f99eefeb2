"""Scribble corrections: the simulated annotator and one GraphCut refinement through the infer task, on files."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from scipy import ndimage

from hope.config import ConfigError, TaskDefinition, config_dir, load_task
from hope.errors import InvalidInputError
from hope.infers.scribbles import StructureScribblesInfer
from hope.interactive import Scribble, dice, error_regions, next_scribble, paint
from hope.server.errors import status_of

SPACING_ZYX = (1.5, 0.9, 0.9)


@pytest.fixture(scope="module")
def task() -> TaskDefinition:
    """The ``spine_ct`` task from ``configs/``."""
    return load_task("spine_ct")


def _ball(shape: tuple[int, int, int], centre: tuple[float, float, float], radius_mm: float) -> np.ndarray:
    grids = np.meshgrid(*(np.arange(n) * s for n, s in zip(shape, SPACING_ZYX, strict=True)), indexing="ij")
    return sum((g - c * s) ** 2 for g, c, s in zip(grids, centre, SPACING_ZYX, strict=True)) <= radius_mm**2


@pytest.fixture(scope="module")
def scene(task: TaskDefinition) -> dict[str, np.ndarray]:
    """A vertebra-like block (C3) holding a lytic tumour, a second block (C1) far away, noisy CT intensities."""
    shape = (20, 40, 40)
    label = np.zeros(shape, dtype=np.uint8)
    label[4:16, 8:32, 4:22] = task.labels["C3"]
    label[4:16, 12:28, 28:36] = task.labels["C1"]
    label[_ball(shape, (10, 20, 13), 7.0)] = task.labels["tumor"]
    image = np.full(shape, 40.0)
    image[label == task.labels["C3"]] = 300.0
    image[label == task.labels["C1"]] = 300.0
    image[label == task.labels["tumor"]] = 80.0
    image += np.random.default_rng(0).normal(scale=10.0, size=shape)
    return {"image": image.astype(np.int16), "label": label}


def _write(array_zyx: np.ndarray, path: Path) -> str:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(SPACING_ZYX[::-1])
    image.SetOrigin((-12.5, 30.0, 7.25))
    image.SetDirection((1.0, 0.0, 0.0, 0.0, -1.0, 0.0, 0.0, 0.0, 1.0))
    sitk.WriteImage(image, str(path))
    return str(path)


# --------------------------------------------------------------------------------------------- simulated annotator
def test_foreground_scribble_lies_in_the_missed_region(scene: dict[str, np.ndarray], task: TaskDefinition) -> None:
    """An under-segmented structure gets a foreground stroke inside its largest false-negative region."""
    tumor = task.labels["tumor"]
    prediction = scene["label"].copy()
    prediction[(prediction == tumor) & ~ndimage.binary_erosion(prediction == tumor, iterations=2)] = 3
    scribble = next_scribble(prediction, scene["label"], tumor, np.random.default_rng(1), spacing=SPACING_ZYX)
    missed, _ = error_regions(prediction, scene["label"], tumor)
    assert scribble is not None and scribble.foreground
    assert scribble.mask.any() and not (scribble.mask & ~missed).any()
    assert len(np.unique(np.argwhere(scribble.mask)[:, 0])) == 1, "a stroke is drawn on one slice"


def test_background_scribble_lies_in_the_extra_region(scene: dict[str, np.ndarray], task: TaskDefinition) -> None:
    """An over-segmented structure gets a background stroke inside its largest false-positive region."""
    tumor = task.labels["tumor"]
    prediction = scene["label"].copy()
    prediction[ndimage.binary_dilation(prediction == tumor, iterations=2)] = tumor
    scribble = next_scribble(prediction, scene["label"], tumor, np.random.default_rng(1), spacing=SPACING_ZYX)
    _, extra = error_regions(prediction, scene["label"], tumor)
    assert scribble is not None and not scribble.foreground
    assert scribble.mask.any() and not (scribble.mask & ~extra).any()


def test_scribbles_are_deterministic_and_stop_when_nothing_is_wrong(
    scene: dict[str, np.ndarray], task: TaskDefinition
) -> None:
    """The same seed draws the same stroke; a perfect prediction gets none; ``kind`` restricts the error type."""
    tumor, truth = task.labels["tumor"], scene["label"]
    shifted = np.zeros_like(truth)
    shifted[:, 2:] = truth[:, :-2]

    def draw(seed: int, kind: str = "auto") -> Scribble | None:
        return next_scribble(shifted, truth, tumor, np.random.default_rng(seed), spacing=SPACING_ZYX, kind=kind)

    first, again = draw(7), draw(7)
    assert first is not None and again is not None
    assert np.array_equal(first.mask, again.mask) and first.foreground == again.foreground
    background = draw(7, "background")
    assert background is not None and not background.foreground
    assert next_scribble(truth, truth, tumor, np.random.default_rng(0)) is None
    scribbles = np.zeros_like(truth)
    paint(scribbles, background, background=10, foreground=11)
    assert set(np.unique(scribbles)) == {0, 10}


# ------------------------------------------------------------------------------------------ GraphCut refinement
def test_one_refinement_improves_the_structure_and_keeps_the_grid(
    scene: dict[str, np.ndarray], task: TaskDefinition, tmp_path: Path
) -> None:
    """One foreground scribble on an eroded tumour raises its Dice; unrelated labels and the grid stay as they were."""
    tumor, truth = task.labels["tumor"], scene["label"]
    current = truth.copy()
    current[(truth == tumor) & ~ndimage.binary_erosion(truth == tumor, iterations=2)] = task.labels["C3"]
    scribble = next_scribble(current, truth, tumor, np.random.default_rng(3), spacing=SPACING_ZYX)
    assert scribble is not None and scribble.foreground
    infer = StructureScribblesInfer(task)
    upload = current.copy()
    paint(upload, scribble, infer.settings.background_scribble, infer.settings.foreground_scribble)
    image_path = _write(scene["image"], tmp_path / "image.nii.gz")
    request = {"image": image_path, "label": _write(upload, tmp_path / "upload.nii.gz"), "device": "cpu"}
    result_path, params = infer({**request, "selected_label_name": "tumor"})

    result_image, source = sitk.ReadImage(result_path), sitk.ReadImage(image_path)
    assert result_image.GetSize() == source.GetSize()
    assert np.allclose(result_image.GetSpacing(), source.GetSpacing())
    assert np.allclose(result_image.GetOrigin(), source.GetOrigin())
    assert np.allclose(result_image.GetDirection(), source.GetDirection())
    result = sitk.GetArrayFromImage(result_image)
    assert dice(result == tumor, truth == tumor) > dice(current == tumor, truth == tumor) + 0.1
    untouched = (current != tumor) & (result != tumor)
    assert np.array_equal(result[untouched], current[untouched]), "only the tumour's own voxels may change"
    assert np.array_equal(result == task.labels["C1"], current == task.labels["C1"])
    assert params["label_names"] == task.labels


def test_selected_output_and_slicer_segment_numbering(
    scene: dict[str, np.ndarray], task: TaskDefinition, tmp_path: Path
) -> None:
    """``label_info`` maps Slicer's segment numbers by name; ``output_label=selected`` returns the structure as 0/1."""
    truth = scene["label"]
    slicer_ids = {"tumor": 1, "C3": 2, "C1": 3, "foreground_scribbles": 4, "background_scribbles": 5}
    upload = np.zeros_like(truth)
    for name in ("tumor", "C3", "C1"):
        upload[truth == task.labels[name]] = slicer_ids[name]
    infer = StructureScribblesInfer(task)
    request = {
        "image": _write(scene["image"], tmp_path / "image.nii.gz"),
        "label": _write(upload, tmp_path / "upload.nii.gz"),
        "label_info": [{"name": name, "id": value} for name, value in slicer_ids.items()],
        "selected_label_name": "C3",
        "output_label": "selected",
        "device": "cpu",
    }
    result = sitk.GetArrayFromImage(sitk.ReadImage(infer(request)[0]))
    assert set(np.unique(result)) == {0, 1}
    assert dice(result == 1, truth == task.labels["C3"]) > 0.95


def test_unusable_requests_are_422(scene: dict[str, np.ndarray], task: TaskDefinition, tmp_path: Path) -> None:
    """A label on another grid, an unknown structure or a missing upload are the client's mistakes."""
    infer = StructureScribblesInfer(task)
    image = _write(scene["image"], tmp_path / "image.nii.gz")
    label = _write(scene["label"], tmp_path / "label.nii.gz")
    cropped = _write(scene["label"][:, :30], tmp_path / "cropped.nii.gz")
    for request in (
        {"image": image, "label": cropped},
        {"image": image, "label": label, "selected_label_name": "C9"},
        {"image": image},
    ):
        with pytest.raises(InvalidInputError) as caught:
            infer({**request, "device": "cpu"})
        assert status_of(caught.value) == 422


def test_settings_come_from_the_task_yaml(task: TaskDefinition, tmp_path: Path) -> None:
    """``interactive:`` of the repository's YAML parses; a scribble value that is a label value is refused."""
    settings = task.interactive
    assert settings is not None
    assert settings.structure in task.labels and settings.lamda > 0
    assert StructureScribblesInfer(task).settings == settings
    data = yaml.safe_load((config_dir() / "tasks" / "spine_ct.yaml").read_text())
    data["interactive"] = {"structure": "tumor", "scribbles": {"background": 9, "foreground": 11}}
    (tmp_path / "tasks").mkdir()
    (tmp_path / "tasks" / "spine_ct.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="spine_ct.yaml: interactive: give an intensity_range"):
        load_task("spine_ct", tmp_path)  # spine_ct normalises per volume: no window to fall back on
    data["interactive"]["intensity_range"] = [-200, 1300]
    (tmp_path / "tasks" / "spine_ct.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="spine_ct.yaml: interactive: .*scribble values"):
        load_task("spine_ct", tmp_path)


def test_a_task_without_scribble_settings_stops_start_up(task: TaskDefinition) -> None:
    """Serving scribbles for a task without ``interactive:`` is a configuration error naming the task and section."""
    with pytest.raises(ConfigError, match="'spine_ct'.*'interactive'"):
        StructureScribblesInfer(dataclasses.replace(task, interactive=None))
