"""The HOPE MONAI Label application: tasks from ``configs/``, an Orthanc datastore, no downloads.

``apps/hope/main.py`` only exposes :class:`HopeApp` to ``monailabel start_server``; everything else is here.
"""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import SimpleITK as sitk
from monailabel.config import settings as monailabel_settings
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.app import MONAILabelApp
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask
from monailabel.utils.async_tasks.task import AsyncTask

import hope
from hope.activelearning import (
    TTA,
    Diverse,
    Epistemic,
    LeaseBook,
    RandomStrategy,
    RareFirst,
    ScoreStore,
    ScoringWorker,
    SuggestionDiceScoring,
    UncertaintyScoring,
)
from hope.admin.routes import build_router as build_admin_router
from hope.cases import CaseRepository, load_vocabulary, make_engine, orthanc_study_exists
from hope.cases import build_router as build_cases_router
from hope.config import ConfigError, ServerSettings, load_server_settings
from hope.datastore.attachments import SeriesAttachments, attachment_name, orthanc_rest_url
from hope.datastore.client import make_client
from hope.datastore.orthanc import OrthancDatastore
from hope.errors import NotFoundError
from hope.fewshot.config import FewShotDefinition, load_fewshot_task
from hope.fewshot.support_library import LabelledSeries, SupportLibrary
from hope.infers.scribbles import StructureScribblesInfer
from hope.ohif import ohif_router
from hope.sync.routes import build_router as build_sync_router
from hope.sync.service import SyncService
from hope.tasks.fewshot import TASK_CONFIGS, FewShotTaskConfig
from hope.tasks.segmentation import SegmentationTaskConfig

logger = logging.getLogger(__name__)


