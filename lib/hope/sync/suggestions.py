"""Suggestions computed ahead of time, so an annotator who opens a series gets one at once.

A suggestion is the output of one task's model on one series, kept as a file and tied to the version of the model
that made it. When a new model is published, suggestions of the old version stop being served and are computed
again in the background.

The index of ready suggestions is kept in ``<folder>/index.json`` (written atomically after each new suggestion), so
they are served again after a restart. The suggestion files are ``<folder>/<task>/<series_uid>.<version><suffixes>``;
the index, not the file name, says which task, series and version a file holds. At start, files the index does not
list (older versions of the same series, files left by an interrupted write) are deleted.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from hope import fileio

logger = logging.getLogger(__name__)

# (task, series_uid) -> path of a label file produced by the task's model (the caller may keep or delete it)
InferFn = Callable[[str, str], str]
VersionFn = Callable[[str], str | None]


@dataclass(frozen=True)
class Suggestion:
    """A ready suggestion."""

    task: str
    series_uid: str
    model_version: str
    path: Path
    made: float | None = None  # when it was ready (Unix time); None for one indexed before this was kept


class SuggestionCache:
    """Computes suggestions on one background worker and serves them while their model version is current."""

    def __init__(self, folder: Path, infer: InferFn, version: VersionFn) -> None:
        self.folder = folder
        self._infer = infer
        self._version = version
        self._ready: dict[tuple[str, str], Suggestion] = {}
        self._pending: set[tuple[str, str, str]] = set()
        self._failed: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hope-suggest")
        folder.mkdir(parents=True, exist_ok=True)
        self._index_path = folder / "index.json"
        self._load()

    def _load(self) -> None:
        """Read the index, drop entries whose file is gone, and delete every file the index does not list."""
        entries = json.loads(self._index_path.read_text())["suggestions"] if self._index_path.exists() else []
        for entry in entries:
            path = self.folder / entry["file"]
            if path.is_file():
                self._ready[(entry["task"], entry["series_uid"])] = Suggestion(
                    entry["task"], entry["series_uid"], entry["model_version"], path, entry.get("made")
                )
        kept = {s.path for s in self._ready.values()} | {self._index_path}
        orphans = [p for p in self.folder.rglob("*") if p.is_file() and p not in kept]
        for path in orphans:
            path.unlink()
        if orphans:
            logger.info(f"deleted {len(orphans)} suggestion files no longer indexed in {self.folder}")
        logger.info(f"{len(self._ready)} suggestions loaded from {self._index_path}")

    def _save_index(self) -> None:
        """Write the index of ready suggestions (the caller holds the lock)."""
        entries = [
            {
                "task": s.task,
                "series_uid": s.series_uid,
                "model_version": s.model_version,
                "file": s.path.relative_to(self.folder).as_posix(),
                "made": s.made,
            }
            for s in self._ready.values()
        ]
        fileio.write_json(self._index_path, {"suggestions": entries}, indent=1)

    def request(self, task: str, series_uid: str) -> None:
        """Queue the computation of a suggestion for the current model, unless it is ready or queued."""
        version = self._version(task)
        if version is None or self.get(task, series_uid) is not None:
            return
        key = (task, series_uid, version)
        with self._lock:
            if key in self._pending:
                return
            self._pending.add(key)
        self._executor.submit(self._compute, task, series_uid, version)

    def _compute(self, task: str, series_uid: str, version: str) -> None:
        try:
            produced = Path(self._infer(task, series_uid))
            dest = self.folder / task / f"{series_uid}.{version}{''.join(produced.suffixes)}"
            fileio.move(produced, dest)
            with self._lock:
                old = self._ready.get((task, series_uid))
                self._ready[(task, series_uid)] = Suggestion(task, series_uid, version, dest, time.time())
                self._failed.pop((task, series_uid), None)
                self._save_index()
            if old and old.path != dest:
                old.path.unlink(missing_ok=True)
            logger.info(f"suggestion ready: {task} on {series_uid} (model {version})")
        except Exception as exc:  # recorded, logged with its traceback, and shown in /hope/state
            with self._lock:
                self._failed[(task, series_uid)] = f"{type(exc).__name__}: {exc}"
            logger.exception(f"suggestion failed: {task} on {series_uid}")
        finally:
            with self._lock:
                self._pending.discard((task, series_uid, version))

    def get(self, task: str, series_uid: str) -> Suggestion | None:
        """The suggestion of the current model version, or ``None``."""
        with self._lock:
            found = self._ready.get((task, series_uid))
        return found if found and found.model_version == self._version(task) else None

    def latest(self, task: str, series_uid: str) -> Suggestion | None:
        """The newest ready suggestion of ``task`` on the series, of whichever model version made it (what an
        annotator who opened the series was shown, even while a newer model's is being computed), or ``None``."""
        with self._lock:
            return self._ready.get((task, series_uid))

    def has_any(self, series_uid: str) -> bool:
        """Whether some task has a suggestion of the series (of any model version)."""
        with self._lock:
            return any(uid == series_uid for _, uid in self._ready)

    def copy_of(self, task: str, series_uid: str) -> Path | None:
        """A private copy of the current suggestion (the caller may delete it), or ``None``."""
        found = self.get(task, series_uid)
        if found is None:
            return None
        fd, tmp = tempfile.mkstemp(suffix="".join(found.path.suffixes))
        with open(fd, "wb") as out, found.path.open("rb") as src:
            shutil.copyfileobj(src, out)
        return Path(tmp)

    def refresh_stale(self) -> int:
        """Queue recomputation of every suggestion whose task's model now serves another version; return how many.

        This covers the suggestions loaded at start as well as those made since.
        """
        with self._lock:
            ready = list(self._ready.values())
        stale = [(s.task, s.series_uid) for s in ready if self._version(s.task) not in {None, s.model_version}]
        for task, uid in stale:
            self.request(task, uid)
        return len(stale)

    def state(self) -> dict[str, dict[str, object]]:
        """Per series: the model version of its ready suggestion per task, and failures."""
        out: dict[str, dict[str, object]] = {}
        with self._lock:
            for (task, uid), s in self._ready.items():
                out.setdefault(uid, {}).setdefault("suggestions", {})[task] = {
                    "model_version": s.model_version,
                    "current": s.model_version == self._version(task),
                }
            for (task, uid), reason in self._failed.items():
                out.setdefault(uid, {}).setdefault("failures", {})[task] = reason
            for task, uid, version in self._pending:
                out.setdefault(uid, {}).setdefault("pending", {})[task] = version
        return out
