"""The HOPE MONAI Label application: tasks from ``configs/``, an Orthanc datastore, no downloads.

``apps/hope/main.py`` only exposes :class:`HopeApp` to ``monailabel start_server``; everything else is here.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from monailabel.config import settings as monailabel_settings
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

import hope
from hope.config import ServerSettings, load_server_settings
from hope.datastore.client import make_client
from hope.datastore.orthanc import OrthancDatastore
from hope.errors import NotFoundError
from hope.tasks.segmentation import SegmentationTaskConfig

logger = logging.getLogger(__name__)


class HopeApp(MONAILabelApp):
    """MONAI Label app serving every task listed in ``configs/server.yaml``."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.settings: ServerSettings = load_server_settings()
        self.tasks: dict[str, SegmentationTaskConfig] = {}
        model_dir = Path(os.environ.get("HOPE_MODEL_DIR") or Path(app_dir) / "model")
        model_dir.mkdir(parents=True, exist_ok=True)
        for name in self.settings.tasks:
            task = SegmentationTaskConfig()
            task.init(name, str(model_dir), conf, None)
            self.tasks[name] = task
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="HOPE",
            description="Active-learning annotation of cervical-spine tumours",
            version=getattr(hope, "__version__", "0"),
        )

    def init_datastore(self) -> Datastore:
        """An :class:`OrthancDatastore` for a DICOMweb URL, otherwise MONAI Label's local folder datastore."""
        if not self.studies.startswith(("http://", "https://")):
            return LocalDatastore(self.studies, extensions=("*.nii.gz", "*.nii", "*.nrrd"), auto_reload=True)
        cache = monailabel_settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or str(Path(self.app_dir) / "cache")
        first_task = next(iter(self.tasks.values()))
        return OrthancDatastore(
            client=make_client(
                self.studies,
                self.settings.datastore.timeout_seconds,
                monailabel_settings.MONAI_LABEL_DICOMWEB_USERNAME,
                monailabel_settings.MONAI_LABEL_DICOMWEB_PASSWORD,
            ),
            settings=self.settings.datastore,
            label_map=first_task.definition.labels,
            cache_path=Path(cache),
        )

    def init_infers(self) -> dict[str, InferTask]:
        """One infer task per configured task."""
        return {name: task.infer() for name, task in self.tasks.items()}

    def init_trainers(self) -> dict[str, TrainTask]:
        """One trainer per configured task."""
        return {name: task.trainer() for name, task in self.tasks.items()}

    def init_strategies(self) -> dict[str, Strategy]:
        """Active-learning strategies of all tasks (names are shared across tasks)."""
        strategies: dict[str, Strategy] = {}
        for task in self.tasks.values():
            strategies.update(task.strategy())
        return strategies

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """Run inference, answering an unknown model with 404 (stock MONAI Label answers 500)."""
        model = request.get("model")
        if model not in self._infers:
            known = ", ".join(sorted(self._infers))
            raise NotFoundError(f"no model named {model!r}; this server serves: {known}")
        return super().infer(request, datastore)

