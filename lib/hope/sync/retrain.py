"""Automatic retraining: after N new final labels for a task, start its training run."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

from hope import fileio

logger = logging.getLogger(__name__)

StartTraining = Callable[[str], str]  # task name -> a short description of what happened


class RetrainTrigger:
    """Counts new final labels per task and starts training when a count reaches the threshold.

    The counts and the admin's on/off switch are kept in ``state_path`` (``{"enabled": ..., "counts": {...}}``), so
    both survive a restart; ``enabled`` is only the default until the switch is first set. A file written before
    the switch was kept holds the counts alone and is still read.
    """

    def __init__(self, state_path: Path, threshold: int, enabled: bool, start: StartTraining) -> None:
        if threshold < 1:
            raise ValueError(f"retrain threshold must be at least 1, got {threshold}")
        self.state_path = state_path
        self.threshold = threshold
        self._start = start
        self._lock = threading.Lock()
        saved = json.loads(state_path.read_text()) if state_path.exists() else {}
        if isinstance(saved.get("counts"), dict):
            self._counts: dict[str, int] = dict(saved["counts"])
            self._enabled = bool(saved.get("enabled", enabled))
        else:  # the old layout: {task: count}
            self._counts = dict(saved)
            self._enabled = enabled
        self.last_trigger: dict[str, str] = {}

    @property
    def enabled(self) -> bool:
        """Whether a count reaching the threshold starts training."""
        return self._enabled

    def set_enabled(self, enabled: bool) -> None:
        """Switch automatic retraining on or off, durably."""
        with self._lock:
            self._enabled = enabled
            self._save()

    def _save(self) -> None:
        fileio.write_json(self.state_path, {"enabled": self._enabled, "counts": self._counts}, indent=None)

    def new_final_label(self, task: str) -> bool:
        """Count one new final label for ``task``; start training when the threshold is reached."""
        with self._lock:
            self._counts[task] = self._counts.get(task, 0) + 1
            due = self._enabled and self._counts[task] >= self.threshold
            if due:
                self._counts[task] = 0
            self._save()
        if due:
            self.last_trigger[task] = self._start(task)
            logger.info(f"retraining {task} after {self.threshold} new final labels: {self.last_trigger[task]}")
        return due

    def state(self) -> dict[str, object]:
        """Threshold, switch, and the labels counted towards the next run per task."""
        with self._lock:
            return {
                "enabled": self._enabled,
                "after_new_final_labels": self.threshold,
                "counted": dict(self._counts),
                "last_trigger": dict(self.last_trigger),
            }
