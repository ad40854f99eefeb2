"""Active learning: strategy rankings on crafted scores, the lease rule, uncertainty functions and scoring."""

from __future__ import annotations

import dataclasses
import math
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
import torch
from torch import nn

from hope.activelearning import (
    TTA,
    Diverse,
    Epistemic,
    LeaseBook,
    RandomStrategy,
    RareFirst,
    ScoreStore,
    ScoringSettings,
    ScoringWorker,
    SeriesScores,
    SuggestionDiceScoring,
    UncertaintyScoring,
    score_all,
    score_volume,
    select_diverse,
)
from hope.activelearning.uncertainty import (
    dice_per_label,
    dropout_only,
    entropy,
    feature_vector,
    flip_sets,
    mc_dropout_probs,
    predictive_entropy,
    sample_variance,
    tta_probs,
    tumor_likelihood,
    voxel_mean,
)
from hope.config import NetworkSpec, Preprocessing, load_task
from hope.errors import NotFoundError
from hope.infers.segmentation import SegmentationInfer
from hope.networks import build_network

from .conftest import Clock

TASK = "spine_ct"


class FakeDatastore:
    """The datastore methods strategies and scoring call, over in-memory series."""

    def __init__(self, uids: list[str], labelled: set[str] | None = None, flagged: set[str] | None = None) -> None:
        self.uids = list(uids)
        self.labelled = set(labelled or ())
        self.flagged = {uid: ["test"] for uid in flagged or ()}
        self.images: dict[str, str] = {}
        self.finals: dict[str, str] = {}

    def get_unlabeled_images(self, label_tag: str | None = None, labels: Any = None) -> list[str]:
        return [u for u in self.uids if u not in self.labelled]

    def get_labeled_images(self, label_tag: str | None = None, labels: Any = None) -> list[str]:
        return [u for u in self.uids if u in self.labelled]

    def get_image_uri(self, image_id: str) -> str:
        return self.images[image_id]

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        return self.finals[label_id]

    def get_label_by_image_id(self, image_id: str, tag: str) -> str | None:
        return None


@pytest.fixture
def leases(tmp_path: Path, clock: Clock) -> LeaseBook:
    return LeaseBook(tmp_path / "leases.sqlite", duration_s=1800, clock=clock)


@pytest.fixture
def scores(tmp_path: Path) -> ScoreStore:
    return ScoreStore(tmp_path / "scores.sqlite")


def served(version: str | None = "v0002"):
    return lambda task: version


def ask(strategy: Any, ds: FakeDatastore, client: str, **extra: Any) -> str | None:
    result = strategy({"strategy": strategy.name, "client_id": client, **extra}, ds)
    return result["id"] if result else None


def put(scores: ScoreStore, uid: str, version: str = "v0002", task: str = TASK, **fields: Any) -> None:
    scores.put(SeriesScores(task=task, series_uid=uid, model_version=version, **fields))


# ------------------------------------------------------------------------------------------------ rankings
def test_epistemic_hands_out_highest_entropy_first_one_per_client(leases: LeaseBook, scores: ScoreStore) -> None:
    for uid, value in {"a": 0.1, "b": 0.9, "c": 0.5, "d": 0.3}.items():
        put(scores, uid, epistemic=value)
    strategy = Epistemic(leases, scores, [TASK], served())
    ds = FakeDatastore(["a", "b", "c", "d"])
    assert [ask(strategy, ds, f"annotator-{i}") for i in range(5)] == ["b", "c", "d", "a", None]


def test_tta_ranks_by_variance(leases: LeaseBook, scores: ScoreStore) -> None:
    for uid, value in {"a": 0.5, "b": 0.1, "c": 0.7}.items():
        put(scores, uid, tta=value, epistemic=1 - value)
    strategy = TTA(leases, scores, [TASK], served())
    ds = FakeDatastore(["a", "b", "c"])
    assert [ask(strategy, ds, c) for c in ("x", "y", "z")] == ["c", "a", "b"]


