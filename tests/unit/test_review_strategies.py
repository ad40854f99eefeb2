"""Active learning with label review on: a rejected series goes back to its annotator first, and no one else is
handed it while the rejection is fresh; a series whose label awaits review or is approved is handed to no one."""

from __future__ import annotations

from pathlib import Path

import pytest

from hope.activelearning import Diverse, Epistemic, LeaseBook, RandomStrategy, RareFirst, ScoreStore
from hope.activelearning.strategies import REJECTED_BASIS, LeasedStrategy
from hope.review import ReviewBook
from tests.unit.test_activelearning import TASK, FakeDatastore

from .conftest import Clock

STUDY = "1.2.3"


@pytest.fixture
def leases(tmp_path: Path, clock: Clock) -> LeaseBook:
    return LeaseBook(tmp_path / "leases.sqlite", duration_s=86400, clock=clock)


@pytest.fixture
def book(tmp_path: Path, clock: Clock) -> ReviewBook:
    return ReviewBook(tmp_path / "review.sqlite", reserve_s=3600, clock=clock)


def _every_strategy(leases: LeaseBook, book: ReviewBook | None, tmp_path: Path) -> list[LeasedStrategy]:
    scores = ScoreStore(tmp_path / "scores.sqlite")
    scored = {"scores": scores, "tasks": [TASK], "version_of": lambda task: None, "seed": 0, "review": book}
    return [RandomStrategy(leases, [TASK], seed=0, review=book), Epistemic(leases, **scored),
            RareFirst(leases, **scored), Diverse(leases, scores, [TASK], seed=0, review=book)]


def _reject(book: ReviewBook, sop: str, series: str, annotator: str) -> None:
    book.submit(sop, series, STUDY, annotator)
    book.decide(sop, "rev", approve=False, comment="redo")


def test_every_strategy_hands_an_annotator_their_rejected_series_first(
    leases: LeaseBook, book: ReviewBook, tmp_path: Path
) -> None:
    _reject(book, "9.1", "s3", "ann")
    for strategy in _every_strategy(leases, book, tmp_path):
        answer = strategy({"client_id": "ann"}, FakeDatastore(["s1", "s2", "s3", "s4"]))
        assert answer is not None and (answer["id"], answer["basis"]) == ("s3", REJECTED_BASIS), strategy.name
        leases.release("s3")


def test_others_never_get_a_fresh_rejection_or_a_label_under_review(
    leases: LeaseBook, book: ReviewBook, clock: Clock
) -> None:
    _reject(book, "9.1", "rejected", "ann")
    book.submit("9.2", "pending", STUDY, "ann")
    book.submit("9.3", "approved", STUDY, "ann")
    book.decide("9.3", "rev", approve=True)
    ds = FakeDatastore(["rejected", "pending", "approved", "free"])  # no gate here: all four look unlabelled
    strategy = RandomStrategy(leases, [TASK], seed=1, review=book)
    assert strategy({"client_id": "bob"}, ds)["id"] == "free"  # type: ignore[index]
    assert strategy({"client_id": "eve"}, ds) is None  # "free" is bob's; nothing else may go to eve
    clock.now += 3601  # the rejection is no longer fresh: anyone may take it on
    assert strategy({"client_id": "eve"}, ds)["id"] == "rejected"  # type: ignore[index]
    assert strategy({"client_id": "ann"}, ds) is None  # eve holds it now; the others stay withheld


def test_a_rejected_series_leased_to_its_annotator_is_not_handed_out_again(
    leases: LeaseBook, book: ReviewBook
) -> None:
    _reject(book, "9.1", "r1", "ann")
    _reject(book, "9.2", "r2", "ann")
    ds = FakeDatastore(["a", "r1", "r2"])
    strategy = RandomStrategy(leases, [TASK], seed=0, review=book)
    assert strategy({"client_id": "ann"}, ds)["id"] == "r1"  # type: ignore[index]
    assert strategy({"client_id": "ann"}, ds)["id"] == "r2"  # asking again means next: the next rejected one


def test_without_a_review_book_a_rejected_series_is_like_any_other(
    leases: LeaseBook, book: ReviewBook, tmp_path: Path
) -> None:
    _reject(book, "9.1", "s3", "ann")
    plain = _every_strategy(leases, None, tmp_path)
    reviewed = _every_strategy(leases, book, tmp_path)
    for without, with_review in zip(plain, reviewed, strict=True):
        assert with_review({"client_id": "bob"}, FakeDatastore(["s3"])) is None, with_review.name
        picked = without({"client_id": "bob"}, FakeDatastore(["s3"]))
        assert picked is not None and picked["id"] == "s3" and picked["basis"] != REJECTED_BASIS, without.name
        leases.release("s3")
