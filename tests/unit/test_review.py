"""The review book: submit, approve or reject (with a comment), supersede, the queue, and the records' permanence."""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path

import pytest

from hope.errors import ConflictError, InvalidInputError, NotFoundError
from hope.review import ReviewBook, ReviewState, series_state

from .conftest import Clock

STUDY = "1.2.3"


@pytest.fixture
def book(tmp_path: Path, clock: Clock) -> ReviewBook:
    return ReviewBook(tmp_path / "review" / "review.sqlite", reserve_s=3600, clock=clock)


def test_a_submitted_label_is_approved_once(book: ReviewBook, clock: Clock) -> None:
    sub = book.submit("9.1", "1.1", STUDY, "ann")
    assert (sub.state, sub.decision, sub.submitted_at) == (ReviewState.SUBMITTED, None, "2023-11-14T22:13:20+00:00")
    assert not book.is_approved("9.1")
    clock.now += 60
    decided = book.decide("9.1", "rev", approve=True, comment="  fine  ")
    assert decided.state is ReviewState.APPROVED and decided.decision is not None
    assert (decided.decision.reviewer, decided.decision.comment) == ("rev", "fine")
    assert decided.decision.decided_at == "2023-11-14T22:14:20+00:00"
    assert book.is_approved("9.1") and book.approved_segs() == {"9.1"}
    with pytest.raises(ConflictError, match="was approved by rev at .* already; a decision is final"):
        book.decide("9.1", "other", approve=False, comment="no")


def test_a_rejection_needs_a_comment_and_the_series_shows_it(book: ReviewBook) -> None:
    book.submit("9.1", "1.1", STUDY, "ann")
    for blank in ("", "   "):
        with pytest.raises(InvalidInputError, match="a rejection needs a comment"):
            book.decide("9.1", "rev", approve=False, comment=blank)
    assert book.state_of_series("1.1").state is ReviewState.SUBMITTED  # type: ignore[union-attr]
    book.decide("9.1", "rev", approve=False, comment="the C3 contour misses the posterior arch")
    review = book.state_of_series("1.1")
    assert review is not None and review.state is ReviewState.REJECTED
    assert review.last_comment == "the C3 contour misses the posterior arch"
    assert not book.is_approved("9.1") and book.approved_segs() == set()


def test_unknown_labels_blank_names_and_long_comments_are_refused(book: ReviewBook) -> None:
    with pytest.raises(NotFoundError, match="no label with SEG SOP Instance UID 9.9 was submitted"):
        book.decide("9.9", "rev", approve=True)
    with pytest.raises(InvalidInputError, match="annotator is required"):
        book.submit("9.1", "1.1", STUDY, " ")
    book.submit("9.1", "1.1", STUDY, "ann")
    with pytest.raises(InvalidInputError, match="reviewer is required"):
        book.decide("9.1", "", approve=True)
    with pytest.raises(InvalidInputError, match="at most 4000"):
        book.decide("9.1", "rev", approve=False, comment="x" * 4001)


def test_a_new_submission_supersedes_the_older_which_stays_in_history(book: ReviewBook, clock: Clock) -> None:
    book.submit("9.1", "1.1", STUDY, "ann")
    book.decide("9.1", "rev", approve=False, comment="redo the tumour")
    clock.now += 10
    book.submit("9.2", "1.1", STUDY, "ann")
    review = book.state_of_series("1.1")
    assert review is not None
    assert review.state is ReviewState.SUBMITTED and review.latest.seg_sop_uid == "9.2"
    assert [s.seg_sop_uid for s in review.history] == ["9.1", "9.2"]
    assert review.last_comment == "redo the tumour"  # still shown while the correction awaits review

    book.submit("9.3", "1.1", STUDY, "ann")
    with pytest.raises(ConflictError, match=r"9.2 is superseded by a newer label of series 1.1 \(SEG 9.3\)"):
        book.decide("9.2", "rev", approve=True)
    assert [s.seg_sop_uid for s in book.queue()] == ["9.3"]


def test_an_approved_label_still_counts_when_a_newer_one_awaits_review(book: ReviewBook) -> None:
    book.submit("9.1", "1.1", STUDY, "ann")
    book.decide("9.1", "rev", approve=True)
    book.submit("9.2", "1.1", STUDY, "ann")
    assert book.approved_segs() == {"9.1"} and not book.is_approved("9.2")
    assert book.state_of_series("1.1").state is ReviewState.SUBMITTED  # type: ignore[union-attr]


