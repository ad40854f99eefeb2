"""Training safety: a diverging run aborts and publishes nothing; versions are kept and served atomically, the
newest promoted one unless one is pinned."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from ignite.engine import Engine

from hope.config import load_task
from hope.errors import NotFoundError
from hope.models.registry import FrozenSetRef, ModelRegistry, Promotion
from hope.trainers.publish import DivergenceError, LossGuard
from hope.trainers.segmentation import training_cases


def _engine(losses: list[float]) -> Engine:
    it = iter(losses)
    engine = Engine(lambda e, batch: [{"loss": torch.tensor(next(it))}])
    LossGuard().attach(engine)
    return engine


def test_finite_losses_pass() -> None:
    _engine([1.0, 0.5, 0.25]).run([0, 1, 2], max_epochs=1)


def test_non_finite_loss_aborts_with_advice() -> None:
    with pytest.raises(DivergenceError, match="lower the learning rate"):
        _engine([1.0, float("nan"), 0.5]).run([0, 1, 2], max_epochs=1)


def _weights(tmp_path: Path, value: float) -> Path:
    path = tmp_path / f"w{value}.pt"
    torch.save({"model": {"w": torch.tensor([value])}}, path)
    return path


def _decided(promoted: bool) -> Callable[[str, Path], Promotion]:
    def decide(version: str, weights: Path) -> Promotion:
        assert weights.read_bytes()  # the new version's weights, readable before it can serve
        return Promotion(promoted=promoted, reason=f"{version} {'serves' if promoted else 'does not'}",
                         frozen_set=FrozenSetRef(cases=3, fingerprint="f"))

    return decide


def test_registry_serves_the_best_version_unless_pinned(tmp_path: Path) -> None:
    """The best version is the newest one promoted: a higher training Dice of a refused version does not count."""
    registry = ModelRegistry("task", tmp_path / "models")
    registry.add(_weights(tmp_path, 0), started_by="a", metrics={}, training_data=[], params={})
    registry.add(_weights(tmp_path, 1), started_by="b", metrics={"train_mean_dice": 0.6}, training_data=["s1"],
                 params={}, decide=_decided(True))
    registry.add(_weights(tmp_path, 2), started_by="c", metrics={"train_mean_dice": 0.9}, training_data=["s2"],
                 params={}, decide=_decided(False))

    def served() -> float:
        return float(torch.load(registry.served_path)["model"]["w"])

    assert registry.served_version() == "v0002" and served() == 1.0
    registry.pin("v0003")
    assert registry.served_version() == "v0003" and served() == 2.0
    registry.unpin()
    assert registry.served_version() == "v0002" and served() == 1.0
    with pytest.raises(NotFoundError, match="v0001, v0002, v0003"):
        registry.pin("v0009")
    assert [v.started_by for v in registry.versions()] == ["a", "b", "c"]


def test_lesion_only_labels_are_skipped_for_training(tmp_path: Path) -> None:
    """Of two final labels, the one with only a tumour is skipped and the one with a vertebra is kept."""
    task = load_task("spine_ct")
    datalist = []
    for name, value in (("lesion", task.labels["tumor"]), ("spine", task.labels["C2"])):
        array = np.zeros((4, 8, 8), np.uint8)
        array[1:3, 2:5, 2:5] = value
        path = tmp_path / f"{name}.nii.gz"
        sitk.WriteImage(sitk.GetImageFromArray(array), str(path))
        datalist.append({"image": str(path), "label": str(path)})
    kept, skipped = training_cases(datalist, task)
    assert [d["label"] for d in kept] == [str(tmp_path / "spine.nii.gz")]
    assert [d["label"] for d in skipped] == [str(tmp_path / "lesion.nii.gz")]
