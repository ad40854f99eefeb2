"""Per-series active-learning scores, one row per (task, series, model version), in a SQLite file.

Background scoring writes them (:mod:`hope.activelearning.scoring`); strategies read them
(:mod:`hope.activelearning.strategies`). A row may be filled in several writes: a field left ``None`` in a later
write keeps its earlier value.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

_NUMBERS = ("epistemic", "tta", "tumour", "tumour_volume_ml", "dice")
_COLUMNS = (*_NUMBERS, "features", "dice_per_label")


@dataclass
class SeriesScores:
    """What is known about one series under one model version; ``None`` means not computed.

    * ``epistemic``: mean voxel entropy of the mean of MC-dropout samples (nats);
    * ``tta``: mean voxel variance of the softmax under test-time flips, summed over classes;
    * ``tumour``: tumour likelihood in ``[0, 1]`` (:func:`~hope.activelearning.uncertainty.tumor_likelihood`);
    * ``tumour_volume_ml``: expected tumour volume (sum of tumour probabilities times the voxel volume);
    * ``features``: diversity descriptor (:func:`~hope.activelearning.uncertainty.feature_vector`);
    * ``dice`` / ``dice_per_label``: agreement of the final label with the suggestion this version made.
    """

    task: str
    series_uid: str
    model_version: str
    epistemic: float | None = None
    tta: float | None = None
    tumour: float | None = None
    tumour_volume_ml: float | None = None
    features: list[float] | None = None
    dice: float | None = None
    dice_per_label: dict[str, float] | None = field(default=None)
    updated: float = 0.0


class ScoreStore:
    """Thread-safe store of :class:`SeriesScores` in a SQLite file (created with its folder if missing)."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None, timeout=30)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS scores (task TEXT, series_uid TEXT, model_version TEXT, "
            + ", ".join(f"{c} {'TEXT' if c in ('features', 'dice_per_label') else 'REAL'}" for c in _COLUMNS)
            + ", updated REAL, PRIMARY KEY (task, series_uid, model_version))"
        )
        self._lock = threading.Lock()
        self._writes = 0  # this connection's writes; PRAGMA data_version counts those of other connections
        self._cached: dict[tuple[str, tuple[str, ...]], tuple[tuple[int, int], list[SeriesScores]]] = {}

    def put(self, scores: SeriesScores) -> None:
        """Insert or update one row; fields that are ``None`` keep their stored value."""
        values = [getattr(scores, c) for c in _NUMBERS]
        values += [None if scores.features is None else json.dumps([float(v) for v in scores.features])]
        values += [None if scores.dice_per_label is None else json.dumps(scores.dice_per_label)]
        updates = ", ".join(f"{c} = COALESCE(excluded.{c}, {c})" for c in _COLUMNS)
        with self._lock:
            self._db.execute(
                f"INSERT INTO scores (task, series_uid, model_version, {', '.join(_COLUMNS)}, updated) "
                f"VALUES ({', '.join('?' * (len(_COLUMNS) + 4))}) "
                f"ON CONFLICT (task, series_uid, model_version) DO UPDATE SET {updates}, updated = excluded.updated",
                (scores.task, scores.series_uid, scores.model_version, *values, time.time()),
            )
            self._writes += 1

    def get(self, task: str, series_uid: str, model_version: str) -> SeriesScores | None:
        """The row of one series under one model version, or ``None``."""
        rows = self._select("task = ? AND series_uid = ? AND model_version = ?", (task, series_uid, model_version))
        return rows[0] if rows else None

    def for_version(self, task: str, model_version: str) -> dict[str, SeriesScores]:
        """Every scored series of ``task`` under ``model_version``, keyed by series UID."""
        return {s.series_uid: s for s in self._select("task = ? AND model_version = ?", (task, model_version),
                                                      cache=True)}

    def newest(self, task: str) -> dict[str, SeriesScores]:
        """Per series of ``task``, its row of the newest model version (versions sort as ``v0001``, ``v0002``)."""
        rows = self._select("task = ?", (task,), cache=True)
        out: dict[str, SeriesScores] = {}
        for row in sorted(rows, key=lambda s: s.model_version):
            out[row.series_uid] = row
        return out

    def versions(self, task: str) -> list[str]:
        """Model versions of ``task`` that have scores, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT DISTINCT model_version FROM scores WHERE task = ?", (task,)).fetchall()
        return sorted(r[0] for r in rows)

    def missing(self, task: str, model_version: str, series_uids: Iterable[str], field_name: str) -> list[str]:
        """Those of ``series_uids`` (order kept) whose ``field_name`` is not stored under ``model_version``."""
        if field_name not in _COLUMNS:
            raise ValueError(f"unknown score field {field_name!r}; known: {', '.join(_COLUMNS)}")
        have = self.for_version(task, model_version)
        return [uid for uid in series_uids if uid not in have or getattr(have[uid], field_name) is None]

    def _select(self, where: str, args: tuple[str, ...], cache: bool = False) -> list[SeriesScores]:
        """Rows matching ``where``; with ``cache``, parsed once and answered again until the database changes (a
        strategy reads every row of a version per request: thousands of feature vectors to parse)."""
        with self._lock:
            stamp = (int(self._db.execute("PRAGMA data_version").fetchone()[0]), self._writes)
            kept = self._cached.get((where, args)) if cache else None
            if kept is not None and kept[0] == stamp:
                return list(kept[1])
            rows = self._db.execute(
                f"SELECT task, series_uid, model_version, {', '.join(_COLUMNS)}, updated FROM scores WHERE {where}",
                args,
            ).fetchall()
        out = []
        for row in rows:
            record = dict(zip(("task", "series_uid", "model_version", *_COLUMNS, "updated"), row, strict=True))
            for key in ("features", "dice_per_label"):
                record[key] = None if record[key] is None else json.loads(record[key])
            out.append(SeriesScores(**record))
        if cache:
            with self._lock:
                self._cached[(where, args)] = (stamp, out)
        return list(out)