def test_submitting_the_same_seg_again_changes_nothing(book: ReviewBook) -> None:
    first = book.submit("9.1", "1.1", STUDY, "ann")
    book.decide("9.1", "rev", approve=False, comment="no")
    again = book.submit("9.1", "1.1", STUDY, "ann")
    assert again.seg_sop_uid == first.seg_sop_uid and again.state is ReviewState.REJECTED
    assert len(book.state_of_series("1.1").history) == 1  # type: ignore[union-attr]
    with pytest.raises(ConflictError, match="recorded as the label of series 1.1, not 1.2"):
        book.submit("9.1", "1.2", STUDY, "ann")


def test_the_queue_is_oldest_first_and_paged(book: ReviewBook, clock: Clock) -> None:
    for i in range(5):
        clock.now += 1
        book.submit(f"9.{i}", f"1.{i}", STUDY, "ann")
    book.decide("9.1", "rev", approve=True)
    assert [s.seg_sop_uid for s in book.queue()] == ["9.0", "9.2", "9.3", "9.4"]
    assert [s.seg_sop_uid for s in book.queue(limit=2, offset=1)] == ["9.2", "9.3"]
    assert book.queue(limit=2, offset=9) == []
    with pytest.raises(InvalidInputError, match="limit must be >= 1"):
        book.queue(limit=0)
    book.decide("9.2", "rev", approve=False, comment="no")
    assert book.counts() == {ReviewState.SUBMITTED: 3, ReviewState.APPROVED: 1, ReviewState.REJECTED: 1}


def test_rejected_series_go_back_to_their_annotator_and_are_withheld_from_others_while_fresh(
    book: ReviewBook, clock: Clock
) -> None:
    book.submit("9.1", "1.1", STUDY, "ann")
    book.submit("9.2", "1.2", STUDY, "bob")
    book.submit("9.3", "1.3", STUDY, "ann")
    book.decide("9.3", "rev", approve=False, comment="a")
    clock.now += 5
    book.decide("9.1", "rev", approve=False, comment="b")
    book.decide("9.2", "rev", approve=True)
    assert book.rejected_for("ann") == ["1.3", "1.1"]  # oldest rejection first
    assert book.rejected_for("bob") == []
    assert book.withheld_from("ann") == {"1.2"}  # approved: no one gets it
    assert book.withheld_from("bob") == {"1.1", "1.2", "1.3"}
    clock.now += 3600
    assert book.withheld_from("bob") == {"1.2"}  # no longer fresh: others may take it on
    assert book.rejected_for("ann") == ["1.3", "1.1"]  # still theirs first


def test_series_state_without_a_label(book: ReviewBook) -> None:
    assert book.state_of_series("1.1") is None
    assert series_state(None, suggested=False) is ReviewState.UNLABELLED
    assert series_state(None, suggested=True) is ReviewState.SUGGESTED
    book.submit("9.1", "1.1", STUDY, "ann")
    assert series_state(book.state_of_series("1.1"), suggested=True) is ReviewState.SUBMITTED


def test_records_survive_a_restart_and_cannot_be_deleted_or_rewritten(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "review.sqlite"
    book = ReviewBook(path, clock=clock)
    book.submit("9.1", "1.1", STUDY, "ann")
    book.decide("9.1", "rev", approve=False, comment="no")
    book.submit("9.2", "1.2", STUDY, "ann")
    restarted = ReviewBook(path, clock=clock)
    assert restarted.state_of_series("1.1").last_comment == "no"  # type: ignore[union-attr]
    db = sqlite3.connect(str(path))
    with pytest.raises(sqlite3.IntegrityError, match="none can be deleted"):
        db.execute("DELETE FROM submissions")
    with pytest.raises(sqlite3.IntegrityError, match="cannot be changed"):
        db.execute("UPDATE submissions SET approved = 1 WHERE seg_sop_uid = '9.1'")
    db.close()
    assert restarted.state_of_series("1.1").state is ReviewState.REJECTED  # type: ignore[union-attr]


def test_concurrent_decisions_on_one_label_admit_one(book: ReviewBook) -> None:
    book.submit("9.1", "1.1", STUDY, "ann")
    outcomes: list[str] = []

    def decide(reviewer: str) -> None:
        try:
            book.decide("9.1", reviewer, approve=True)
            outcomes.append("ok")
        except ConflictError:
            outcomes.append("conflict")

    threads = [threading.Thread(target=decide, args=(f"rev{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 7 + ["ok"]
