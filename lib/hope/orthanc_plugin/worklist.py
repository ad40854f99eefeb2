"""The durable to-do list of resources that became stable: series to read, validate and report, and (with
pseudonymisation on) studies to pseudonymise.

Orthanc's change callback only adds to it (fast, and it survives a restart). A series that becomes stable again
while it is being processed (new instances) gets a new *generation*, so the worker's ``remove`` of the old
generation leaves it queued and it is processed again.
"""

from __future__ import annotations

from dataclasses import dataclass

from hope.orthanc_plugin.sqlite_store import SqliteStore


@dataclass(frozen=True)
class WorkItem:
    """One resource to process: its Orthanc id, generation, the failed attempts so far, and its level."""

    orthanc_id: str
    generation: int
    attempts: int
    level: str = "series"


class Worklist(SqliteStore):
    """Orthanc series ids waiting for the worker, each with a retry time."""

    schema = """
        CREATE TABLE IF NOT EXISTS worklist (
            orthanc_id TEXT PRIMARY KEY,
            generation INTEGER NOT NULL DEFAULT 1,
            attempts INTEGER NOT NULL DEFAULT 0,
            next_attempt REAL NOT NULL DEFAULT 0,
            last_error TEXT,
            level TEXT NOT NULL DEFAULT 'series'
        );
    """

    def add(self, orthanc_id: str, level: str = "series") -> None:
        """Queue a resource, due now; one already queued gets a new generation and a fresh set of attempts."""
        self._execute(
            "INSERT INTO worklist (orthanc_id, level) VALUES (?, ?) ON CONFLICT (orthanc_id) DO UPDATE SET "
            "generation = generation + 1, attempts = 0, next_attempt = 0, last_error = NULL",
            (orthanc_id, level),
        )

    def due(self, now: float) -> list[WorkItem]:
        """Items whose retry time has come, in the order they were queued."""
        rows = self._query(
            "SELECT orthanc_id, generation, attempts, level FROM worklist WHERE next_attempt <= ? ORDER BY rowid",
            (now,),
        )
        return [WorkItem(r["orthanc_id"], r["generation"], r["attempts"], r["level"]) for r in rows]

    def next_due(self) -> float | None:
        """The earliest retry time of any item; ``None`` when the list is empty."""
        earliest = self._query("SELECT MIN(next_attempt) AS t FROM worklist")[0]["t"]
        return None if earliest is None else float(earliest)

    def failed(self, item: WorkItem, error: str, retry_at: float) -> None:
        """Record a failed attempt on ``item`` and when to try again."""
        self._execute(
            "UPDATE worklist SET attempts = attempts + 1, next_attempt = ?, last_error = ? "
            "WHERE orthanc_id = ? AND generation = ?",
            (retry_at, error, item.orthanc_id, item.generation),
        )

    def remove(self, item: WorkItem) -> None:
        """Done with ``item`` (or given up on it); a newer generation of the same series stays queued."""
        self._execute(
            "DELETE FROM worklist WHERE orthanc_id = ? AND generation = ?", (item.orthanc_id, item.generation)
        )

    def __len__(self) -> int:
        return int(self._query("SELECT COUNT(*) AS n FROM worklist")[0]["n"])
