"""The frozen validation set and the promotion rule: membership is decided once and never trains; a new version
serves only when it is not worse on the set than the serving one; a pin always wins."""

from __future__ import annotations

import json
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from monailabel.datastore.local import LocalDatastore
from monailabel.tasks.train.basic_train import Context

from hope.config import ConfigError, TaskDefinition, load_task
from hope.config.validation import ValidationRule, parse_validation
from hope.models.promotion import FrozenScore, PromotionJudge, Scorer
from hope.models.registry import ModelRegistry
from hope.models.validation_set import FrozenValidationSet, case_id, picked
from hope.trainers.segmentation import FROZEN_KEY, SegmentationTrainer

RULE = ValidationRule(share=0.2, min_training_cases=1, min_cases=2, margin=0.02)


@pytest.fixture(scope="module")
def task() -> TaskDefinition:
    return load_task("spine_ct")


def _uids(want_picked: bool, n: int) -> list[str]:
    """``n`` series UIDs the hash rule (share 0.2) picks (``want_picked``) or leaves to training."""
    found: list[str] = []
    candidates: Iterator[str] = (f"1.2.826.0.1.3680043.{i}" for i in count())
    while len(found) < n:
        uid = next(candidates)
        if picked(uid, RULE.share) == want_picked:
            found.append(uid)
    return found


def _items(uids: list[str], seg: str = "a") -> list[dict[str, str]]:
    return [{"image": f"/store/{uid}.nii.gz", "label": f"/store/labels/final/{uid}.nii.gz", "seg": f"{uid}.{seg}"}
            for uid in uids]


# ---------------------------------------------------------------------------------------------------- membership
def test_membership_is_decided_once_by_the_series_hash_and_never_changes(tmp_path: Path) -> None:
    first = _uids(True, 3) + _uids(False, 5)
    frozen_set = FrozenValidationSet(tmp_path, RULE)
    split = frozen_set.partition(_items(first), trained=set())
    members = {case_id(item) for item in split.frozen}
    assert members == {uid for uid in first if picked(uid, RULE.share)} and len(members) == 3
    assert {case_id(item) for item in split.training} == set(first) - members

    # More labels arrive, the old ones are edited (new SEGs), and the share changes: decided series stay as they are.
    more = _uids(True, 5)[3:] + _uids(False, 8)[5:]
    everyone = FrozenValidationSet(tmp_path, ValidationRule(share=1.0)).partition(
        _items(list(reversed(first)) + more, seg="b"), trained=set())
    later_members = {case_id(item) for item in everyone.frozen}
    assert later_members & set(first) == members
    assert later_members - set(first) == set(more)  # share 1.0 picks every new series
    kept = json.loads((tmp_path / "frozen_set.json").read_text())
    assert set(kept["members"]) == later_members and set(kept["training"]) == set(first) - members


def test_labels_already_trained_on_never_join(tmp_path: Path) -> None:
    items = _items(_uids(True, 3))
    split = FrozenValidationSet(tmp_path, RULE).partition(items, trained={items[0]["seg"]})
    assert items[0] in split.training and items[0] not in split.frozen
    assert split.frozen == items[1:]


def test_a_picked_label_stays_a_training_case_when_too_few_would_remain(tmp_path: Path) -> None:
    lone = _items(_uids(True, 1))
    assert FrozenValidationSet(tmp_path, RULE).partition(lone, trained=set()).training == lone
    # The decision holds later, when the rule would let it join.
    again = FrozenValidationSet(tmp_path, RULE).partition(lone + _items(_uids(False, 2)), trained=set())
    assert lone[0] in again.training and not again.frozen


def _ct(path: Path, cube_value: float, background: float = -1000.0) -> None:
    array = np.full((16, 16, 16), background, np.float32)
    array[4:12, 4:12, 4:12] = cube_value
    image = sitk.GetImageFromArray(array)
    image.SetSpacing((1.5, 1.5, 1.5))
    sitk.WriteImage(image, str(path))


def _label(path: Path, value: int) -> None:
    array = np.zeros((16, 16, 16), np.uint8)
    array[4:12, 4:12, 4:12] = value
    label = sitk.GetImageFromArray(array)
    label.SetSpacing((1.5, 1.5, 1.5))
    sitk.WriteImage(label, str(path))


