"""Where every collaborator of the HOPE server is built, once: the composition root.

:func:`build_collaborators` parses the configuration, opens the way to Orthanc, and builds the datastore, the
tasks (with their model registries and support sets), the active-learning strategies and scoring methods. It
runs in the server and in MONAI Label's training subprocesses alike, so it starts no thread.
:func:`start_background` adds what only the server runs: the sync service and the background scoring worker.
Everything is handed on as typed objects; nothing looks a collaborator up by name.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import SimpleITK as sitk
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.interfaces.tasks.strategy import Strategy
from monailabel.interfaces.tasks.train import TrainTask

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
from hope.activelearning.scoring import suggestion_dice
from hope.audit import AuditLog
from hope.cases import CaseRepository, CaseVocabulary, load_vocabulary, make_engine, orthanc_study_exists
from hope.config import ConfigError, ServerSettings, TaskDefinition, config_dir, load_server_settings, load_task
from hope.console_sources import ConsoleSources
from hope.datastore.attachments import SeriesAttachments
from hope.datastore.gateway import OrthancGateway
from hope.datastore.label_maps import LabelMaps
from hope.datastore.measurement_reports import MeasurementReports
from hope.datastore.orthanc import OrthancDatastore
from hope.datastore.results import ResultStore
from hope.errors import InvalidInputError
from hope.fewshot.anatomy_features import AnatomyError, AnatomyFeatures, anatomy_features
from hope.fewshot.config import FewShotDefinition, load_fewshot_task
from hope.fewshot.support_library import LabelledSeries, SupportLibrary
from hope.infers.scribbles import StructureScribblesInfer
from hope.review import ReviewBook, series_state
from hope.server.paths import RuntimePaths
from hope.sync.service import SyncService
from hope.tasks.fewshot import TASK_CONFIGS, FewShotTaskConfig, FewShotWiring
from hope.tasks.segmentation import SegmentationTaskConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoreAccess:
    """How the server reaches its DICOM store: a DICOMweb URL (with credentials) or a local folder."""

    studies: str
    username: str = ""
    password: str = ""

    @property
    def is_dicomweb(self) -> bool:
        """Whether ``studies`` is a DICOMweb URL (else a local folder of NIfTI files)."""
        return self.studies.startswith(("http://", "https://"))


@dataclass
class Collaborators:
    """Everything the server is made of; built by :func:`build_collaborators`."""

    settings: ServerSettings
    paths: RuntimePaths
    datastore: Datastore
    tasks: dict[str, SegmentationTaskConfig]
    fewshot: dict[str, FewShotTaskConfig]
    infers: dict[str, InferTask]
    trainers: dict[str, TrainTask]
    strategies: dict[str, Strategy]
    scoring_methods: dict[str, ScoringMethod]
    leases: LeaseBook
    scores: ScoreStore
    reviews: ReviewBook
    audit: AuditLog
    gateway: OrthancGateway | None = None
    results: ResultStore | None = None
    case_repository: Callable[[], CaseRepository] | None = None
    sync: SyncService | None = None
    scoring_worker: ScoringWorker | None = None
    trained_fewshot: dict[str, FewShotTaskConfig] = field(default_factory=dict)
    reports: MeasurementReports | None = None

    @property
    def orthanc(self) -> OrthancDatastore | None:
        """The Orthanc datastore, or ``None`` for a local folder store."""
        return self.datastore if isinstance(self.datastore, OrthancDatastore) else None

    def eligible(self, task: str, series_uid: str) -> bool:
        """Whether ``task`` annotates the series (its modality is one of the task's)."""
        store = self.orthanc
        modality = store.modality(series_uid) if store is not None else None
        return modality is None or modality in self.tasks[task].definition.modalities

    def trigger_scoring(self) -> None:
        """Ask the background scoring worker for a run (nothing when background scoring is off)."""
        if self.scoring_worker is not None:
            self.scoring_worker.trigger()

    def modalities_of(self) -> dict[str, tuple[str, ...]]:
        """The modalities each served model annotates (a scribbles model: those of its task)."""
        found: dict[str, tuple[str, ...]] = {}
        for name, task in self.tasks.items():
            found[name] = found[f"{name}_scribbles"] = task.definition.modalities
        for name, fewshot in self.fewshot.items():
            found[name] = fewshot.definition.modalities
        return found

    def check_servable(self, model: str, image: object) -> None:
        """Refuse (422) inference on a series the store flagged invalid, or of a modality ``model`` does not annotate.

        Without this, a flagged series failed with a 500 deep in inference, and ``spine_ct`` answered an MR series
        with the CT model's output.
        """
        store = self.orthanc
        if store is None or not isinstance(image, str):
            return
        reasons = store.flagged.get(image)
        if reasons:
            raise InvalidInputError(f"series {image} was flagged invalid when it arrived: {'; '.join(reasons)}; "
                                    "send a corrected series")
        modalities = self.modalities_of()
        wanted, modality = modalities.get(model), store.modality(image)
        if wanted is None or modality is None or modality in wanted:
            return
        others = sorted(name for name, m in modalities.items() if modality in m)
        hint = f"use {', '.join(others)}" if others else f"no task of this server annotates {modality}"
        raise InvalidInputError(f"{model} annotates {', '.join(wanted)} series; series {image} is {modality}: {hint}")

    def label_approved(self, series_uid: str) -> None:
        """A reviewer approved a label: listings see it now, and it counts towards retraining."""
        if self.sync is not None:
            self.sync.label_approved(series_uid)
        elif isinstance(self.datastore, OrthancDatastore):
            self.datastore.invalidate()

    def label_states(self, series_uids: list[str]) -> dict[str, str]:
        """Each series' label state: unlabelled, suggested, submitted, approved or rejected with review on;
        unlabelled, suggested or final with it off."""
        review_on = self.settings.review.enabled
        finals = set() if review_on or self.orthanc is None else set(self.orthanc.final_labels())
        states = {}
        for uid in series_uids:
            if uid in finals:
                states[uid] = "final"
            else:
                review = self.reviews.state_of_series(uid) if review_on else None
                states[uid] = series_state(review, self.has_suggestion(uid)).value
        return states

    def has_suggestion(self, series_uid: str) -> bool:
        """Whether a model's suggestion of the series is kept (its review state is then ``suggested``)."""
        return self.sync is not None and self.sync.suggestions.has_any(series_uid)

    def started_from(self, series_uid: str) -> dict[str, Any] | None:
        """The suggestion the final label just saved for the series started from: its task, model version, when it
        was made (Unix time) and the Dice of the saved label against it; ``None`` without a kept suggestion."""
        store = self.orthanc
        if self.sync is None or store is None:
            return None
        label = store.saved_label_path(series_uid)
        for name, task in self.tasks.items():
            found = self.sync.suggestions.latest(name, series_uid)
            if found is None:
                continue
            record: dict[str, Any] = {"task": name, "model_version": found.model_version, "made": found.made,
                                      "dice": None}
            if label is not None:
                try:
                    record["dice"], record["dice_per_label"] = suggestion_dice(label, str(found.path),
                                                                               task.definition.labels)
                except (ValueError, RuntimeError, OSError) as exc:  # kept without Dice; the save stands
                    logger.warning(f"Dice of the label of {series_uid} against its suggestion: {exc}")
            return record
        return None

    def console(self) -> ConsoleSources:
        """What the web console reads (:mod:`hope.api.console`)."""
        registries = {name: task.registry for name, task in {**self.tasks, **self.fewshot}.items()}
        return ConsoleSources(
            store=self.orthanc, registries=registries, reviews=self.reviews,
            review_enabled=self.settings.review.enabled, audit=self.audit, leases=self.leases, scores=self.scores,
            strategies=lambda: self.strategies, sync=self.sync, gateway=self.gateway,
            scored_tasks={name: task.definition.modalities for name, task in self.tasks.items()},
            cases=self.case_repository, results=self.results, result_tasks=tuple(self.fewshot),
            measured=measured_modalities(task.definition for task in self.tasks.values()))

    def served_version(self, model: str) -> str | None:
        """The served model version of a task with weights, or ``None`` (a scribbles task has none)."""
        task = self.tasks.get(model) or self.fewshot.get(model)
        return task.registry.served_version() if task is not None else None


def measured_modalities(definitions: Iterable[TaskDefinition]) -> frozenset[str]:
    """The modalities whose labels HOPE measures: those of the tasks with ``measurements``."""
    return frozenset(m for d in definitions if d.measurements for m in d.modalities)


def build_collaborators(access: StoreAccess, conf: dict[str, str],
                        paths: RuntimePaths | None = None) -> Collaborators:
    """Parse the configuration and build the server's collaborators; a :class:`ConfigError` stops start-up.

    Args:
        access: the DICOM store (``--studies`` of ``monailabel start_server``) and its credentials.
        conf: MONAI Label's ``--conf`` key/values, handed to the TaskConfigs.
        paths: where runtime state goes (default: from the environment, see :class:`RuntimePaths`).
    """
    settings = load_server_settings()
    paths = paths or RuntimePaths.from_environment()
    definitions = {name: load_task(name) for name in settings.tasks}
    tasks = {}
    for name, definition in definitions.items():
        task = SegmentationTaskConfig()
        task.init(name, str(paths.models), conf, None, definition=definition)
        tasks[name] = task
    leases = LeaseBook(paths.activelearning / "leases.sqlite",
                       duration_s=60.0 * settings.activelearning.lease_minutes)
    scores = ScoreStore(paths.activelearning / "scores.sqlite")
    reviews = ReviewBook(paths.records / "reviews.sqlite")
    audit = AuditLog(paths.records / "audit.sqlite")

    gateway = None
    reports = None
    if access.is_dicomweb:
        gateway = OrthancGateway(access.studies, settings.datastore.timeout_seconds, access.username,
                                 access.password)
        measured = measured_modalities(definitions.values())
        if measured:
            reports = MeasurementReports(gateway.new_dicomweb_client().store_instances, measured)
        datastore: Datastore = OrthancDatastore(
            client_factory=gateway.new_dicomweb_client,
            settings=settings.datastore,
            label_maps=_store_labels(definitions),
            cache_path=paths.cache,
            gateway=gateway,
            max_label_bytes=settings.http.max_upload_bytes,
            label_gate=reviews.is_approved if settings.review.enabled else None,
            seg_stored=reports.seg_stored if reports is not None else None,
        )
    else:
        datastore = LocalDatastore(access.studies, extensions=("*.nii.gz", "*.nii", "*.nrrd"), auto_reload=True)

    infers: dict[str, InferTask] = {}
    for name, task in tasks.items():
        infers[name] = task.infer()
        if task.definition.interactive is not None:
            infers[f"{name}_scribbles"] = StructureScribblesInfer(task.definition)
    collab = Collaborators(settings=settings, paths=paths, datastore=datastore, tasks=tasks, fewshot={},
                           infers=infers, trainers={}, strategies={}, scoring_methods={}, leases=leases,
                           scores=scores, reviews=reviews, audit=audit, gateway=gateway, reports=reports)
    if gateway is not None and isinstance(datastore, OrthancDatastore):
        _build_fewshot(collab, gateway, datastore, definitions, conf)
    elif settings.fewshot_tasks:
        logger.warning("few-shot tasks need a DICOMweb store (their support sets live there); not served")
    collab.trainers = {name: task.trainer() for name, task in tasks.items()}
    for name, fewshot in collab.fewshot.items():
        trainer = fewshot.trainer()
        if trainer is not None:
            collab.trainers[name] = trainer
            collab.trained_fewshot[name] = fewshot
    collab.strategies = _strategies(collab)
    collab.scoring_methods = _scoring_methods(collab)
    return collab


def _store_labels(definitions: dict[str, TaskDefinition]) -> LabelMaps:
    """The label maps of the store's SEGs: each modality's supervised task's (a ConfigError for a clash)."""
    try:
        return LabelMaps.of_tasks((d.name, d.modalities, d.labels) for d in definitions.values())
    except ValueError as exc:
        raise ConfigError(f"{config_dir() / 'server.yaml'}: tasks: {exc}") from exc


def _build_fewshot(collab: Collaborators, gateway: OrthancGateway, datastore: OrthancDatastore,
                   definitions: dict[str, TaskDefinition], conf: dict[str, str]) -> None:
    vocabulary = load_vocabulary()
    collab.results = ResultStore(SeriesAttachments(gateway))
    collab.case_repository = functools.cache(
        lambda: CaseRepository(make_engine(vocabulary.database_url_for()), vocabulary, orthanc_study_exists(gateway))
    )
    label_maps = _store_labels(definitions)
    for name in collab.settings.fewshot_tasks:
        definition = load_fewshot_task(name)
        try:
            lesion_value = label_maps.value_of(definition.lesion_label, definition.modalities)
        except ValueError as exc:
            raise ConfigError(f"{config_dir() / 'tasks' / f'{name}.yaml'}: lesion_label: {exc}") from exc
        wiring = _fewshot_wiring(collab, datastore, definition, vocabulary, lesion_value)
        task = TASK_CONFIGS[definition.kind]()
        task.init(name, str(collab.paths.models), conf, None, definition=definition, wiring=wiring)
        collab.fewshot[name] = task
        collab.infers[name] = task.infer()


def _fewshot_wiring(collab: Collaborators, datastore: OrthancDatastore, definition: FewShotDefinition,
                    vocabulary: CaseVocabulary, lesion_value: int) -> FewShotWiring:
    """A few-shot task's support sets, images and final labels, all from the store and the case records."""
    assert collab.case_repository is not None
    records = collab.case_repository

    def labelled() -> list[LabelledSeries]:
        return [LabelledSeries(uid, seg.study_uid, seg.uid, modality) for uid, seg in datastore.final_labels().items()
                if (modality := datastore.modality(uid)) in definition.modalities]

    def load_image(series_uid: str) -> sitk.Image:
        return sitk.ReadImage(datastore.get_image_uri(series_uid))

    def load(series_uid: str) -> tuple[sitk.Image, sitk.Image]:
        label = datastore.get_label_uri(series_uid, DefaultLabelTag.FINAL, series_uid)
        return load_image(series_uid), sitk.ReadImage(label)

    def final_label(series_uid: str) -> str | None:
        if series_uid not in datastore.final_labels():
            return None
        return datastore.get_label_uri(series_uid, DefaultLabelTag.FINAL, series_uid) or None

    def list_images() -> list[str]:
        return [uid for uid in datastore.list_images() if datastore.modality(uid) in definition.modalities]

    segment = None
    if definition.inference.segment_with:
        segment = collab.infers.get(definition.inference.segment_with)
        if segment is None:
            raise ConfigError(
                f"{config_dir() / 'tasks' / f'{definition.name}.yaml'}: inference.segment_with names "
                f"{definition.inference.segment_with!r}, which is not served (served: {', '.join(collab.infers)}); "
                "list it in fewshot_tasks of server.yaml before this task"
            )
    library = SupportLibrary(lambda: records().list_cases(), labelled, load, definition.slices, lesion_value,
                             _anatomy(definition))
    return FewShotWiring(library=library, vocabulary=vocabulary, list_images=list_images, load_image=load_image,
                         final_label=final_label, segment=segment, modality_of=datastore.modality)


def _anatomy(definition: FewShotDefinition) -> AnatomyFeatures | None:
    """The anatomy features of a few-shot task's ``anatomy:`` section; a :class:`ConfigError` naming the file when
    its tasks or their weights are missing."""
    try:
        return anatomy_features(definition)
    except (ConfigError, FileNotFoundError, AnatomyError) as exc:
        raise ConfigError(f"{config_dir() / 'tasks' / f'{definition.name}.yaml'}: anatomy: {exc}") from exc


def _strategies(collab: Collaborators) -> dict[str, Strategy]:
    """Active-learning strategies; each leases a series to one annotator at a time."""
    names = list(collab.tasks)

    def version_of(task: str) -> str | None:
        return collab.tasks[task].registry.served_version()

    scored = {"scores": collab.scores, "tasks": names, "version_of": version_of}
    review = collab.reviews if collab.settings.review.enabled else None
    return {
        "random": RandomStrategy(collab.leases, names, eligible=collab.eligible, review=review),
        "epistemic": Epistemic(collab.leases, eligible=collab.eligible, review=review, **scored),
        "tta": TTA(collab.leases, eligible=collab.eligible, review=review, **scored),
        "rare_first": RareFirst(collab.leases, eligible=collab.eligible, review=review, **scored),
        "diverse": Diverse(collab.leases, collab.scores, names, eligible=collab.eligible, review=review),
    }


def _scoring_methods(collab: Collaborators) -> dict[str, ScoringMethod]:
    """Per task: uncertainty / tumour likelihood / features of unlabelled series, and suggestion Dice."""
    methods: dict[str, ScoringMethod] = {}
    for name, task in collab.tasks.items():
        definition = task.definition
        methods[f"uncertainty_{name}"] = UncertaintyScoring(
            name,
            collab.infers[name],
            task.network,
            task.registry,
            collab.scores,
            tumor_channel=definition.labels.get("tumor"),
            spacing_mm=definition.preprocessing.spacing,
            eligible=lambda uid, name=name: collab.eligible(name, uid),
        )
        methods[f"dice_{name}"] = SuggestionDiceScoring(name, definition.labels, collab.scores)
    return methods


def start_background(collab: Collaborators, run_infer: Callable[[str, str], str],
                     start_training: Callable[[str], str]) -> None:
    """Start what only the server runs: background scoring and, on Orthanc, the sync service.

    Args:
        collab: the collaborators; ``scoring_worker`` and ``sync`` are set here.
        run_infer: computes a task's suggestion for a series (bypassing precomputed ones); the label file's path.
        start_training: queues a training run of a task; a short description of what happened.
    """
    if collab.settings.activelearning.background_scoring:
        collab.scoring_worker = ScoringWorker(collab.scoring_methods, collab.datastore)
        collab.scoring_worker.trigger()
    store = collab.orthanc
    if store is None:
        return
    retrain = collab.settings.retrain
    collab.sync = SyncService(
        datastore=store,
        tasks={name: task.definition for name, task in collab.tasks.items()},
        versions=lambda name: collab.tasks[name].registry.served_version(),
        state_dir=collab.paths.sync,
        infer=run_infer,
        start_training=start_training,
        retrain_threshold=retrain.after_new_final_labels,
        retrain_enabled=retrain.enabled,
        model_poll_seconds=collab.settings.sync.model_poll_seconds,
        on_change=collab.trigger_scoring,
        count_stored_labels=not collab.settings.review.enabled,
    )
    collab.sync.start()
