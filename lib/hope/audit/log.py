"""The audit log: an append-only record of who did what on the server (labels, reviews, training, models, cases).

Each entry says when (UTC, ISO 8601), who (the request's user, and whether a checked token vouches for the name),
what (an :class:`AuditAction`), on which study and series, and a JSON ``detail``. Entries live in a SQLite file
whose triggers abort every ``UPDATE`` and ``DELETE`` of the table, so no code path (and no SQL typed by hand) can
change or remove one. Reads are newest first, filtered and paged.
"""

from __future__ import annotations

import enum
import json
import sqlite3
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hope.errors import InvalidInputError

#: The most entries one query returns.
MAX_LIMIT = 1000

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS audit (id INTEGER PRIMARY KEY AUTOINCREMENT, at TEXT NOT NULL, user TEXT NOT NULL, "
    "verified INTEGER NOT NULL, action TEXT NOT NULL, study_uid TEXT, series_uid TEXT, detail TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS audit_study ON audit (study_uid)",
    "CREATE INDEX IF NOT EXISTS audit_user ON audit (user)",
    "CREATE INDEX IF NOT EXISTS audit_action ON audit (action)",
    "CREATE INDEX IF NOT EXISTS audit_at ON audit (at)",
    "CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: an entry cannot be changed'); END",
    "CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit "
    "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only: an entry cannot be deleted'); END",
)


class AuditAction(enum.StrEnum):
    """What an audit entry records."""

    LABEL_SAVED = "label_saved"
    LABEL_SUBMITTED = "label_submitted"
    LABEL_APPROVED = "label_approved"
    LABEL_REJECTED = "label_rejected"
    TRAINING_STARTED = "training_started"
    VERSION_PINNED = "version_pinned"
    AUTO_RETRAIN_SWITCHED = "auto_retrain_switched"
    CASE_RECORD_WRITTEN = "case_record_written"
    CASES_IMPORTED = "cases_imported"
    OUTBOX_EVENT_RETRIED = "outbox_event_retried"


@dataclass(frozen=True)
class AuditEntry:
    """One recorded action; ``at`` is UTC ISO 8601 with microseconds."""

    id: int
    at: str
    user: str
    verified: bool
    action: AuditAction
    study_uid: str | None
    series_uid: str | None
    detail: dict[str, Any] = field(default_factory=dict)


def utc_iso(moment: datetime) -> str:
    """``moment`` as the log writes times (UTC, microseconds, ``+00:00``), so that text order is time order; a naive
    ``moment`` is taken as UTC."""
    aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).isoformat(timespec="microseconds")


def _now() -> datetime:
    return datetime.now(UTC)


def _action(value: str) -> AuditAction:
    try:
        return AuditAction(value)
    except ValueError:
        raise InvalidInputError(f"unknown audit action {value!r}; known: {', '.join(AuditAction)}") from None


class AuditLog:
    """The append-only audit log in a SQLite file (shared by every thread and process of the server).

    Args:
        path: the SQLite file (created with its folder when missing).
        clock: the current time (tests pass a settable one).
    """

    def __init__(self, path: Path, clock: Callable[[], datetime] = _now) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._clock = clock
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        for statement in _SCHEMA:
            self._db.execute(statement)
        self._lock = threading.Lock()

    def record(
        self,
        user: str,
        verified: bool,
        action: AuditAction,
        *,
        study_uid: str | None = None,
        series_uid: str | None = None,
        detail: Mapping[str, Any] | None = None,
    ) -> AuditEntry:
        """Append one entry; the stored entry.

        Args:
            user: who did it (the request identity's user).
            verified: whether a checked token vouches for ``user`` (``False`` on the loopback demo).
            action: what was done.
            study_uid: the study it concerns, if any.
            series_uid: the series it concerns, if any.
            detail: anything else worth keeping (JSON-serialisable: model version, comment, counts).

        Raises:
            InvalidInputError: ``user`` is blank or ``action`` is not an :class:`AuditAction`.
        """
        if not user or not user.strip():
            raise InvalidInputError("an audit entry needs the user who acted")
        action = _action(action)
        content = dict(detail or {})
        at = utc_iso(self._clock())
        with self._lock:
            cursor = self._db.execute(
                "INSERT INTO audit (at, user, verified, action, study_uid, series_uid, detail) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (at, user, int(verified), action.value, study_uid, series_uid, json.dumps(content, sort_keys=True)),
            )
        return AuditEntry(int(cursor.lastrowid or 0), at, user, bool(verified), action, study_uid, series_uid, content)

    def query(
        self,
        study_uid: str | None = None,
        user: str | None = None,
        action: AuditAction | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        limit: int = 100,
        offset: int = 0,
    ) -> list[AuditEntry]:
        """Entries matching every filter given, newest first.

        Args:
            study_uid: only entries about this study.
            user: only entries by this user.
            action: only entries of this action.
            since: only entries at or after this time (naive: UTC).
            until: only entries before this time (naive: UTC).
            limit: at most this many entries (1 to :data:`MAX_LIMIT`).
            offset: skip this many of the newest matching entries first (paging).

        Raises:
            InvalidInputError: ``limit`` or ``offset`` out of range, ``since`` after ``until``, an unknown action.
        """
        if not 1 <= limit <= MAX_LIMIT or offset < 0:
            raise InvalidInputError(f"limit must lie in 1..{MAX_LIMIT} and offset be >= 0, got limit={limit}, "
                                    f"offset={offset}")
        if since is not None and until is not None and utc_iso(since) > utc_iso(until):
            raise InvalidInputError(f"since ({utc_iso(since)}) is after until ({utc_iso(until)})")
        filters = {
            "study_uid = ?": study_uid,
            "user = ?": user,
            "action = ?": _action(action).value if action is not None else None,
            "at >= ?": utc_iso(since) if since is not None else None,
            "at < ?": utc_iso(until) if until is not None else None,
        }
        used = {clause: value for clause, value in filters.items() if value is not None}
        where = f"WHERE {' AND '.join(used)}" if used else ""
        with self._lock:
            rows = self._db.execute(
                f"SELECT id, at, user, verified, action, study_uid, series_uid, detail FROM audit {where} "
                "ORDER BY id DESC LIMIT ? OFFSET ?", (*used.values(), limit, offset)).fetchall()
        return [AuditEntry(row[0], row[1], row[2], bool(row[3]), AuditAction(row[4]), row[5], row[6],
                           json.loads(row[7])) for row in rows]
