"""Where the web console's numbers come from: HOPE's own records, read on each request, aggregated by
:mod:`hope.console_data`. No HTTP here; the routes are :mod:`hope.api.console`.

Each method answers one panel of the console and reads only what that panel needs, so a page with 10,000 series
never loads them all into the browser: series come a page at a time (:meth:`ConsoleSources.series`). A series'
measurements are read from the store when asked for (:meth:`ConsoleSources.measurements`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Collection, Mapping
from dataclasses import asdict, dataclass
from typing import Any
from urllib.parse import quote

import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset

from hope.activelearning import LeaseBook, ScoreStore
from hope.audit import AuditAction, AuditEntry, AuditLog
from hope.audit.log import MAX_LIMIT
from hope.cases import CaseRepository
from hope.console_data import (
    SeriesRow,
    classify,
    is_measurement_report,
    new_final_labels,
    newest_report,
    no_report_reason,
    page,
    report_answer,
    saved_labels,
    score_distribution,
    state_counts,
    support_per_type,
    team_stats,
)
from hope.datastore.gateway import OrthancGateway
from hope.datastore.orthanc import OrthancDatastore
from hope.datastore.results import ResultStore
from hope.datastore.seg_index import SeriesRecord
from hope.errors import ConflictError, HopeError, NotFoundError, StoreError
from hope.models.registry import ModelRegistry
from hope.review import ReviewBook, ReviewState
from hope.sync.service import SyncService

#: How many labels awaiting review the team panel lists (oldest first).
QUEUE_SHOWN = 10


@dataclass
class ConsoleSources:
    """The collaborators the console reads (built by the composition root, :mod:`hope.server.routes`)."""

    store: OrthancDatastore | None
    registries: Mapping[str, ModelRegistry]
    reviews: ReviewBook
    review_enabled: bool
    audit: AuditLog
    leases: LeaseBook
    scores: ScoreStore
    strategies: Callable[[], Collection[str]]
    scored_tasks: Mapping[str, Collection[str]]  # supervised task -> the modalities it annotates
    sync: SyncService | None = None
    gateway: OrthancGateway | None = None
    cases: Callable[[], CaseRepository] | None = None
    results: ResultStore | None = None
    result_tasks: Collection[str] = ()
    measured: Collection[str] = ()  # the modalities whose labels are measured (a task with measurements)

    # ------------------------------------------------------------------------------------------------ data
    def _rows(self) -> list[SeriesRow]:
        if self.store is None:
            return []
        suggestions: dict[str, str] = {}
        if self.sync is not None:
            for uid, state in self.sync.suggestions.state().items():
                versions = [str(s["model_version"]) for s in dict(state.get("suggestions", {})).values()]
                if versions:
                    suggestions[uid] = max(versions)
        return classify(self.store.image_records(), self.store.flagged, set(self.store.final_labels()),
                        self.reviews.latest_states() if self.review_enabled else {}, suggestions)

    def overview(self) -> dict[str, Any]:
        """Series per modality and state, each task's models and new final labels, the retraining switch."""
        finals = self.store.final_labels() if self.store is not None else {}
        tasks = {}
        for name, registry in sorted(self.registries.items()):
            versions = registry.versions()
            trained_on = set(versions[-1].training_data) if versions else set()
            new = None
            if name in self.scored_tasks and self.store is not None:
                segs = [seg.uid for uid, seg in finals.items() if self.store.modality(uid) in self.scored_tasks[name]]
                new = new_final_labels(segs, trained_on)
            tasks[name] = {"serving": registry.served_version(), "pinned": registry.pinned(),
                           "versions": len(versions), "new_final_labels": new}
        return {
            "review_enabled": self.review_enabled,
            "series": state_counts(self._rows()),
            "tasks": tasks,
            "retrain": self.sync.retrain.state() if self.sync is not None else None,
        }

    def series(self, state: str | None, modality: str | None, limit: int, offset: int) -> dict[str, Any]:
        """One page of series (newest first) matching ``state`` and ``modality``, how many match, and the modalities
        whose labels are measured."""
        found = page(self._rows(), state, modality, limit, offset)
        return {"total": found.total, "offset": found.offset, "items": [asdict(row) for row in found.items],
                "measured_modalities": sorted(self.measured)}

    # ------------------------------------------------------------------------------------------------ team
    def _label_entries(self) -> list[AuditEntry]:
        entries: list[AuditEntry] = []
        for action in (AuditAction.LABEL_SAVED, AuditAction.LABEL_SUBMITTED):
            offset = 0
            while batch := self.audit.query(action=action, limit=MAX_LIMIT, offset=offset):
                entries += batch
                offset += len(batch)
        return entries

    def team(self) -> dict[str, Any]:
        """Per annotator: labels, final labels, rejections, time from suggestion to final, suggestion Dice; and
        the review queue (review on)."""
        submissions = self.reviews.submissions() if self.review_enabled else None
        stats = team_stats(saved_labels(self._label_entries()), submissions)
        review = None
        if self.review_enabled:
            waiting = self.reviews.counts()[ReviewState.SUBMITTED]
            review = {"waiting": waiting,
                      "oldest": [asdict(sub) for sub in self.reviews.queue(QUEUE_SHOWN)] if waiting else []}
        return {"annotators": [person.as_dict() for person in stats], "review": review}

    # --------------------------------------------------------------------------------------- active learning
    def activelearning(self) -> dict[str, Any]:
        """The strategies, the leases held (and by which strategy they were handed out), the score distributions."""
        leases = sorted(self.leases.active().values(), key=lambda lease: lease.granted)
        return {
            "strategies": sorted(self.strategies()),
            "in_use": dict(Counter(lease.strategy or "unknown" for lease in leases)),
            "leases": [asdict(lease) for lease in leases],
            "scores": {task: score_distribution(self.scores.newest(task).values())
                       for task in sorted(self.scored_tasks)},
        }

    # ------------------------------------------------------------------------------------------- store link
    def store_link(self) -> dict[str, Any]:
        """The plugin's outbox in Orthanc (``GET /hope/outbox`` through the gateway), and whether HOPE reaches
        Orthanc and Orthanc's plugin reaches HOPE (no pending event whose delivery failed)."""
        if self.gateway is None:
            return {"hope_sees_orthanc": None, "orthanc_sees_hope": None, "outbox": None,
                    "error": "this server's store is a local folder, not Orthanc"}
        try:
            answer = self.gateway.rest("GET", "/hope/outbox")
        except StoreError as exc:
            return {"hope_sees_orthanc": False, "orthanc_sees_hope": None, "outbox": None, "error": exc.reason}
        if not answer.ok:
            return {"hope_sees_orthanc": True, "orthanc_sees_hope": None, "outbox": None,
                    "error": f"Orthanc answered GET /hope/outbox with HTTP {answer.status_code}: is HOPE's plugin "
                             "loaded (orthanc/hope_plugin.py)?"}
        outbox = answer.json()
        failing = [event for event in outbox.get("troubled", []) if event.get("status") == "pending"]
        return {"hope_sees_orthanc": True, "orthanc_sees_hope": not failing, "outbox": outbox,
                "error": failing[-1]["last_error"] if failing else None}

    def retry_event(self, event_id: str) -> dict[str, Any]:
        """Ask the plugin to deliver a rejected outbox event again (``POST /hope/outbox/<id>/retry`` in Orthanc).

        Raises:
            NotFoundError: the store is not Orthanc, or its plugin has no retry route.
            ConflictError: the event is not a rejected one.
            StoreError: Orthanc could not be asked, or failed.
        """
        if self.gateway is None:
            raise NotFoundError("this server's store is a local folder, not Orthanc: there is no outbox")
        answer = self.gateway.rest("POST", f"/hope/outbox/{quote(event_id, safe=':')}/retry")
        if answer.status_code == 409:
            raise ConflictError(str(answer.json().get("error")))
        if answer.status_code == 404:
            raise NotFoundError("Orthanc has no POST /hope/outbox/<id>/retry: update HOPE's plugin and restart Orthanc")
        if not answer.ok:
            raise StoreError(f"Orthanc answered the retry of {event_id} with HTTP {answer.status_code}: {answer.text}")
        return dict(answer.json())

    # --------------------------------------------------------------------------------------- rare tumour types
    def rare_types(self, limit: int, offset: int) -> dict[str, Any]:
        """Case records and support cases per tumour type, and one page of case records with their series and the
        latest few-shot and grade results kept on those series."""
        if self.cases is None or self.store is None:
            return {"types": {}, "total": 0, "offset": offset, "items": []}
        cases = self.cases().list_cases()
        finals = self.store.final_labels()
        labelled_studies = {seg.study_uid for seg in finals.values()}
        series_of: dict[str, list[str]] = defaultdict(list)
        for record in self.store.image_records():
            series_of[record.study_uid].append(record.uid)
        items = []
        for case in cases[offset:offset + limit]:
            series = series_of.get(case.study_uid, [])
            items.append({**asdict(case), "support": case.study_uid in labelled_studies, "series": series,
                          "results": {uid: self._results(uid) for uid in series}})
        return {"types": support_per_type(cases, labelled_studies), "total": len(cases), "offset": offset,
                "items": items}

    def _results(self, series_uid: str) -> dict[str, Any]:
        found: dict[str, Any] = {}
        if self.results is None:
            return found
        for task in self.result_tasks:
            try:
                kept = self.results.latest(task, series_uid)
            except HopeError as exc:  # one unreadable attachment must not hide the others
                kept = {"error": exc.reason}
            if kept is not None:
                found[task] = kept
        return found

    # ------------------------------------------------------------------------------------------- measurements
    def measurements(self, series_uid: str) -> dict[str, Any]:
        """The spine measurements of the newest HOPE measurement report (a DICOM SR in the series' study) whose
        evidence lists the image series ``series_uid``: QIDO-RS finds the series' study and the SRs in it, WADO-RS
        reads HOPE's (:func:`hope.console_data.report_answer` gives the answer's shape).

        Raises:
            NotFoundError: the store is not Orthanc, has no such series, or the series has no report (with why).
            StoreError: Orthanc could not be asked, or the report is not one HOPE can read.
        """
        if self.gateway is None:
            raise NotFoundError("this server's store is a local folder, not Orthanc: it keeps no measurement reports")
        client = self.gateway.dicomweb()
        try:
            series = self._image_series(client, series_uid)
            reports = self._reports(client, series.study_uid)
        except requests.RequestException as exc:
            raise StoreError(f"cannot read the measurement reports of series {series_uid} in the DICOM store: "
                             f"{exc}") from exc
        newest = newest_report(series_uid, reports)
        if newest is None:
            raise NotFoundError(no_report_reason(series_uid, series.modality, self.measured))
        try:
            return report_answer(series_uid, newest)
        except ValueError as exc:
            raise StoreError(f"the measurement report {newest.SeriesInstanceUID} of series {series_uid} cannot be "
                             f"read: {exc}") from exc

    @staticmethod
    def _image_series(client: DICOMwebClient, series_uid: str) -> SeriesRecord:
        found = client.search_for_series(search_filters={"SeriesInstanceUID": series_uid}, fields=["Modality"])
        record = next((r for r in map(SeriesRecord.from_qido, found) if r.uid == series_uid), None)
        if record is None:
            raise NotFoundError(f"series {series_uid} is not in the DICOM store")
        return record

    @staticmethod
    def _reports(client: DICOMwebClient, study_uid: str) -> list[Dataset]:
        """Every instance of HOPE's measurement reports in the study."""
        listed = client.search_for_series(study_uid, search_filters={"Modality": "SR"},
                                          fields=["SeriesNumber", "SeriesDescription"], get_remaining=True)
        reports = [Dataset.from_json(item) for item in listed]
        return [sr for series in reports if is_measurement_report(series)
                for sr in client.retrieve_series(study_uid, str(series.SeriesInstanceUID))]
