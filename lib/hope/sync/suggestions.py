"""Suggestions computed ahead of time, so an annotator who opens a series gets one at once.

A suggestion is the output of one task's model on one series, kept as a file and tied to the version of the model
that made it. When a new model is published, suggestions of the old version stop being served and are computed
again in the background.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.move(str(produced), dest)
            with self._lock:
                old = self._ready.get((task, series_uid))
                self._ready[(task, series_uid)] = Suggestion(task, series_uid, version, dest)
                self._failed.pop((task, series_uid), None)
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
        """Queue recomputation of every suggestion whose model version is no longer current; return how many."""
        with self._lock:
            stale = [(s.task, s.series_uid) for s in self._ready.values() if s.model_version != self._version(s.task)]
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
