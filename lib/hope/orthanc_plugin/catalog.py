"""What the plugin knows about the store: validated image series and the SEGs that label them."""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hope.orthanc_plugin.events import SEG_STORED, SERIES_STABLE
from hope.orthanc_plugin.sqlite_store import SqliteStore


@dataclass(frozen=True)
class SeriesRecord:
    """An image series as last validated."""

    series_uid: str
    study_uid: str
    modality: str
    orthanc_id: str
    valid: bool
    reasons: tuple[str, ...]


class Catalog(SqliteStore):
    """Image series by SeriesInstanceUID, and SEG series with the series they reference."""

    schema = """
        CREATE TABLE IF NOT EXISTS series (
            series_uid TEXT PRIMARY KEY,
            study_uid TEXT NOT NULL,
            modality TEXT NOT NULL,
            orthanc_id TEXT NOT NULL,
            valid INTEGER NOT NULL,
            reasons TEXT NOT NULL,
            updated REAL NOT NULL
        );
        CREATE TABLE IF NOT EXISTS segs (
            series_uid TEXT PRIMARY KEY,
            referenced_series_uid TEXT,
            orthanc_id TEXT NOT NULL,
            updated REAL NOT NULL
        );
    """

    def record(self, event: Mapping[str, Any]) -> None:
        """Remember what a ``series_stable`` or ``seg_stored`` event says (the latest event wins)."""
        if event["type"] == SERIES_STABLE:
            self._execute(
                "INSERT INTO series (series_uid, study_uid, modality, orthanc_id, valid, reasons, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (series_uid) DO UPDATE SET study_uid = excluded.study_uid, "
                "modality = excluded.modality, orthanc_id = excluded.orthanc_id, valid = excluded.valid, "
                "reasons = excluded.reasons, updated = excluded.updated",
                (
                    event["series_uid"],
                    event["study_uid"],
                    event["modality"],
                    event["orthanc_id"],
                    int(event["valid"]),
                    json.dumps(list(event["reasons"])),
                    time.time(),
                ),
            )
        elif event["type"] == SEG_STORED:
            self._execute(
                "INSERT OR REPLACE INTO segs (series_uid, referenced_series_uid, orthanc_id, updated) "
                "VALUES (?, ?, ?, ?)",
                (event["series_uid"], event["referenced_series_uid"], event["orthanc_id"], time.time()),
            )
        else:
            raise ValueError(f"unknown event type {event['type']!r}")

    def series(self, series_uid: str) -> SeriesRecord | None:
        """The image series with this SeriesInstanceUID, if the plugin has seen it."""
        rows = self._query("SELECT * FROM series WHERE series_uid = ?", (series_uid,))
        return _record(rows[0]) if rows else None

    def all_series(self) -> list[SeriesRecord]:
        """Every image series seen, in the order first seen."""
        return [_record(r) for r in self._query("SELECT * FROM series ORDER BY rowid")]

    def labelled(self) -> set[str]:
        """SeriesInstanceUIDs that some stored SEG references."""
        rows = self._query(
            "SELECT DISTINCT referenced_series_uid AS uid FROM segs WHERE referenced_series_uid IS NOT NULL"
        )
        return {r["uid"] for r in rows}


def _record(row: sqlite3.Row) -> SeriesRecord:
    return SeriesRecord(
        series_uid=row["series_uid"],
        study_uid=row["study_uid"],
        modality=row["modality"],
        orthanc_id=row["orthanc_id"],
        valid=bool(row["valid"]),
        reasons=tuple(json.loads(row["reasons"])),
    )