def test_members_never_reach_the_training_datalist(tmp_path: Path, task: TaskDefinition) -> None:
    """Through the trainer and a real (local folder) datastore: members go to the frozen set, the rest to training."""
    store = tmp_path / "store"
    store.mkdir()
    uids = _uids(True, 2) + _uids(False, 4)
    for uid in uids:
        _ct(store / f"{uid}.nii.gz", 1500)
    datastore = LocalDatastore(str(store), extensions=("*.nii.gz",), auto_reload=False)
    _label(tmp_path / "label.nii.gz", task.labels["C2"])
    for uid in uids:
        datastore.save_label(uid, str(tmp_path / "label.nii.gz"), "final", {})
    registry = ModelRegistry(task.name, tmp_path / "models")
    trainer = SegmentationTrainer(task, tmp_path / "models", _conv(task, good=False), registry)
    request: dict = {}
    training = trainer.pre_process(request, datastore)
    frozen = {case_id(item) for item in request[FROZEN_KEY]}
    assert frozen == set(uids[:2])
    assert {case_id(item) for item in training} == set(uids[2:])


# ---------------------------------------------------------------------------------------------------- promotion
def _conv(task: TaskDefinition, good: bool) -> torch.nn.Conv3d:
    """A one-voxel network: ``good`` labels bright voxels C1 (the phantom cube), else everything background."""
    net = torch.nn.Conv3d(1, task.num_classes, kernel_size=1)
    with torch.no_grad():
        net.weight.zero_()
        net.bias.fill_(-10.0)
        net.bias[0] = 10.0
        if good:
            c1 = task.labels["C1"]
            net.weight[0], net.weight[c1], net.bias[c1] = -20.0, 20.0, -10.0
    return net


def _weights(tmp_path: Path, task: TaskDefinition, good: bool) -> Path:
    """Good weights as a training run's checkpoint saver writes them (the bare state dict), bad ones as a first
    version's (``{"model": state_dict}``): the scorer reads both."""
    path = tmp_path / f"{'good' if good else 'bad'}.pt"
    state = _conv(task, good).state_dict()
    torch.save(state if good else {"model": state}, path)
    return path


class Frozen:
    """Frozen-set cases on disk (a bright cube labelled C1) and the trainer's scorer of weights on them."""

    def __init__(self, tmp_path: Path, task: TaskDefinition, cases: int) -> None:
        labels = tmp_path / "labels"
        labels.mkdir(parents=True)
        self.items = []
        for uid in _uids(True, cases):
            _ct(tmp_path / f"{uid}.nii.gz", 1500)
            _label(labels / f"{uid}.nii.gz", task.labels["C1"])
            self.items.append({"image": str(tmp_path / f"{uid}.nii.gz"), "label": str(labels / f"{uid}.nii.gz")})
        context = Context()
        context.device = torch.device("cpu")
        context.network = _conv(task, good=False)
        trainer = SegmentationTrainer(task, tmp_path / "models", context.network, ModelRegistry(task.name, tmp_path))
        self.scorer = trainer.frozen_scorer(context, self.items)
        self.scored: list[Path] = []

    def counting(self) -> Scorer:
        """The trainer's scorer, noting what it scores."""

        def score(weights: Path) -> FrozenScore:
            self.scored.append(weights)
            return self.scorer(weights)

        return score


def _judge(registry: ModelRegistry, frozen: Frozen) -> PromotionJudge:
    return PromotionJudge(registry, RULE, frozen.items, frozen.counting())


def _add(registry: ModelRegistry, weights: Path, judge: PromotionJudge | None):
    return registry.add(weights, started_by="t", metrics={}, training_data=[], params={}, decide=judge)