def test_rare_first_weighs_tumor_likelihood_over_uncertainty(leases: LeaseBook, scores: ScoreStore) -> None:
    put(scores, "tumour", tumour=0.9, epistemic=0.1)  # 0.7 * 0.9 + 0.3 * 0.0 = 0.63
    put(scores, "uncertain", tumour=0.1, epistemic=0.9)  # 0.07 + 0.3 * 1.0 = 0.37
    put(scores, "middle", tumour=0.5, epistemic=0.5)  # 0.35 + 0.3 * 0.5 = 0.50
    strategy = RareFirst(leases, scores, [TASK], served())
    ds = FakeDatastore(["uncertain", "middle", "tumour"])
    first = strategy({"strategy": "rare_first", "client_id": "x"}, ds)
    assert first["id"] == "tumour" and first["score"] == pytest.approx(0.63)
    assert [ask(strategy, ds, c) for c in ("y", "z")] == ["middle", "uncertain"]


def test_diverse_picks_farthest_from_labelled(leases: LeaseBook, scores: ScoreStore) -> None:
    put(scores, "done", features=[0.0, 0.0])
    put(scores, "near", features=[0.3, 0.0], epistemic=0.9)
    put(scores, "far", features=[1.0, 1.0], epistemic=0.1)
    put(scores, "mid", features=[0.0, 0.8], epistemic=0.5)
    strategy = Diverse(leases, scores, [TASK], diversity=1.0)
    ds = FakeDatastore(["done", "near", "far", "mid"], labelled={"done"})
    assert ask(strategy, ds, "x") == "far"
    assert ask(strategy, ds, "y") == "mid"  # far from "done" and from "far" (leased to x)
    assert ask(strategy, ds, "z") == "near"


def test_diverse_never_hands_out_a_near_duplicate_of_a_leased_case(leases: LeaseBook, scores: ScoreStore) -> None:
    put(scores, "scan", features=[1.0, 0.0], epistemic=0.9)
    put(scores, "rescan", features=[1.0, 0.02], epistemic=1.0)  # the same patient again
    put(scores, "other", features=[0.0, 1.0], epistemic=0.0)
    strategy = Diverse(leases, scores, [TASK], min_distance=0.1, diversity=0.0)  # uncertainty alone would pick both
    ds = FakeDatastore(["scan", "rescan", "other"])
    assert ask(strategy, ds, "a") == "rescan"
    assert ask(strategy, ds, "b") == "other"
    assert ask(strategy, ds, "c") is None  # only the near-duplicate of a's lease is left
    ds.labelled.add("rescan")  # a saves a final label: the lease ends, the duplicate may go out
    assert ask(strategy, ds, "c") == "scan"


def test_select_diverse_batch_has_no_near_duplicates() -> None:
    rng = np.random.default_rng(0)
    base = {f"s{i}": rng.normal(size=4) for i in range(6)}
    feats = dict(base) | {f"s{i}-dup": v + 0.01 for i, (_, v) in enumerate(base.items())}
    uncertainty = {uid: (2.0 if uid.endswith("dup") else 1.0) for uid in feats}
    picks = [uid for uid, _ in select_diverse(feats, 6, uncertainty=uncertainty, diversity=0.3, min_distance=0.1)]
    assert len(picks) == 6
    assert len({uid.removesuffix("-dup") for uid in picks}) == 6


def test_scored_series_come_first_and_unscored_fall_back_to_random(leases: LeaseBook, scores: ScoreStore) -> None:
    put(scores, "scored", epistemic=0.01)
    strategy = Epistemic(leases, scores, [TASK], served(), seed=0)
    ds = FakeDatastore(["new1", "scored", "new2"])
    first = strategy({"strategy": "epistemic", "client_id": "x"}, ds)
    assert first["id"] == "scored" and first["basis"].startswith("epistemic scores of model v0002")
    second = strategy({"strategy": "epistemic", "client_id": "y"}, ds)
    assert second["id"] in {"new1", "new2"} and second["score"] is None


