"""Who is annotating which series: a series handed to an annotator is leased to them for a while.

The rule, shared by every strategy:

* when a strategy hands series ``S`` to client ``A``, ``S`` is leased to ``A`` for ``duration_s`` (30 min by
  default); no other client is handed ``S`` while the lease lasts;
* a lease ends when a final label of ``S`` is saved (:meth:`LeaseBook.release`, or lazily through
  :meth:`LeaseBook.end_final` on every strategy call), or when it expires;
* a client holds at most ``max_per_client`` leases: asking for another series gives back its oldest one (a client
  that asks for the next series has moved on);
* flagged series and series that already have a final label are never candidates (:func:`candidates`).

Leases live in a SQLite file, so they survive a restart and are shared by every thread and process of the server.
Taking a lease is one ``BEGIN IMMEDIATE`` transaction: two clients racing for one series cannot both win.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ANONYMOUS = "anonymous"


@dataclass(frozen=True)
class Lease:
    """One series leased to one client."""

    series_uid: str
    client_id: str
    task: str
    strategy: str
    granted: float
    expires: float


class LeaseBook:
    """Leases of series to annotators (clients), persisted in a SQLite file."""

    def __init__(
        self,
        path: Path,
        duration_s: float = 1800.0,
        max_per_client: int = 1,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if duration_s <= 0 or max_per_client < 1:
            raise ValueError("a lease needs duration_s > 0 and max_per_client >= 1")
        path.parent.mkdir(parents=True, exist_ok=True)
        self.duration_s = float(duration_s)
        self.max_per_client = int(max_per_client)
        self._clock = clock
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS leases (series_uid TEXT PRIMARY KEY, client_id TEXT, task TEXT, "
            "strategy TEXT, granted REAL, expires REAL)"
        )
        self._lock = threading.Lock()

    def try_acquire(self, series_uid: str, client_id: str, task: str, strategy: str = "") -> Lease | None:
        """Lease ``series_uid`` to ``client_id`` (or renew its own lease); ``None`` if another client holds it."""
        now = self._clock()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM leases WHERE expires <= ?", (now,))
                holder = self._db.execute("SELECT client_id FROM leases WHERE series_uid = ?", (series_uid,)).fetchone()
                if holder and holder[0] != client_id:
                    self._db.execute("COMMIT")
                    return None
                lease = Lease(series_uid, client_id, task, strategy, now, now + self.duration_s)
                self._db.execute(
                    "INSERT OR REPLACE INTO leases VALUES (?, ?, ?, ?, ?, ?)",
                    (lease.series_uid, lease.client_id, lease.task, lease.strategy, lease.granted, lease.expires),
                )
                self._db.execute(
                    "DELETE FROM leases WHERE client_id = ? AND series_uid NOT IN (SELECT series_uid FROM leases "
                    "WHERE client_id = ? ORDER BY granted DESC, rowid DESC LIMIT ?)",
                    (client_id, client_id, self.max_per_client),
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return lease

    def release(self, series_uid: str) -> bool:
        """End the lease of ``series_uid`` (its final label was saved); ``True`` if there was one."""
        with self._lock:
            return self._db.execute("DELETE FROM leases WHERE series_uid = ?", (series_uid,)).rowcount > 0

    def end_final(self, labelled: Iterable[str]) -> int:
        """End the leases of every series in ``labelled`` (those with a final label); return how many ended."""
        uids = [(uid,) for uid in labelled]
        with self._lock:
            before = self._db.total_changes
            self._db.executemany("DELETE FROM leases WHERE series_uid = ?", uids)
            return self._db.total_changes - before

    def active(self) -> dict[str, Lease]:
        """Leases that have not expired, keyed by series UID."""
        with self._lock:
            rows = self._db.execute(
                "SELECT series_uid, client_id, task, strategy, granted, expires FROM leases WHERE expires > ?",
                (self._clock(),),
            ).fetchall()
        return {row[0]: Lease(*row) for row in rows}

    def held_by_others(self, client_id: str) -> dict[str, Lease]:
        """Active leases of every client except ``client_id``."""
        return {uid: lease for uid, lease in self.active().items() if lease.client_id != client_id}


def client_of(request: dict[str, Any]) -> str:
    """The requesting client: ``client_id`` (MONAI Label's clients send it), else ``anonymous``.

    Clients that send none share one identity, and so one lease.
    """
    return str(request.get("client_id") or ANONYMOUS)


def candidates(datastore: Any, leases: LeaseBook, request: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Series a strategy may hand out now (no final label, not flagged, not leased to anyone), and the labelled ones.

    Uses ``datastore.get_unlabeled_images(label_tag, labels)``, ``datastore.get_labeled_images(label_tag, labels)``
    (their leases end here, so a final label saved by any route ends its lease) and ``datastore.flagged`` (a mapping
    or set of series UIDs; optional). The client's own lease is no candidate either: asking again means "next".
    """
    tag, labels = request.get("label_tag"), request.get("labels")
    labelled = list(datastore.get_labeled_images(tag, labels))
    leases.end_final(labelled)
    flagged = set(getattr(datastore, "flagged", ()) or ())
    leased = set(leases.active())
    free = [uid for uid in datastore.get_unlabeled_images(tag, labels) if uid not in flagged and uid not in leased]
    return free, labelled
