"""HOPE as a MONAI Label app: the adapter between MONAI Label's app interface and HOPE's collaborators.

It holds no logic: what the server is made of is built in :mod:`hope.server.collaborators`, and HOPE's routes are
mounted in :mod:`hope.server.routes`.
"""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

from monailabel.config import settings as monailabel_settings
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.utils.async_tasks.task import AsyncTask

import hope
from hope.auth.binding import bind_host, check_bind
from hope.errors import NotFoundError
from hope.models.registry import RUN_KEY
from hope.server.collaborators import Collaborators, StoreAccess, build_collaborators, start_background
from hope.server.lifetime import bind_to_server, mark_server
from hope.server.paths import RuntimePaths
from hope.sync.precomputed import precomputed_result


class HopeApp(MONAILabelApp):
    """MONAI Label app serving every task listed in ``configs/server.yaml``.

    In MONAI Label's task subprocesses (training), it first binds the process's life to the server's
    (:mod:`hope.server.lifetime`): a run whose server died ends at once and publishes nothing.
    """

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        bind_to_server()
        access = StoreAccess(studies, monailabel_settings.MONAI_LABEL_DICOMWEB_USERNAME or "",
                             monailabel_settings.MONAI_LABEL_DICOMWEB_PASSWORD or "")
        paths = RuntimePaths.from_environment(monailabel_settings.MONAI_LABEL_DICOMWEB_CACHE_PATH)
        self.hope: Collaborators = build_collaborators(access, conf, paths)
        self._mounted = False
        super().__init__(
            app_dir=app_dir,
            studies=studies,
            conf=conf,
            name="HOPE",
            description="Active-learning annotation of cervical-spine tumours",
            version=getattr(hope, "__version__", "0"),
        )
        self._auto_update_scoring = False  # HOPE scores on its own worker thread, not in subprocess copies

    def init_datastore(self) -> Datastore:
        """The datastore the collaborators were built on."""
        return self.hope.datastore

    def init_infers(self) -> dict[str, InferTask]:
        """Every task's infer task, its scribble corrections, and the few-shot tasks."""
        return self.hope.infers

    def init_trainers(self) -> dict[str, TrainTask]:
        """One trainer per supervised task, and the few-shot refreshes their YAML defines."""
        return self.hope.trainers

    def init_strategies(self) -> dict[str, Strategy]:
        """Active-learning strategies; each leases a series to one annotator at a time."""
        return self.hope.strategies

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        """Per task: uncertainty / tumour likelihood / features of unlabelled series, and suggestion Dice."""
        return self.hope.scoring_methods

    def on_save_label(self, image_id: str, label_id: str) -> dict[str, Any]:
        """A final label ends the series' lease and refreshes scores."""
        self.hope.leases.release(image_id)
        self.hope.trigger_scoring()
        return super().on_save_label(image_id, label_id)

    def server_mode(self, mode: bool) -> None:
        """In the server (not in training subprocesses): start the background work and mount HOPE's routes."""
        super().server_mode(mode)
        if not mode or self._mounted:
            return
        check_bind(bind_host(sys.argv), self.hope.settings.auth)
        mark_server()
        from monailabel.app import app as fastapi_app  # the running server's FastAPI app

        from hope.server.routes import mount_routes

        start_background(self.hope, self._compute_suggestion, self._start_training)
        mount_routes(fastapi_app, self.hope, lambda name: self._trainers[name].config(), self.on_save_label)
        self._mounted = True

    def _compute_suggestion(self, task: str, series_uid: str) -> str:
        return str(super().infer({"model": task, "image": series_uid})["file"])

    @staticmethod
    def _start_training(task: str) -> str:
        result, detail = AsyncTask.run("train", request={"model": task, RUN_KEY: uuid.uuid4().hex}, enqueue=True)
        return f"training task {result['id']} submitted" if result else str(detail)

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """Run inference; a precomputed suggestion of the served model is answered at once, and a few-shot
        result on a stored series is kept with it in Orthanc. An unknown model is a 404 (stock: 500)."""
        model = request.get("model")
        if model not in self._infers:
            raise NotFoundError(f"no model named {model!r}; this server serves: {', '.join(sorted(self._infers))}")
        self.hope.check_servable(str(model), request.get("image"))
        sync, task = self.hope.sync, self.hope.tasks.get(str(model))
        if sync is not None and task is not None:
            ready = precomputed_result(sync.suggestions, task.name, task.definition.labels, request)
            if ready is not None:
                return ready
        image, results = request.get("image"), self.hope.results
        stored = model in self.hope.fewshot and isinstance(image, str) and not Path(image).exists()  # a series UID
        if stored:
            request = {**request, "hope_series_uid": image}
        served = self.hope.served_version(str(model))
        result = super().infer(request, datastore)
        if served is not None:
            result["params"]["model_version"] = served
        if stored and results is not None:
            user = request.get("user") or request.get("client_id")
            result["params"]["stored"] = results.keep(str(model), str(image), user, result["params"])
        return result
