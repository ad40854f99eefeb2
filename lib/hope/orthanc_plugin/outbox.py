"""The durable outbox: events for HOPE, stored once per id, kept until HOPE has acknowledged them.

An event is ``pending`` until HOPE answers 2xx (``delivered``) or refuses it as malformed (``rejected``, which
retrying cannot fix). Rows are never deleted, so an event id that was delivered once is never queued again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hope.orthanc_plugin.sqlite_store import SqliteStore

PENDING, DELIVERED, REJECTED = "pending", "delivered", "rejected"
STATUSES = (PENDING, DELIVERED, REJECTED)


@dataclass(frozen=True)
class OutboxEvent:
    """One stored event: its id, its JSON body, how often delivery failed, why it last failed, and its status."""

    id: str
    body: dict[str, Any]
    attempts: int
    last_error: str | None
    status: str = PENDING


class Outbox(SqliteStore):
    """Events keyed by their id (``PRIMARY KEY``), in the order they were first added."""

    schema = """
        CREATE TABLE IF NOT EXISTS outbox (
            id TEXT PRIMARY KEY,
            type TEXT NOT NULL,
            body TEXT NOT NULL,
            status TEXT NOT NULL DEFAULT 'pending',
            attempts INTEGER NOT NULL DEFAULT 0,
            last_error TEXT,
            created REAL NOT NULL,
            finished REAL
        );
        CREATE INDEX IF NOT EXISTS outbox_status ON outbox (status);
    """

    def add(self, event: Mapping[str, Any]) -> bool:
        """Store ``event`` (it needs ``id`` and ``type``) as pending; ``False`` if its id was stored before."""
        return (
            self._execute(
                "INSERT OR IGNORE INTO outbox (id, type, body, created) VALUES (?, ?, ?, ?)",
                (event["id"], event["type"], json.dumps(dict(event)), time.time()),
            )
            == 1
        )

    def pending(self, limit: int = 100) -> list[OutboxEvent]:
        """The oldest ``limit`` pending events, oldest first."""
        rows = self._query(
            "SELECT id, body, attempts, last_error FROM outbox WHERE status = ? ORDER BY rowid LIMIT ?",
            (PENDING, limit),
        )
        return [OutboxEvent(r["id"], json.loads(r["body"]), r["attempts"], r["last_error"]) for r in rows]

    def status(self, event_id: str) -> str | None:
        """``pending``, ``delivered`` or ``rejected``; ``None`` for an unknown id."""
        rows = self._query("SELECT status FROM outbox WHERE id = ?", (event_id,))
        return rows[0]["status"] if rows else None

    def mark_delivered(self, event_id: str) -> None:
        """HOPE acknowledged the event."""
        self._finish(event_id, DELIVERED, None)

    def mark_rejected(self, event_id: str, error: str) -> None:
        """HOPE refused the event for good (malformed); it is kept with the reason and not retried."""
        self._finish(event_id, REJECTED, error)

    def mark_failed(self, event_id: str, error: str) -> None:
        """A delivery attempt failed; the event stays pending with the reason."""
        self._execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ? WHERE id = ? AND status = ?",
            (error, event_id, PENDING),
        )

    def counts(self) -> dict[str, int]:
        """Number of events per status (every status present, possibly 0)."""
        rows = self._query("SELECT status, COUNT(*) AS n FROM outbox GROUP BY status")
        return {status: 0 for status in STATUSES} | {r["status"]: r["n"] for r in rows}

    def troubled(self, limit: int = 20) -> list[OutboxEvent]:
        """Pending events whose delivery failed at least once and rejected events, oldest first."""
        rows = self._query(
            "SELECT id, body, attempts, last_error, status FROM outbox "
            "WHERE (status = ? AND attempts > 0) OR status = ? ORDER BY rowid LIMIT ?",
            (PENDING, REJECTED, limit),
        )
        return [OutboxEvent(r["id"], json.loads(r["body"]), r["attempts"], r["last_error"], r["status"])
                for r in rows]

    def retry(self, event_id: str) -> bool:
        """Make a rejected event pending again (an admin fixed the cause); ``False`` unless it was rejected.

        Its last error is kept until the next attempt replaces it. Delivered and pending events are left alone.
        """
        return self._execute(
            "UPDATE outbox SET status = ?, attempts = 0, finished = NULL WHERE id = ? AND status = ?",
            (PENDING, event_id, REJECTED),
        ) == 1

    def _finish(self, event_id: str, status: str, error: str | None) -> None:
        self._execute(
            "UPDATE outbox SET status = ?, last_error = COALESCE(?, last_error), finished = ? "
            "WHERE id = ? AND status = ?",
            (status, error, time.time(), event_id, PENDING),
        )
