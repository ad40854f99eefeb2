"""Where HOPE keeps its runtime state: a data folder, never the source tree."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from hope.config import REPO_ROOT


@dataclass(frozen=True)
class RuntimePaths:
    """HOPE's folders: models, the DICOM cache, active-learning and sync state, case records; the event key.

    ``HOPE_DATA_DIR`` (default: ``data/`` of the repository, which git ignores) holds everything;
    ``HOPE_MODEL_DIR`` and MONAI Label's ``MONAI_LABEL_DICOMWEB_CACHE_PATH`` may move the models and the cache.
    ``HOPE_EVENT_SECRET_FILE`` (default ``<data>/secrets/events.key``, generated at first start) is the key
    Orthanc's plugin signs its store events with.
    """

    data: Path
    models: Path
    cache: Path
    event_key: Path

    @property
    def activelearning(self) -> Path:
        """Leases and scores."""
        return self.data / "activelearning"

    @property
    def records(self) -> Path:
        """Label reviews and the audit log."""
        return self.data / "records"

    @property
    def sync(self) -> Path:
        """Store events seen, suggestions, the retraining state."""
        return self.data / "sync"

    @classmethod
    def from_environment(cls, cache_override: str | None = None) -> RuntimePaths:
        """The folders from the environment (``cache_override``: MONAI Label's cache path setting, if set)."""
        data = Path(os.environ.get("HOPE_DATA_DIR") or REPO_ROOT / "data").resolve()
        models = Path(os.environ.get("HOPE_MODEL_DIR") or data / "models")
        paths = cls(data=data, models=models, cache=Path(cache_override or data / "cache"),
                    event_key=Path(os.environ.get("HOPE_EVENT_SECRET_FILE") or data / "secrets" / "events.key"))
        for folder in (paths.data, paths.models, paths.cache):
            folder.mkdir(parents=True, exist_ok=True)
        return paths
