"""Automatic retraining: after N new final labels for a task, start its training run."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path

logger = logging.getLogger(__name__)

StartTraining = Callable[[str], str]  # task name -> a short description of what happened


class RetrainTrigger:
    """Counts new final labels per task (durably) and starts training when a count reaches the threshold."""

    def __init__(self, state_path: Path, threshold: int, enabled: bool, start: StartTraining) -> None:
        if threshold < 1:
            raise ValueError(f"retrain threshold must be at least 1, got {threshold}")
        self.state_path = state_path
        self.threshold = threshold
        self.enabled = enabled
        self._start = start
        self._lock = threading.Lock()
        self._counts: dict[str, int] = json.loads(state_path.read_text()) if state_path.exists() else {}
        self.last_trigger: dict[str, str] = {}

    def _save(self) -> None:
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._counts))
        tmp.replace(self.state_path)

    def new_final_label(self, task: str) -> bool:
        """Count one new final label for ``task``; start training when the threshold is reached."""
        with self._lock:
            self._counts[task] = self._counts.get(task, 0) + 1
            due = self.enabled and self._counts[task] >= self.threshold
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
                "enabled": self.enabled,
                "after_new_final_labels": self.threshold,
                "counted": dict(self._counts),
                "last_trigger": dict(self.last_trigger),
            }