def test_a_worse_version_is_kept_but_not_served_and_the_reason_names_both_scores(
        tmp_path: Path, task: TaskDefinition) -> None:
    frozen = Frozen(tmp_path / "cases", task, cases=2)
    registry = ModelRegistry(task.name, tmp_path / "models")
    _add(registry, _weights(tmp_path, task, good=True), None)
    worse = _add(registry, _weights(tmp_path, task, good=False), _judge(registry, frozen))

    decision = worse.promotion
    assert decision is not None and not decision.promoted and not worse.promoted
    new, old = decision.scores["v0002"], decision.scores["v0001"]
    assert new < 0.1 and old > 0.9  # everything background vs the cube found
    assert decision.dice == {"v0001": {"C1": pytest.approx(old)}, "v0002": {"C1": pytest.approx(new)}}
    assert decision.reason == (
        f"v0002 scored {new:.3f} on the frozen validation set of 2 cases, below the serving v0001's {old:.3f} by more "
        "than the margin 0.02; v0001 keeps serving. Pin v0002 to serve it anyway.")
    assert decision.frozen_set.cases == 2 and decision.margin == 0.02
    assert registry.served_version() == "v0001"
    assert [v.version for v in registry.versions()] == ["v0001", "v0002"]  # kept
    assert registry.get("v0002").promotion == decision  # and recorded with the version

    registry.pin("v0002")  # the admin's override
    assert registry.served_version() == "v0002"
    registry.unpin()
    assert registry.served_version() == "v0001"


def test_a_version_not_worse_serves_and_scores_are_cached_per_set(tmp_path: Path, task: TaskDefinition) -> None:
    frozen = Frozen(tmp_path / "cases", task, cases=2)
    registry = ModelRegistry(task.name, tmp_path / "models")
    _add(registry, _weights(tmp_path, task, good=True), None)
    _add(registry, _weights(tmp_path, task, good=False), _judge(registry, frozen))
    assert len(frozen.scored) == 2
    same = _add(registry, _weights(tmp_path, task, good=True), _judge(registry, frozen))
    assert same.promotion is not None and same.promotion.promoted
    assert "v0003 scored" in same.promotion.reason and "not below the serving v0001's" in same.promotion.reason
    assert same.promotion.reason.endswith("; v0003 serves.")
    assert registry.served_version() == "v0003"
    assert len(frozen.scored) == 3  # v0001 was scored on this set already: only v0003 was
    cached = json.loads((registry.validation_dir / "scores.json").read_text())
    assert set(cached[same.promotion.frozen_set.fingerprint]) == {"v0001", "v0002", "v0003"}


def test_below_min_cases_a_new_version_serves_with_the_reason(tmp_path: Path, task: TaskDefinition) -> None:
    frozen = Frozen(tmp_path / "cases", task, cases=1)
    registry = ModelRegistry(task.name, tmp_path / "models")
    _add(registry, _weights(tmp_path, task, good=True), None)
    worse = _add(registry, _weights(tmp_path, task, good=False), _judge(registry, frozen))
    assert worse.promotion is not None and worse.promotion.promoted
    assert worse.promotion.reason == ("no frozen validation set yet (1 of 2 cases), so v0002 was not compared with "
                                      "v0001; v0002 serves.")
    assert worse.promotion.scores == {} and not frozen.scored
    assert registry.served_version() == "v0002"


def test_a_decision_never_overrides_a_pin(tmp_path: Path, task: TaskDefinition) -> None:
    frozen = Frozen(tmp_path / "cases", task, cases=2)
    registry = ModelRegistry(task.name, tmp_path / "models")
    _add(registry, _weights(tmp_path, task, good=False), None)
    _add(registry, _weights(tmp_path, task, good=False), None)
    registry.pin("v0001")
    better = _add(registry, _weights(tmp_path, task, good=True), _judge(registry, frozen))
    assert better.promotion is not None and better.promotion.promoted
    assert set(better.promotion.scores) == {"v0003", "v0001"}  # compared with the version serving: the pinned one
    assert better.promotion.reason.endswith("v0001 stays pinned; v0003 serves once it is unpinned.")
    assert registry.served_version() == "v0001"
    registry.unpin()
    assert registry.served_version() == "v0003"


def test_the_rule_is_checked_when_the_task_is_loaded() -> None:
    assert parse_validation({"share": 0.1, "margin": 0.05}, "t") == ValidationRule(share=0.1, margin=0.05)
    with pytest.raises(ConfigError, match=r"t.share: expected a share from 0 to 1"):
        parse_validation({"share": 20}, "t")
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['min_case'\]"):
        parse_validation({"min_case": 3}, "t")
