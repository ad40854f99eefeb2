"""The base of the plugin's durable stores: one SQLite connection each, shared by threads under a lock."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any


class SqliteStore:
    """An autocommit connection to ``path`` (created with its folder), whose tables are :attr:`schema`.

    Several stores may share one file: each has its own connection, WAL mode lets them read while another
    writes, and a busy timeout makes writers wait for each other instead of failing.
    """

    schema = ""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), timeout=10.0, check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.executescript(self.schema)

    def _query(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        """Rows of one statement."""
        with self._lock:
            return self._db.execute(sql, params).fetchall()

    def _execute(self, sql: str, params: Sequence[Any] = ()) -> int:
        """Run one statement (committed at once); the number of rows it changed."""
        with self._lock:
            return self._db.execute(sql, params).rowcount

    def close(self) -> None:
        """Close the connection."""
        with self._lock:
            self._db.close()
