"""The review book: which saved labels (DICOM SEGs in the store) were submitted, approved or rejected, by whom.

The SEG stays in the store whatever a reviewer decides; its review is HOPE's record, keyed by the SEG's SOP
Instance UID. The rules:

* saving a label submits it (:meth:`ReviewBook.submit`); a new submission on the same image series supersedes the
  older one, which stays in the series' history. Submitting the same SEG again (a repeated save) changes nothing;
* a reviewer approves or rejects the series' latest submission, once (:meth:`ReviewBook.decide`): a rejection
  needs a comment, which the annotator sees when the case is opened next; a decided label is never decided again
  (the annotator saves a corrected label, which is reviewed anew);
* only approved SEGs count for training and support sets (:meth:`ReviewBook.is_approved` is the datastore's gate);
* a rejected series goes back to its annotator first; for ``reserve_s`` after the rejection no one else is handed
  it, and no one is handed a series whose latest label awaits review or is approved
  (:meth:`ReviewBook.rejected_for`, :meth:`ReviewBook.withheld_from`, read by the active-learning strategies).

Records live in a SQLite file shared by every thread and process; triggers refuse to delete a record or to change a
decided one, so the history cannot be rewritten.
"""

from __future__ import annotations

import enum
import sqlite3
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hope.errors import ConflictError, InvalidInputError, NotFoundError

#: The longest comment a reviewer may write.
MAX_COMMENT_CHARS = 4000
#: How long a rejected series is kept for its annotator before others may be handed it (seconds).
DEFAULT_RESERVE_S = 7 * 24 * 3600.0

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS submissions (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
    "seg_sop_uid TEXT NOT NULL UNIQUE, series_uid TEXT NOT NULL, study_uid TEXT NOT NULL, annotator TEXT NOT NULL, "
    "submitted REAL NOT NULL, reviewer TEXT, approved INTEGER, comment TEXT, decided REAL)",
    "CREATE INDEX IF NOT EXISTS submissions_series ON submissions (series_uid, seq)",
    "CREATE VIEW IF NOT EXISTS latest AS SELECT * FROM submissions s "
    "WHERE seq = (SELECT MAX(seq) FROM submissions WHERE series_uid = s.series_uid)",
    "CREATE TRIGGER IF NOT EXISTS submissions_no_delete BEFORE DELETE ON submissions "
    "BEGIN SELECT RAISE(ABORT, 'review records are kept: none can be deleted'); END",
    "CREATE TRIGGER IF NOT EXISTS submissions_decided_once BEFORE UPDATE ON submissions WHEN OLD.decided IS NOT NULL "
    "BEGIN SELECT RAISE(ABORT, 'a decided review record cannot be changed'); END",
)
_COLUMNS = "seg_sop_uid, series_uid, study_uid, annotator, submitted, reviewer, approved, comment, decided"


class ReviewState(enum.StrEnum):
    """Where a series stands: no label, a model's suggestion only, or its latest label's review state."""

    UNLABELLED = "unlabelled"
    SUGGESTED = "suggested"
    SUBMITTED = "submitted"
    APPROVED = "approved"
    REJECTED = "rejected"


@dataclass(frozen=True)
class Decision:
    """A reviewer's decision on one submitted label (times are UTC ISO 8601)."""

    reviewer: str
    approved: bool
    comment: str
    decided_at: str


@dataclass(frozen=True)
class Submission:
    """One saved label (a SEG in the store) submitted for review, with its decision once there is one."""

    seg_sop_uid: str
    series_uid: str
    study_uid: str
    annotator: str
    submitted_at: str
    decision: Decision | None = None

    @property
    def state(self) -> ReviewState:
        """``submitted`` until decided, then ``approved`` or ``rejected``."""
        if self.decision is None:
            return ReviewState.SUBMITTED
        return ReviewState.APPROVED if self.decision.approved else ReviewState.REJECTED


@dataclass(frozen=True)
class SeriesReview:
    """The review of an image series: its latest submission's state, every submission (oldest first), and the
    newest reviewer comment (what the annotator is shown when the case is opened)."""

    series_uid: str
    state: ReviewState
    history: tuple[Submission, ...]
    last_comment: str | None

    @property
    def latest(self) -> Submission:
        """The submission that sets the series' state."""
        return self.history[-1]


def series_state(review: SeriesReview | None, suggested: bool) -> ReviewState:
    """A series' state: its review's, else ``suggested`` when a model suggestion exists, else ``unlabelled``."""
    if review is not None:
        return review.state
    return ReviewState.SUGGESTED if suggested else ReviewState.UNLABELLED


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).isoformat(timespec="seconds")