def test_without_scores_the_pick_is_random(leases: LeaseBook, scores: ScoreStore) -> None:
    for cls in (Epistemic, TTA, RareFirst):
        strategy = cls(leases, scores, [TASK], served(), seed=1)
        result = strategy({"strategy": cls.name, "client_id": cls.name}, FakeDatastore(["p", "q", "r"]))
        assert result["id"] in {"p", "q", "r"} and result["basis"] == "random (no scores)"
    diverse = Diverse(leases, scores, [TASK], seed=1)
    result = diverse({"strategy": "diverse", "client_id": "d"}, FakeDatastore(["p", "q", "r", "s"]))
    assert result["basis"] == "random (no scores)"


def test_served_version_scores_win_and_older_scores_serve_until_then(leases: LeaseBook, scores: ScoreStore) -> None:
    put(scores, "a", version="v0001", epistemic=0.9)
    put(scores, "b", version="v0001", epistemic=0.1)
    ds = FakeDatastore(["a", "b"])
    old_only = Epistemic(leases, scores, [TASK], served("v0002"))
    result = old_only({"strategy": "epistemic", "client_id": "x"}, ds)
    assert result["id"] == "a" and "v0001" in result["basis"]
    leases.release("a")
    put(scores, "b", version="v0002", epistemic=0.5)
    put(scores, "a", version="v0002", epistemic=0.2)
    assert ask(old_only, ds, "x") == "b"


def test_tasks_are_separate_and_unknown_tasks_are_404(leases: LeaseBook, scores: ScoreStore) -> None:
    put(scores, "a", task="spine_ct", epistemic=0.9)
    put(scores, "b", task="spine_ct", epistemic=0.1)
    put(scores, "a", task="spine_mr", epistemic=0.1)
    put(scores, "b", task="spine_mr", epistemic=0.9)
    strategy = Epistemic(leases, scores, ["spine_ct", "spine_mr"], served())
    ds = FakeDatastore(["a", "b"])
    assert ask(strategy, ds, "x", model="spine_mr") == "b"
    assert ask(strategy, ds, "y") == "a"  # default: the first task
    with pytest.raises(NotFoundError):
        strategy({"strategy": "epistemic", "client_id": "z", "model": "brain"}, ds)


# ---------------------------------------------------------------------------------------------- the lease rule
def test_random_skips_flagged_final_and_leased_series(leases: LeaseBook) -> None:
    strategy = RandomStrategy(leases, [TASK], seed=3)
    ds = FakeDatastore(["ok1", "ok2", "bad", "done"], labelled={"done"}, flagged={"bad"})
    got = {ask(strategy, ds, f"c{i}") for i in range(2)}
    assert got == {"ok1", "ok2"}
    assert ask(strategy, ds, "c2") is None


def test_series_a_task_cannot_annotate_are_not_handed_out(leases: LeaseBook, scores: ScoreStore) -> None:
    put(scores, "xray", epistemic=0.9)
    put(scores, "ct", epistemic=0.1)
    strategy = Epistemic(leases, scores, [TASK], served(), eligible=lambda task, uid: uid != "xray")
    ds = FakeDatastore(["xray", "ct"])
    assert [ask(strategy, ds, c) for c in ("x", "y")] == ["ct", None]


def test_two_clients_never_share_a_lease_and_expiry_frees_it(leases: LeaseBook, clock: Clock) -> None:
    strategy = RandomStrategy(leases, [TASK], seed=0)
    ds = FakeDatastore(["only"])
    assert ask(strategy, ds, "alice") == "only"
    assert ask(strategy, ds, "bob") is None
    clock.now += 1799
    assert ask(strategy, ds, "bob") is None
    clock.now += 2
    assert ask(strategy, ds, "bob") == "only"
    assert leases.active()["only"].client_id == "bob"


def test_saved_final_label_ends_the_lease(leases: LeaseBook, scores: ScoreStore) -> None:
    put(scores, "a", epistemic=0.9)
    strategy = Epistemic(leases, scores, [TASK], served())
    ds = FakeDatastore(["a", "b"])
    assert ask(strategy, ds, "alice") == "a"
    assert leases.release("a") is True
    assert "a" not in leases.active()
    assert ask(strategy, ds, "bob") == "a"
    ds.labelled.add("a")  # saved by another route (e.g. C-STORE of a SEG): the next call ends the lease
    ask(strategy, ds, "carol")
    assert "a" not in leases.active()


