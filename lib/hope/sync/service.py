"""The sync service: turns store events into cache refreshes, precomputed suggestions and retraining."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from hope.config import TaskDefinition
from hope.datastore.orthanc import OrthancDatastore
from hope.sync.eventlog import EventLog
from hope.sync.retrain import RetrainTrigger
from hope.sync.suggestions import SuggestionCache

logger = logging.getLogger(__name__)


class SyncService:
    """Handles store events idempotently and keeps suggestions current with the served models.

    ``on_change`` is called after anything that may change active-learning scores: a new model version, a new
    valid series, a new final label.
    """

    def __init__(
        self,
        *,
        datastore: OrthancDatastore,
        tasks: Mapping[str, TaskDefinition],
        versions: Callable[[str], str | None],
        state_dir: Path,
        infer: Callable[[str, str], str],
        start_training: Callable[[str], str],
        retrain_threshold: int,
        retrain_enabled: bool,
        model_poll_seconds: float,
        on_change: Callable[[], None] = lambda: None,
        count_stored_labels: bool = True,
    ) -> None:
        self.datastore = datastore
        self.tasks = dict(tasks)
        self._versions = versions
        self.events = EventLog(state_dir / "events.sqlite")
        self.suggestions = SuggestionCache(state_dir / "suggestions", infer, self.version)
        self.retrain = RetrainTrigger(state_dir / "retrain.json", retrain_threshold, retrain_enabled, start_training)
        self._poll = model_poll_seconds
        self._on_change = on_change
        self._count_stored = count_stored_labels
        self._watcher = threading.Thread(target=self._watch_models, name="hope-model-watch", daemon=True)

    def start(self) -> None:
        """Recompute suggestions made by a model that stopped serving while HOPE was down, then start watching for
        newly published models (a daemon thread, ending with the server)."""
        stale = self.suggestions.refresh_stale()
        if stale:
            logger.info(f"recomputing {stale} suggestions kept from before the restart: their model no longer serves")
        self._watcher.start()

    def version(self, task: str) -> str | None:
        """The served model version of ``task`` (e.g. ``v0003``); ``None`` for a task this server does not serve
        (a suggestion kept from before a restart may name one)."""
        return self._versions(task) if task in self.tasks else None

    def _watch_models(self) -> None:
        seen = {task: self.version(task) for task in self.tasks}
        while True:
            time.sleep(self._poll)
            current = {task: self.version(task) for task in self.tasks}
            if current != seen:
                stale = self.suggestions.refresh_stale()
                logger.info(f"new model version(s) {current}; recomputing {stale} stale suggestions")
                seen = current
                self._on_change()

    def tasks_for(self, modality: str) -> list[str]:
        """Tasks that annotate ``modality``."""
        return [name for name, task in self.tasks.items() if modality.upper() in task.modalities]

    def handle(self, event: dict[str, Any]) -> dict[str, Any]:
        """Apply one store event; a repeated event id is acknowledged and ignored."""
        if not self.events.first_time(event["id"], event["type"]):
            return {"accepted": True, "duplicate": True}
        uid = event["series_uid"]
        self.datastore.refresh_series(uid)  # that series only: listing a large store again takes a minute
        actions: list[str] = []
        if event["type"] == "series_stable":
            if not event["valid"]:
                self.datastore.flag(uid, event["reasons"])
                actions.append(f"flagged: {'; '.join(event['reasons'])}")
            else:
                for task in self.tasks_for(event["modality"]):
                    self.suggestions.request(task, uid)
                    actions.append(f"suggestion queued for {task}")
                self._on_change()
        elif self._count_stored:
            actions += self._count_final_label(event.get("segment_labels"), event.get("referenced_series_uid"))
        else:
            actions.append("label review is on: the label counts once a reviewer approves it")
        return {"accepted": True, "duplicate": False, "actions": actions}

    def label_approved(self, series_uid: str | None = None) -> list[str]:
        """A reviewer approved a label of image series ``series_uid`` (review on): it counts towards retraining of
        the tasks of that series' modality now; what was done."""
        self.datastore.invalidate()
        return self._count_final_label(None, series_uid)

    def _count_final_label(self, segments: list[str] | None, series_uid: str | None) -> list[str]:
        """Count a final label of image series ``series_uid`` (``None``: unknown) holding ``segments`` (``None``:
        unknown) for each task that trains on it: the tasks of the series' modality, when it is known."""
        actions = []
        modality = self.datastore.modality(series_uid) if series_uid else None
        for task, definition in self.tasks.items():
            if modality is not None and modality not in definition.modalities:
                actions.append(f"not counted for {task}: it does not annotate {modality}")
            elif segments is not None and not definition.trains_on(segments):
                actions.append(f"not counted for {task}: it does not train on a SEG of {segments}")
            elif self.retrain.new_final_label(task):
                actions.append(f"retraining {task}")
        self._on_change()
        return actions

    def state(self) -> dict[str, Any]:
        """Model versions, retraining state, and per-series suggestion / final / validation state."""
        suggestions = self.suggestions.state()
        finals = set(self.datastore.final_labels())
        series: dict[str, dict[str, Any]] = {}
        for uid in self.datastore.list_images():
            s = suggestions.get(uid, {})
            current = [v["model_version"] for v in s.get("suggestions", {}).values() if v["current"]]
            series[uid] = {
                "final": uid in finals,
                "suggestion_model_version": current[0] if current else None,
                **s,
            }
        for uid, reasons in self.datastore.flagged.items():
            series.setdefault(uid, {"final": False, "suggestion_model_version": None})["flags"] = reasons
        return {
            "model_versions": {task: self.version(task) for task in self.tasks},
            "retrain": self.retrain.state(),
            "series": series,
        }
