"""The audit log: entries are appended, never changed or removed (even by hand-typed SQL), and read back filtered."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from hope.audit import AuditAction, AuditLog
from hope.errors import InvalidInputError

START = datetime(2025, 3, 1, 12, 0, 0, tzinfo=UTC)


class Clock:
    """A settable clock that advances one minute per reading."""

    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        now, self.now = self.now, self.now + timedelta(minutes=1)
        return now


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "audit" / "audit.sqlite"


@pytest.fixture
def log(path: Path) -> AuditLog:
    return AuditLog(path, clock=Clock())


def _fill(log: AuditLog) -> None:
    log.record("ann", True, AuditAction.LABEL_SUBMITTED, study_uid="1.1", series_uid="1.1.1",
               detail={"seg_sop_uid": "9.1"})  # 12:00
    log.record("rev", True, AuditAction.LABEL_REJECTED, study_uid="1.1", series_uid="1.1.1",
               detail={"comment": "redo"})  # 12:01
    log.record("admin", False, AuditAction.TRAINING_STARTED, detail={"task": "spine_ct"})  # 12:02
    log.record("ann", True, AuditAction.LABEL_SUBMITTED, study_uid="1.2", series_uid="1.2.1")  # 12:03
    log.record("admin", False, AuditAction.VERSION_PINNED, detail={"version": "v0003"})  # 12:04


def test_an_entry_is_stored_with_time_user_and_detail(log: AuditLog, path: Path) -> None:
    entry = log.record("rev", True, AuditAction.LABEL_APPROVED, study_uid="1.1", series_uid="1.1.1",
                       detail={"seg_sop_uid": "9.1", "comment": ""})
    assert entry.at == "2025-03-01T12:00:00.000000+00:00"
    assert (entry.user, entry.verified, entry.action) == ("rev", True, AuditAction.LABEL_APPROVED)
    [read] = AuditLog(path).query()  # and a restarted log reads it back
    assert read == entry


def test_entries_cannot_be_changed_or_deleted_at_the_sqlite_level(log: AuditLog, path: Path) -> None:
    _fill(log)
    db = sqlite3.connect(str(path))
    with pytest.raises(sqlite3.IntegrityError, match="append-only: an entry cannot be changed"):
        db.execute("UPDATE audit SET user = 'someone else'")
    with pytest.raises(sqlite3.IntegrityError, match="append-only: an entry cannot be deleted"):
        db.execute("DELETE FROM audit WHERE user = 'admin'")
    db.close()
    assert len(log.query()) == 5


def test_query_filters_by_study_user_action_and_time(log: AuditLog) -> None:
    _fill(log)
    assert [e.id for e in log.query()] == [5, 4, 3, 2, 1]  # newest first
    assert [e.id for e in log.query(study_uid="1.1")] == [2, 1]
    assert [e.id for e in log.query(user="ann")] == [4, 1]
    assert [e.id for e in log.query(action=AuditAction.LABEL_SUBMITTED)] == [4, 1]
    assert [e.id for e in log.query(user="ann", study_uid="1.2")] == [4]
    since, until = START + timedelta(minutes=1), START + timedelta(minutes=3)
    assert [e.id for e in log.query(since=since, until=until)] == [3, 2]  # since inclusive, until exclusive
    cet = timezone(timedelta(hours=1))
    assert [e.id for e in log.query(since=datetime(2025, 3, 1, 13, 3, tzinfo=cet))] == [5, 4]
    assert [e.id for e in log.query(since=datetime(2025, 3, 1, 12, 4))] == [5]  # naive: UTC
    assert log.query(user="nobody") == []


def test_query_pages(log: AuditLog) -> None:
    _fill(log)
    assert [e.id for e in log.query(limit=2)] == [5, 4]
    assert [e.id for e in log.query(limit=2, offset=2)] == [3, 2]
    assert [e.id for e in log.query(limit=2, offset=4)] == [1]
    for bad in ({"limit": 0}, {"limit": 1001}, {"offset": -1}):
        with pytest.raises(InvalidInputError, match="limit must lie in 1..1000"):
            log.query(**bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="is after until"):
        log.query(since=START, until=START - timedelta(seconds=1))


def test_a_record_needs_a_user_and_a_known_action(log: AuditLog) -> None:
    with pytest.raises(InvalidInputError, match="needs the user"):
        log.record(" ", True, AuditAction.CASES_IMPORTED)
    with pytest.raises(InvalidInputError, match="unknown audit action 'label_deleted'"):
        log.record("ann", True, "label_deleted")  # type: ignore[arg-type]
    assert log.query() == []