def _submission(row: tuple[Any, ...]) -> Submission:
    sop, series, study, annotator, submitted, reviewer, approved, comment, decided = row
    decision = None if decided is None else Decision(reviewer, bool(approved), comment, _iso(decided))
    return Submission(sop, series, study, annotator, _iso(submitted), decision)


def _required(**values: str) -> None:
    for name, value in values.items():
        if not value or not value.strip():
            raise InvalidInputError(f"{name} is required and may not be blank")


class ReviewBook:
    """Review records of saved labels, persisted in a SQLite file.

    Args:
        path: the SQLite file (created with its folder when missing).
        reserve_s: how long after a rejection the series is kept for its annotator only.
        clock: seconds since the epoch (tests pass a settable one).
    """

    def __init__(
        self, path: Path, reserve_s: float = DEFAULT_RESERVE_S, clock: Callable[[], float] = time.time
    ) -> None:
        if reserve_s < 0:
            raise ValueError("reserve_s must be >= 0")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.reserve_s = float(reserve_s)
        self._clock = clock
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._lock = threading.Lock()

    def _rows(self, sql: str, *args: Any) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    def _find(self, seg_sop_uid: str) -> Submission | None:
        row = self._db.execute(f"SELECT {_COLUMNS} FROM submissions WHERE seg_sop_uid = ?", (seg_sop_uid,)).fetchone()
        return None if row is None else _submission(row)

    def submit(self, seg_sop_uid: str, series_uid: str, study_uid: str, annotator: str) -> Submission:
        """Submit a saved label for review; it supersedes the series' earlier submissions.

        Submitting a SEG that is already recorded (a repeated save of the same label) returns its record unchanged.

        Args:
            seg_sop_uid: the SEG's SOP Instance UID.
            series_uid: the image series the label is drawn on.
            study_uid: the study of that series.
            annotator: who saved the label.

        Raises:
            InvalidInputError: an argument is blank.
            ConflictError: the SEG is recorded for another series.
        """
        _required(seg_sop_uid=seg_sop_uid, series_uid=series_uid, study_uid=study_uid, annotator=annotator)
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                known = self._find(seg_sop_uid)
                if known is None:
                    self._db.execute(
                        "INSERT INTO submissions (seg_sop_uid, series_uid, study_uid, annotator, submitted) "
                        "VALUES (?, ?, ?, ?, ?)", (seg_sop_uid, series_uid, study_uid, annotator, now))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if known is None:
            return Submission(seg_sop_uid, series_uid, study_uid, annotator, _iso(now))
        if known.series_uid != series_uid:
            raise ConflictError(f"SEG {seg_sop_uid} is recorded as the label of series {known.series_uid}, not "
                                f"{series_uid}; a SEG labels one series")
        return known

    def decide(self, seg_sop_uid: str, reviewer: str, approve: bool, comment: str = "") -> Submission:
        """Approve or reject the submitted label ``seg_sop_uid``; the decided submission.

        Args:
            seg_sop_uid: the SEG's SOP Instance UID (see :meth:`queue`).
            reviewer: who decides.
            approve: ``True`` approves (the label counts for training), ``False`` rejects it.
            comment: what the annotator should correct; required to reject, optional to approve.

        Raises:
            InvalidInputError: a rejection without a comment, a comment that is too long, a blank reviewer.
            NotFoundError: no label with this SEG SOP Instance UID was submitted.
            ConflictError: the label was decided already, or a newer label of its series supersedes it.
        """
        _required(reviewer=reviewer)
        comment = comment.strip()
        if not approve and not comment:
            raise InvalidInputError("a rejection needs a comment that tells the annotator what to correct")
        if len(comment) > MAX_COMMENT_CHARS:
            raise InvalidInputError(f"the comment has {len(comment)} characters; at most {MAX_COMMENT_CHARS} allowed")
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                found = self._find(seg_sop_uid)
                self._check_decidable(seg_sop_uid, found)
                self._db.execute("UPDATE submissions SET reviewer = ?, approved = ?, comment = ?, decided = ? "
                                 "WHERE seg_sop_uid = ?", (reviewer, int(approve), comment, now, seg_sop_uid))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        assert found is not None
        return Submission(found.seg_sop_uid, found.series_uid, found.study_uid, found.annotator, found.submitted_at,
                          Decision(reviewer, approve, comment, _iso(now)))

    def _check_decidable(self, seg_sop_uid: str, found: Submission | None) -> None:
        """Raise unless ``found`` (the record of ``seg_sop_uid``) awaits a decision; call inside the transaction."""
        if found is None:
            raise NotFoundError(f"no label with SEG SOP Instance UID {seg_sop_uid} was submitted for review; "
                                "GET /hope/review/queue lists the labels awaiting review")
        if found.decision is not None:
            raise ConflictError(
                f"the label {seg_sop_uid} was {found.state} by {found.decision.reviewer} at "
                f"{found.decision.decided_at} already; a decision is final: the annotator saves a corrected label, "
                "which is reviewed anew")
        latest = self._db.execute("SELECT seg_sop_uid FROM latest WHERE series_uid = ?",
                                  (found.series_uid,)).fetchone()[0]
        if latest != seg_sop_uid:
            raise ConflictError(f"the label {seg_sop_uid} is superseded by a newer label of series "
                                f"{found.series_uid} (SEG {latest}); review that one")

    def state_of_series(self, series_uid: str) -> SeriesReview | None:
        """The review of ``series_uid``; ``None`` when no label of it was ever submitted."""
        history = tuple(_submission(row) for row in self._rows(
            f"SELECT {_COLUMNS} FROM submissions WHERE series_uid = ? ORDER BY seq", series_uid))
        if not history:
            return None
        comments = [s.decision.comment for s in history if s.decision is not None and s.decision.comment]
        return SeriesReview(series_uid, history[-1].state, history, comments[-1] if comments else None)

    def queue(self, limit: int = 50, offset: int = 0) -> list[Submission]:
        """Labels awaiting a decision (each series' latest submission, undecided), oldest first."""
        if limit < 1 or offset < 0:
            raise InvalidInputError(f"limit must be >= 1 and offset >= 0, got limit={limit}, offset={offset}")
        rows = self._rows(f"SELECT {_COLUMNS} FROM latest WHERE decided IS NULL ORDER BY seq LIMIT ? OFFSET ?",
                          limit, offset)
        return [_submission(row) for row in rows]

    def is_approved(self, seg_sop_uid: str) -> bool:
        """Whether the SEG was approved (the datastore's label gate: only approved SEGs count)."""
        return bool(self._rows("SELECT 1 FROM submissions WHERE seg_sop_uid = ? AND approved = 1", seg_sop_uid))

    def approved_segs(self) -> set[str]:
        """SOP Instance UIDs of every approved SEG, superseded ones included."""
        return {row[0] for row in self._rows("SELECT seg_sop_uid FROM submissions WHERE approved = 1")}

    def rejected_for(self, annotator: str) -> list[str]:
        """Series whose latest label, saved by ``annotator``, was rejected: theirs to correct, oldest decision first."""
        rows = self._rows("SELECT series_uid FROM latest WHERE approved = 0 AND annotator = ? ORDER BY decided, seq",
                          annotator)
        return [row[0] for row in rows]

    def withheld_from(self, user: str) -> set[str]:
        """Series no one but their annotator may be handed now (a rejection younger than ``reserve_s``), and series
        whose latest label awaits review or is approved (no one is handed those)."""
        since = self._clock() - self.reserve_s
        rows = self._rows("SELECT series_uid FROM latest WHERE approved IS NULL OR approved = 1 "
                          "OR (annotator != ? AND decided > ?)", user, since)
        return {row[0] for row in rows}

    def submissions(self) -> list[Submission]:
        """Every submission with its decision, if any, oldest first (the team's labels and rejection rates)."""
        return [_submission(row) for row in self._rows(f"SELECT {_COLUMNS} FROM submissions ORDER BY seq")]

    def latest_states(self) -> dict[str, ReviewState]:
        """The review state of every series that has a submitted label, keyed by series UID."""
        states = {None: ReviewState.SUBMITTED, 1: ReviewState.APPROVED, 0: ReviewState.REJECTED}
        return {row[0]: states[row[1]] for row in self._rows("SELECT series_uid, approved FROM latest")}

    def counts(self) -> dict[ReviewState, int]:
        """How many series' latest labels are submitted, approved and rejected."""
        rows = self._rows("SELECT approved, COUNT(*) FROM latest GROUP BY approved")
        by_value = {value: count for value, count in rows}
        return {ReviewState.SUBMITTED: by_value.get(None, 0), ReviewState.APPROVED: by_value.get(1, 0),
                ReviewState.REJECTED: by_value.get(0, 0)}
