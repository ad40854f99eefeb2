"""A durable record of the store events HOPE has handled, so that a repeated event has no further effect."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path


class EventLog:
    """Event ids seen, in a SQLite file; :meth:`first_time` is atomic across threads and restarts."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("CREATE TABLE IF NOT EXISTS events (id TEXT PRIMARY KEY, type TEXT, received REAL)")
        self._lock = threading.Lock()

    def first_time(self, event_id: str, event_type: str) -> bool:
        """Record ``event_id``; ``True`` if it was new, ``False`` if it had been seen before."""
        with self._lock:
            cursor = self._db.execute(
                "INSERT OR IGNORE INTO events (id, type, received) VALUES (?, ?, ?)",
                (event_id, event_type, time.time()),
            )
            return cursor.rowcount == 1