def test_asking_again_gives_back_the_previous_series(leases: LeaseBook, scores: ScoreStore) -> None:
    put(scores, "a", epistemic=0.9)
    put(scores, "b", epistemic=0.5)
    strategy = Epistemic(leases, scores, [TASK], served())
    ds = FakeDatastore(["a", "b"])
    assert ask(strategy, ds, "alice") == "a"
    assert ask(strategy, ds, "alice") == "b"  # "next": a is given back
    assert set(leases.active()) == {"b"}
    assert ask(strategy, ds, "bob") == "a"


def test_concurrent_requests_get_distinct_series(tmp_path: Path, scores: ScoreStore) -> None:
    book = LeaseBook(tmp_path / "shared.sqlite")
    uids = [f"s{i}" for i in range(20)]
    for i, uid in enumerate(uids):
        put(scores, uid, epistemic=float(i % 3))  # many ties: everyone wants the same few
    strategy = Epistemic(book, scores, [TASK], served())
    ds = FakeDatastore(uids)
    got: list[str | None] = []
    barrier = threading.Barrier(12)

    def annotator(i: int) -> None:
        barrier.wait()
        got.append(ask(strategy, ds, f"annotator-{i}"))

    threads = [threading.Thread(target=annotator, args=(i,)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert None not in got and len(set(got)) == 12


def test_leases_persist_across_restarts(tmp_path: Path, clock: Clock) -> None:
    LeaseBook(tmp_path / "l.sqlite", clock=clock).try_acquire("s", "alice", TASK, "random")
    again = LeaseBook(tmp_path / "l.sqlite", clock=clock)
    assert again.try_acquire("s", "bob", TASK) is None
    assert again.active()["s"].client_id == "alice"


# ------------------------------------------------------------------------------------------------ score store
def test_score_store_merges_partial_writes_and_reports_missing(scores: ScoreStore) -> None:
    put(scores, "a", epistemic=0.5, features=[1.0, 2.0])
    put(scores, "a", dice=0.8, dice_per_label={"tumor": 0.6})
    row = scores.get(TASK, "a", "v0002")
    assert (row.epistemic, row.features, row.dice, row.dice_per_label) == (0.5, [1.0, 2.0], 0.8, {"tumor": 0.6})
    put(scores, "a", version="v0003", tta=0.1)
    assert scores.newest(TASK)["a"].model_version == "v0003"
    assert scores.versions(TASK) == ["v0002", "v0003"]
    assert scores.missing(TASK, "v0003", ["a", "b"], "tta") == ["b"]
    assert scores.missing(TASK, "v0003", ["a"], "epistemic") == ["a"]


# ------------------------------------------------------------------------------------------ uncertainty functions
def test_entropy_of_uniform_is_log_c_and_of_one_hot_is_zero() -> None:
    uniform = torch.full((4, 3, 3), 0.25)
    assert torch.allclose(entropy(uniform), torch.full((3, 3), math.log(4)))
    one_hot = torch.zeros(4, 3, 3)
    one_hot[2] = 1.0
    assert torch.allclose(entropy(one_hot), torch.zeros(3, 3))


def test_predictive_entropy_and_variance_of_samples() -> None:
    a = torch.tensor([[1.0], [0.0]])  # (C=2, 1 voxel)
    b = torch.tensor([[0.0], [1.0]])
    disagree = torch.stack([a, b])  # confident samples that disagree: mean is uniform
    assert predictive_entropy(disagree).item() == pytest.approx(math.log(2))
    assert sample_variance(disagree).item() == pytest.approx(0.5)  # 0.25 per class, two classes
    agree = torch.stack([a, a])
    assert predictive_entropy(agree).item() == pytest.approx(0.0, abs=1e-6)
    assert sample_variance(agree).item() == 0.0


def test_voxel_mean_over_all_or_the_top_fraction() -> None:
    values = torch.tensor([0.0, 0.0, 0.0, 4.0])
    assert voxel_mean(values) == 1.0
    assert voxel_mean(values, top_fraction=0.25) == 4.0
    with pytest.raises(ValueError):
        voxel_mean(values, top_fraction=0.0)


def test_tumor_likelihood_ignores_a_lone_voxel_but_sees_a_blob() -> None:
    probs = torch.zeros(2, 9, 9, 9)
    probs[1, 2, 2, 2] = 1.0
    lone = tumor_likelihood(probs, channel=1)
    probs[1, 5:8, 5:8, 5:8] = 0.9
    assert lone == pytest.approx(1 / 27) and tumor_likelihood(probs, channel=1) == pytest.approx(0.9)


def test_feature_vector_is_unit_length_and_equal_for_equal_scans() -> None:
    image = torch.rand(8, 8, 8, generator=torch.Generator().manual_seed(0))
    probs = torch.softmax(torch.randn(3, 8, 8, 8), dim=0)
    f = feature_vector(image, probs)
    assert f.norm().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.equal(f, feature_vector(image.clone(), probs.clone()))
    assert (f - feature_vector(1 - image, probs)).norm() > 0.1


def test_dice_per_label() -> None:
    ref = torch.tensor([1, 1, 2, 0])
    pred = torch.tensor([1, 0, 2, 2])
    assert dice_per_label(ref, pred, [1, 2, 3]) == {1: pytest.approx(2 / 3), 2: pytest.approx(2 / 3)}


class DropNorm(nn.Module):
    """Conv + BatchNorm + InstanceNorm (with running stats) + Dropout."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv3d(1, 2, 1)
        self.bn = nn.BatchNorm3d(2)
        self.inorm = nn.InstanceNorm3d(2, track_running_stats=True)
        self.drop = nn.Dropout3d(0.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.inorm(self.bn(self.conv(x))))


def test_dropout_only_keeps_normalisation_in_eval_mode_and_restores_modes() -> None:
    net = DropNorm().train()
    stats = (net.bn.running_mean.clone(), net.inorm.running_mean.clone())
    with dropout_only(net):
        assert net.drop.training
        assert not net.bn.training and not net.inorm.training and not net.training
        samples = mc_dropout_probs(net, torch.randn(1, 1, 4, 4, 4), samples=8)
    assert net.training and net.bn.training and net.drop.training  # restored
    assert torch.equal(net.bn.running_mean, stats[0]) and torch.equal(net.inorm.running_mean, stats[1])
    assert samples.shape == (8, 2, 4, 4, 4) and sample_variance(samples).sum() > 0


def test_tta_with_an_equivariant_network_has_zero_variance() -> None:
    net = nn.Conv3d(1, 3, 1)  # voxel-wise: flipping commutes with it
    probs = tta_probs(net, torch.randn(1, 1, 4, 5, 6), flip_sets(3))
    assert probs.shape == (8, 3, 4, 5, 6)
    assert sample_variance(probs).max().item() == pytest.approx(0.0, abs=1e-10)
    assert flip_sets(2) == [(), (2,), (3,), (2, 3)]


# ---------------------------------------------------------------------------------------------------- scoring
def tiny_task():
    task = load_task(TASK)
    return dataclasses.replace(
        task,
        preprocessing=Preprocessing(spacing=(3.0, 3.0, 3.0), intensity_range=(-1000.0, 1500.0), patch_size=(8, 8, 8)),
        network=NetworkSpec(
            "UNet",
            {"spatial_dims": 3, "channels": [4, 8], "strides": [2], "num_res_units": 0, "dropout": 0.2},
        ),
    )


class Registry:
    """The two members of ModelRegistry that scoring reads."""

    def __init__(self, path: Path, version: str | None) -> None:
        self.served_path = path
        self.version = version

    def served_version(self) -> str | None:
        return self.version


def test_score_volume_fills_every_field() -> None:
    torch.manual_seed(0)
    net = build_network(tiny_task())
    s = score_volume(
        net,
        torch.rand(1, 1, 8, 8, 8),
        task=TASK,
        series_uid="a",
        model_version="v1",
        tumor_channel=9,
        voxel_volume_ml=0.001,
        settings=ScoringSettings(mc_samples=3),
    )
    assert s.epistemic > 0 and s.tta >= 0 and 0 <= s.tumour <= 1 and s.tumour_volume_ml > 0
    assert len(s.features) == 16 + 64 + 10


def test_uncertainty_scoring_scores_unlabelled_unflagged_series_once_per_model(
    tmp_path: Path, scores: ScoreStore
) -> None:
    task = tiny_task()
    torch.manual_seed(0)
    network = build_network(task)
    weights = tmp_path / "model.pt"
    torch.save({"model": network.state_dict()}, weights)
    ds = FakeDatastore(["a", "b", "done", "bad"], labelled={"done"}, flagged={"bad"})
    for uid in ds.uids:
        image = sitk.GetImageFromArray(np.random.default_rng(0).integers(-1000, 1500, (10, 12, 12)).astype(np.int16))
        image.SetSpacing((2.0, 2.0, 2.5))
        ds.images[uid] = str(tmp_path / f"{uid}.nii.gz")
        sitk.WriteImage(image, ds.images[uid])
    registry = Registry(weights, "v0001")
    scoring = UncertaintyScoring(
        TASK,
        SegmentationInfer(task, [str(weights)], network),
        network,
        registry,
        scores,
        tumor_channel=task.labels["tumor"],
        spacing_mm=task.preprocessing.spacing,
        settings=ScoringSettings(mc_samples=2),
    )
    first = scoring({"device": "cpu"}, ds)
    assert first["scored"] == 2 and not first["failed"]
    assert set(scores.for_version(TASK, "v0001")) == {"a", "b"}
    assert scoring({"device": "cpu"}, ds)["scored"] == 0  # nothing new for the same model
    registry.version = "v0002"
    assert scoring({"device": "cpu", "max_series": 1}, ds)["scored"] == 1
    assert network.training  # the template was never switched to eval: scoring used a private copy


def test_suggestion_dice_scoring_compares_final_and_suggestion(tmp_path: Path, scores: ScoreStore) -> None:
    final = np.zeros((4, 4, 4), np.uint8)
    final[:2] = 9
    suggestion = np.zeros((4, 4, 4), np.uint8)
    suggestion[:1] = 9
    ds = FakeDatastore(["a", "b"], labelled={"a", "b"})
    for name, array in (("final", final), ("suggestion", suggestion)):
        sitk.WriteImage(sitk.GetImageFromArray(array), str(tmp_path / f"{name}.nii.gz"))
    ds.finals = {"a": str(tmp_path / "final.nii.gz"), "b": str(tmp_path / "final.nii.gz")}
    lookup = {"a": (str(tmp_path / "suggestion.nii.gz"), "v0003")}
    scoring = SuggestionDiceScoring(TASK, load_task(TASK).labels, scores, suggestion=lookup.get)
    result = scoring({}, ds)
    assert result["dice"] == {"a": pytest.approx(2 / 3)} and not result["failed"]
    assert scores.get(TASK, "a", "v0003").dice_per_label == {"tumor": pytest.approx(2 / 3)}


class Failing:
    def __call__(self, request: dict[str, Any], datastore: Any) -> dict[str, Any]:
        raise RuntimeError("boom")


class Counting:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, request: dict[str, Any], datastore: Any) -> dict[str, Any]:
        self.calls += 1
        return {"calls": self.calls}


def test_score_all_reports_failures_and_runs_the_rest() -> None:
    counting = Counting()
    result = score_all({"bad": Failing(), "good": counting}, FakeDatastore([]))
    assert result == {"bad": {"error": "RuntimeError: boom"}, "good": {"calls": 1}}


def test_scoring_worker_runs_on_trigger() -> None:
    counting = Counting()
    worker = ScoringWorker({"count": counting}, FakeDatastore([]))
    worker.trigger()
    assert worker.wait_idle(10)
    worker.trigger()
    assert worker.wait_idle(10)
    worker.stop()
    assert counting.calls == 2 and worker.last_result == {"count": {"calls": 2}}