class HopeApp(MONAILabelApp):
    """MONAI Label app serving every task listed in ``configs/server.yaml``."""

    def __init__(self, app_dir: str, studies: str, conf: dict[str, str]) -> None:
        self.settings: ServerSettings = load_server_settings()
        self.tasks: dict[str, SegmentationTaskConfig] = {}
        self.fewshot: dict[str, FewShotTaskConfig] = {}
        self._cases: CaseRepository | None = None
        self.attachments: SeriesAttachments | None = None
        self.sync: SyncService | None = None
        self.scoring_worker: ScoringWorker | None = None
        self._mounted = False
        al = self.settings.extra.get("activelearning", {})
        al_dir = Path(os.environ.get("HOPE_DATA_DIR") or app_dir) / "activelearning"
        self.leases = LeaseBook(al_dir / "leases.sqlite", duration_s=60.0 * float(al.get("lease_minutes", 30)))
        self.scores = ScoreStore(al_dir / "scores.sqlite")
        self.background_scoring = bool(al.get("background_scoring", True))
        self.model_dir = Path(os.environ.get("HOPE_MODEL_DIR") or Path(app_dir) / "model")
        self.model_dir.mkdir(parents=True, exist_ok=True)
        for name in self.settings.tasks:
            task = SegmentationTaskConfig()
            task.init(name, str(self.model_dir), conf, None)
            self.tasks[name] = task
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
        """An :class:`OrthancDatastore` for a DICOMweb URL, otherwise MONAI Label's local folder datastore."""
        if not self.studies.startswith(("http://", "https://")):
            return LocalDatastore(self.studies, extensions=("*.nii.gz", "*.nii", "*.nrrd"), auto_reload=True)
        cache = monailabel_settings.MONAI_LABEL_DICOMWEB_CACHE_PATH or str(Path(self.app_dir) / "cache")
        first_task = next(iter(self.tasks.values()))
        return OrthancDatastore(
            client_factory=lambda: make_client(
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
        """One infer task per configured task, its scribble corrections as ``<task>_scribbles``, and the few-shot
        tasks (on a DICOMweb store: their support sets are the store's final labels and the case records)."""
        infers: dict[str, InferTask] = {}
        for name, task in self.tasks.items():
            infers[name] = task.infer()
            infers[f"{name}_scribbles"] = StructureScribblesInfer(task.definition)
        if not isinstance(self._datastore, OrthancDatastore):
            if self.settings.fewshot_tasks:
                logger.warning("few-shot tasks need a DICOMweb store (their support sets live there); not served")
            return infers
        self.attachments = SeriesAttachments(
            orthanc_rest_url(self.studies),
            self.settings.datastore.timeout_seconds,
            monailabel_settings.MONAI_LABEL_DICOMWEB_USERNAME,
            monailabel_settings.MONAI_LABEL_DICOMWEB_PASSWORD,
        )
        for name in self.settings.fewshot_tasks:
            definition = load_fewshot_task(name)
            task = TASK_CONFIGS[definition.kind]()
            task.init(
                name,
                str(self.model_dir),
                self.conf,
                None,
                library=self._support_library(self._datastore, definition),
                vocabulary=load_vocabulary(),
                final_label=self._final_label_path,
                segment=infers.get(str(definition.inference.get("segment_with", ""))),
                list_images=lambda modalities=definition.modalities: self._image_series(modalities),
                load_image=lambda uid: sitk.ReadImage(self._datastore.get_image_uri(uid)),
            )
            self.fewshot[name] = task
            infers[name] = task.infer()
        return infers

    def case_repository(self) -> CaseRepository:
        """The case records (created on first use)."""
        if self._cases is None:
            vocabulary = load_vocabulary()
            lookup = orthanc_study_exists(
                self.studies,
                self.settings.datastore.timeout_seconds,
                monailabel_settings.MONAI_LABEL_DICOMWEB_USERNAME,
                monailabel_settings.MONAI_LABEL_DICOMWEB_PASSWORD,
            )
            self._cases = CaseRepository(make_engine(vocabulary.database_url_for()), vocabulary, lookup)
        return self._cases

    def _support_library(self, datastore: OrthancDatastore, definition: FewShotDefinition) -> SupportLibrary:
        """Support cases of a few-shot task: recorded studies' series (of its modalities) with final labels."""
        label_map = next(iter(self.tasks.values())).definition.labels
        if definition.lesion_label not in label_map:
            raise ConfigError(f"task {definition.name}: lesion_label {definition.lesion_label!r} is not a label of "
                              f"the store's SEGs ({', '.join(label_map)})")

        def labelled() -> list[LabelledSeries]:
            return [
                LabelledSeries(uid, seg.study_uid, seg.uid)
                for uid, seg in datastore.final_labels().items()
                if datastore.modality(uid) in definition.modalities
            ]

        def load(series_uid: str) -> tuple[sitk.Image, sitk.Image]:
            image = sitk.ReadImage(datastore.get_image_uri(series_uid))
            return image, sitk.ReadImage(datastore.get_label_uri(series_uid, DefaultLabelTag.FINAL, series_uid))

        return SupportLibrary(lambda: self.case_repository().list_cases(), labelled, load, definition.slices,
                              label_map[definition.lesion_label])

    def _image_series(self, modalities: tuple[str, ...]) -> list[str]:
        """The store's image series of these modalities."""
        return [uid for uid in self._datastore.list_images() if self._datastore.modality(uid) in modalities]

    def _final_label_path(self, series_uid: str) -> str | None:
        """Local file of the series' final label, or ``None`` when it has none in the store."""
        if series_uid not in self._datastore.final_labels():
            return None
        return self._datastore.get_label_uri(series_uid, DefaultLabelTag.FINAL, series_uid) or None

    def init_trainers(self) -> dict[str, TrainTask]:
        """One trainer per configured task, and the few-shot tasks' refresh where their YAML defines one."""
        trainers = {name: task.trainer() for name, task in self.tasks.items()}
        fewshot = {name: task.trainer() for name, task in self.fewshot.items()}
        return {**trainers, **{name: t for name, t in fewshot.items() if t is not None}}

    def eligible(self, task: str, series_uid: str) -> bool:
        """Whether ``task`` annotates the series (its modality is one of the task's)."""
        modality = getattr(self._datastore, "modality", lambda _uid: None)(series_uid)
        return modality is None or modality in self.tasks[task].definition.modalities

    def init_strategies(self) -> dict[str, Strategy]:
        """Active-learning strategies; each leases a series to one annotator at a time."""
        names = list(self.tasks)

        def version_of(task: str) -> str | None:
            return self.tasks[task].registry.served_version()

        scored = {"scores": self.scores, "tasks": names, "version_of": version_of}
        return {
            "random": RandomStrategy(self.leases, names, eligible=self.eligible),
            "epistemic": Epistemic(self.leases, eligible=self.eligible, **scored),
            "tta": TTA(self.leases, eligible=self.eligible, **scored),
            "rare_first": RareFirst(self.leases, eligible=self.eligible, **scored),
            "diverse": Diverse(self.leases, self.scores, names, eligible=self.eligible),
        }

    def init_scoring_methods(self) -> dict[str, ScoringMethod]:
        """Per task: uncertainty / tumour likelihood / features of unlabelled series, and suggestion Dice."""
        methods: dict[str, ScoringMethod] = {}
        for name, task in self.tasks.items():
            definition = task.definition
            methods[f"uncertainty_{name}"] = UncertaintyScoring(
                name,
                self._infers[name],
                task.network,
                task.registry,
                self.scores,
                tumour_channel=definition.labels.get("tumor"),
                spacing_mm=definition.preprocessing.spacing,
                eligible=lambda uid, name=name: self.eligible(name, uid),
            )
            methods[f"dice_{name}"] = SuggestionDiceScoring(name, definition.labels, self.scores)
        return methods

    def trigger_scoring(self) -> None:
        """Ask the background scoring worker for a run (no-op when background scoring is off)."""
        if self.scoring_worker is not None:
            self.scoring_worker.trigger()

    def on_save_label(self, image_id: str, label_id: str) -> dict[str, Any]:
        """A final label ends the series' lease and refreshes scores."""
        self.leases.release(image_id)
        self.trigger_scoring()
        return super().on_save_label(image_id, label_id)

    def server_mode(self, mode: bool) -> None:
        """In the server (not in training subprocesses), mount HOPE's routes and start the sync service."""
        super().server_mode(mode)
        if not mode or self._mounted:
            return
        from monailabel.app import app as fastapi_app  # the running server's FastAPI app

        trained = {name: task for name, task in self.fewshot.items() if name in self._trainers}
        admin = build_admin_router(
            {**{name: task.definition for name, task in self.tasks.items()},
             **{name: task.definition for name, task in trained.items()}},
            {**{name: task.registry for name, task in self.tasks.items()},
             **{name: task.registry for name, task in self.fewshot.items()}},
            lambda name: self._trainers[name].config(),
        )
        # HOPE's POST /train/{model} (bounds, who started it) must answer before MONAI Label's own route.
        for route in reversed(admin.routes):
            fastapi_app.router.routes.insert(0, route)
        # HOPE's OHIF configuration must answer before MONAI Label's catch-all GET /ohif/{path}.
        for route in reversed(ohif_router().routes):
            fastapi_app.router.routes.insert(0, route)
        if self.background_scoring:
            self.scoring_worker = ScoringWorker(self._scoring_methods, self._datastore)
            self.scoring_worker.trigger()
        if isinstance(self._datastore, OrthancDatastore):
            self.sync = self._build_sync(self._datastore)
            fastapi_app.include_router(build_sync_router(self.sync))
            self.sync.start()
            fastapi_app.include_router(build_cases_router(self.case_repository()))
        self._mounted = True

    def _build_sync(self, datastore: OrthancDatastore) -> SyncService:
        retrain = self.settings.extra.get("retrain", {})
        return SyncService(
            datastore=datastore,
            tasks={name: task.definition for name, task in self.tasks.items()},
            versions=lambda name: self.tasks[name].registry.served_version(),
            state_dir=Path(datastore._datastore_path) / "sync",
            infer=self._compute_suggestion,
            start_training=self._start_training,
            retrain_threshold=int(retrain.get("after_new_final_labels", 5)),
            retrain_enabled=bool(retrain.get("enabled", True)),
            model_poll_seconds=float(self.settings.extra.get("sync", {}).get("model_poll_seconds", 2)),
            on_change=self.trigger_scoring,
        )

    def _compute_suggestion(self, task: str, series_uid: str) -> str:
        result = super().infer({"model": task, "image": series_uid})
        return str(result["file"])

    def _start_training(self, task: str) -> str:
        result, detail = AsyncTask.run("train", request={"model": task}, enqueue=True)
        return f"training task {result['id']} submitted" if result else str(detail)

    def infer(self, request: dict[str, Any], datastore: Datastore | None = None) -> dict[str, Any]:
        """Run inference; a precomputed suggestion of the current model is answered at once.

        An unknown model is a 404 (stock MONAI Label answers 500).
        """
        model = request.get("model")
        if model not in self._infers:
            known = ", ".join(sorted(self._infers))
            raise NotFoundError(f"no model named {model!r}; this server serves: {known}")
        image = request.get("image")
        plain = isinstance(image, str) and not request.get("label") and not request.get("session")
        if self.sync and model in self.tasks and plain:
            ready = self.sync.suggestions.get(model, image)
            copy = self.sync.suggestions.copy_of(model, image) if ready else None
            if ready and copy:
                params = {
                    "label_names": self.tasks[model].definition.labels,
                    "precomputed": True,
                    "model_version": ready.model_version,
                }
                return {"label": str(copy), "tag": DefaultLabelTag.ORIGINAL, "file": str(copy), "params": params}
        if model in self.fewshot:
            return self._fewshot_infer(request, datastore)
        task = self.tasks.get(model)  # None for a scribbles model: it has no weights
        served = task.registry.served_version() if task else None
        result = super().infer(request, datastore)
        if task:
            result["params"]["model_version"] = served
        return result

    def _fewshot_infer(self, request: dict[str, Any], datastore: Datastore | None) -> dict[str, Any]:
        """Run a few-shot task, then keep its result with the series in the store (an Orthanc attachment)."""
        model, image = str(request["model"]), request.get("image")
        stored = isinstance(image, str) and not Path(image).exists()
        if stored:
            request = {**request, "hope_series_uid": image}
        served = self.fewshot[model].registry.served_version()
        result = super().infer(request, datastore)
        params = result["params"]
        params["model_version"] = served
        if stored and self.attachments is not None:
            name = attachment_name(model)
            record = {"task": model, "series_uid": image, "user": request.get("user") or request.get("client_id"),
                      "created": datetime.now(UTC).isoformat(timespec="seconds"), "result": params}
            series_id = self.attachments.put(str(image), name, record)
            params["stored"] = {"orthanc_series": series_id, "attachment": name}
        return result
