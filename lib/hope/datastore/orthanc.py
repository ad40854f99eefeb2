"""HOPE's datastore on a DICOMweb store (Orthanc): images are series, final labels are DICOM SEG.

What it does beyond MONAI Label's stock ``DICOMWebDatastore``:

* lists every image modality configured (CT, MR, CR, DX by default), never SEG, SR or other non-images;
* caches listings for seconds, not hours (an old one is answered while a fresh one is fetched behind it:
  :mod:`hope.datastore.listing`; a store whose listing takes long is listed less often), applies its own writes
  and the store's events (one series each) to the listing it holds instead of listing the store again;
* indexes each listing by UID and resolves each SEG's image series once, kept in the cache folder across restarts
  (:mod:`hope.datastore.seg_index`), so a store of thousands of series and SEGs costs no request per SEG and no
  scan per lookup;
* answers an unknown series with 404 and a non-image series with 422, with the reason;
* caches a series only once Orthanc has stopped receiving it (``IsStable``), and uses a cached copy only while
  Orthanc holds as many instances of the series as were fetched (one ``POST /tools/find`` per use): a cached copy
  that no longer matches the store (a series that grew, or a cache written before this check) is fetched again,
  and a series still arriving is waited for (``stable_wait_seconds``), then refused with a
  :class:`~hope.errors.ConflictError` (409), never served truncated;
* checks an uploaded label file before reading it (:mod:`hope.datastore.label_files`): a truncated or corrupt file,
  a header that declares another grid, and a volume larger than ``http.max_upload_mb`` are refused (422, 413)
  before anything is decompressed into memory or allocated;
* writes SEG in-process with highdicom after checking the label lies on the image grid (422 otherwise), so
  nothing half-written reaches the store; no dcmqi binary is downloaded or run;
* reads SEGs back with highdicom onto the image grid, the newest SEG per series being the final label;
* with a ``label_gate`` (label review on), counts only the SEGs the gate accepts (by SOP Instance UID): the final
  label of a series is its newest accepted SEG, and listing, training and support sets see no other.

Saving a final label is all-or-nothing, verified, and safe to repeat:

* **Verified.** A SEG counts as stored only when, after the STOW-RS, a QIDO-RS read-back finds its SOP Instance
  UID. The STOW-RS answer alone is not trusted: Orthanc answers 200 with empty FailedSOPSequence and
  ReferencedSOPSequence when its storage cannot write, and 1.10 lists an instance a filter dropped as referenced.
  A SEG that is not found is a :class:`~hope.errors.StoreError` (502), and nothing is cached as the final label.
* **Cache last, prepared first.** The cached NIfTI is written (in the cache's file system) before the STOW-RS, so
  a full disk fails the save before anything is stored; after a verified STOW-RS only the cache's bookkeeping is
  left, and its failure is logged, not answered: the store is the source of truth, and the cache is refreshed
  from it whenever its SEG UID differs from the store's newest.
* **Idempotent.** A SEG's Series and SOP Instance UIDs are derived (``generate_uid(entropy_srcs=...)``) from a
  SHA-256 of its content (the image series UID, the label's shape and voxels, its segments' names and values) and
  from the UID of the final SEG it replaces ("" for none). A retry of a save that reached the store finds the
  series' final SEG equal to the UID derived from its label and that SEG's predecessor (one of the series' other
  SEGs, or none): the label is already final, and nothing is stored. A retry racing a save still in flight (or
  reading a listing cached before that save landed) sees the same final SEG, derives the same UIDs, and the store
  receives the same instance twice and keeps one. Because the predecessor is part of the identity, saving label A,
  then B, then A again stores a third SEG, which becomes the final label. The record lives in the SEGs themselves
  (their UIDs), not in a local index that a lost cache would forget.

The local folder is a cache (MONAI Label's ``LocalDatastore``); the store is the source of truth.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import requests
import SimpleITK as sitk
from dicomweb_client import DICOMwebClient
from monailabel.datastore.local import LocalDatastore
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from hope import fileio
from hope.config import DatastoreSettings
from hope.config.server import HttpSettings
from hope.datastore.gateway import OrthancGateway
from hope.datastore.label_files import read_label_on_grid
from hope.datastore.label_maps import LabelMaps
from hope.datastore.listing import REFRESH_COST_FACTOR, SeriesListing
from hope.datastore.seg_index import SegReferences, SeriesRecord, StoreIndex
from hope.dicom.seg import label_to_seg, seg_to_label
from hope.dicom.volume import label_like, read_datasets, read_series, write_volume
from hope.errors import ConflictError, InvalidInputError, NotFoundError, StoreError

logger = logging.getLogger(__name__)

#: Told of a stored SEG: (image series UID, its modality, the SEG, its label image, label map, image datasets).
SegStored = Callable[[str, str | None, Dataset, sitk.Image, dict[str, int], list[Dataset]], object]

__all__ = ["OrthancDatastore", "SeriesRecord", "SeriesState"]

_SERIES_FIELDS = ("Modality", "SeriesDate", "SeriesTime", "SeriesNumber", "SeriesDescription", "StudyInstanceUID")
#: The image info key of a cached series that records how many instances were fetched.
_FETCHED_INSTANCES = "instances"
#: The cache folder's file of resolved SEG references (:class:`~hope.datastore.seg_index.SegReferences`).
SEG_REFERENCES_FILE = "seg-references.json"
#: Seconds between two questions to Orthanc while waiting for a series to become stable.
STABLE_POLL_SECONDS = 0.5


@dataclass(frozen=True)
class SeriesState:
    """What Orthanc holds of a series now: its instance count, and whether it has stopped receiving (stable)."""

    instances: int
    stable: bool


class OrthancDatastore(LocalDatastore):
    """A MONAI Label datastore backed by a DICOMweb store, with a local cache folder.

    Args:
        client_factory: makes a DICOMweb client of the store (one per thread).
        settings: the store's settings (modalities listed, listing cache, timeout).
        label_maps: label name -> voxel value of the store's SEGs, per image modality.
        cache_path: the local cache folder.
        gateway: Orthanc's REST API, asked whether a series is stable and how many instances it holds.
        max_label_bytes: the largest label file, and decompressed label volume, accepted (``http.max_upload_mb``).
        label_gate: whether a SEG, by its SOP Instance UID, counts as a final label (e.g.
            :meth:`hope.review.ReviewBook.is_approved`); ``None``: every SEG counts.
        seg_stored: told of every SEG stored, once it is in the store (e.g.
            :meth:`hope.datastore.measurement_reports.MeasurementReports.seg_stored`): the image series' UID and
            modality, the SEG, its label image, the label map and the image's datasets.
    """

    def __init__(
        self,
        client_factory: Callable[[], DICOMwebClient],
        settings: DatastoreSettings,
        label_maps: LabelMaps,
        cache_path: Path,
        gateway: OrthancGateway,
        max_label_bytes: int = HttpSettings().max_upload_bytes,
        label_gate: Callable[[str], bool] | None = None,
        seg_stored: SegStored | None = None,
    ) -> None:
        self._client_factory = client_factory
        self._gateway = gateway
        self._fetch_locks: dict[str, threading.Lock] = {}
        self._max_label_bytes = max_label_bytes
        self._clients = threading.local()
        self._settings = settings
        self._label_maps = label_maps
        self._listing: SeriesListing[StoreIndex] = SeriesListing(self._list_series, settings.list_cache_seconds,
                                                                 REFRESH_COST_FACTOR)
        self._fetch_locks_guard = threading.Lock()
        self._label_gate = label_gate
        self._seg_stored = seg_stored
        self.skipped_labels: dict[str, str] = {}
        self._segs = SegReferences(Path(cache_path) / SEG_REFERENCES_FILE,
                                   lambda study, series: self._client.retrieve_series_metadata(study, series),
                                   self.skipped_labels)
        self._flags_path = Path(cache_path) / "flagged.json"
        self.flagged: dict[str, list[str]] = (
            json.loads(self._flags_path.read_text()) if self._flags_path.exists() else {}
        )
        super().__init__(datastore_path=str(cache_path), auto_reload=False)

    @property
    def _client(self) -> DICOMwebClient:
        """This thread's DICOMweb client (a client and its HTTP session are not safe to share across threads)."""
        client = getattr(self._clients, "client", None)
        if client is None:
            client = self._clients.client = self._client_factory()
        return client

    # ----------------------------------------------------------------------------------------------- listing
    def name(self) -> str:
        """The store's DICOMweb URL."""
        return str(self._client.base_url)

    def invalidate(self) -> None:
        """Forget the cached listing, so the next call asks the store (:class:`SeriesListing`)."""
        self._listing.invalidate()

    def _all_series(self) -> list[SeriesRecord]:
        return self._listing.get().records

    def _list_series(self) -> StoreIndex:
        """List the store (one QIDO-RS) and index the listing."""
        try:
            found = self._client.search_for_series(fields=list(_SERIES_FIELDS), get_remaining=True)
        except requests.RequestException as exc:
            raise StoreError(f"cannot list series in the DICOM store {self.name()}: {exc}") from exc
        return StoreIndex([SeriesRecord.from_qido(item) for item in found], self._segs, self._settings.modalities)

    def refresh_series(self, series_uid: str) -> None:
        """Bring one series the store reported (a store event) into the listing held, asking the store about that
        series only (one QIDO-RS) instead of listing it again; when that fails, the listing is dropped instead.

        Without a listing held, the answer is dropped: the next call lists the store anyway.
        """
        try:
            found = self._client.search_for_series(search_filters={"SeriesInstanceUID": series_uid},
                                                   fields=list(_SERIES_FIELDS))
        except requests.RequestException as exc:
            logger.warning(f"cannot look up series {series_uid} in the DICOM store ({exc}); the listing is dropped")
            self.invalidate()
            return
        records = [r for r in map(SeriesRecord.from_qido, found) if r.uid == series_uid]
        self._listing.update(lambda index: index.with_series(*records))

    def list_images(self) -> list[str]:
        """SeriesInstanceUIDs of every image series of a configured modality that was not flagged invalid."""
        flagged = self.flagged
        return [uid for uid in self._listing.get().images if uid not in flagged]

    def image_records(self) -> list[SeriesRecord]:
        """Every image series of a configured modality, flagged ones included, as listed (cached for seconds)."""
        index = self._listing.get()
        return [index.by_uid[uid] for uid in index.images]

    def modality(self, series_uid: str) -> str | None:
        """The modality of a series, asked of the store (and listed from then on) when it arrived after the listing
        was made; ``None`` when the store has no such series.

        Raises:
            StoreError: the store could not be asked.
        """
        try:
            return self._series(series_uid).modality
        except NotFoundError:
            return None

    def label_map_of(self, series_uid: str) -> dict[str, int]:
        """Label name -> voxel value of the SEGs of the series (its modality's supervised task's labels)."""
        return self._label_maps.of(self.modality(series_uid))

    def flag(self, series_uid: str, reasons: list[str]) -> None:
        """Keep an invalid series out of the annotation pool, with its reasons (nothing is deleted)."""
        self.flagged[series_uid] = list(reasons)
        fileio.write_json(self._flags_path, self.flagged, indent=1)  # listings leave flagged series out as asked

    def final_labels(self) -> dict[str, SeriesRecord]:
        """The newest SEG series the label gate accepts of each listed image series, keyed by the image's
        SeriesInstanceUID (without a gate, the newest SEG series)."""
        flagged = self.flagged
        finals = self._listing.get().final_labels(self._label_gate)
        return {uid: seg for uid, seg in finals.items() if uid not in flagged} if flagged else finals

    def _newest_segs(self) -> dict[str, SeriesRecord]:
        """The newest SEG series of each listed image series, whether the label gate accepts it or not."""
        return self._listing.get().final_labels()

    def get_labeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        """Image series that have a final label (a SEG) in the store."""
        return list(self.final_labels())

    def get_unlabeled_images(self, label_tag: str | None = None, labels: list[str] | None = None) -> list[str]:
        """Image series without a final label."""
        labelled = set(self.final_labels())
        return [uid for uid in self.list_images() if uid not in labelled]

    def status(self) -> dict[str, Any]:
        """Counts from the store itself, not from the cache."""
        images = self.list_images()
        labelled = self.final_labels()
        return {
            "total": len(images),
            "completed": len(labelled),
            "label_tags": {DefaultLabelTag.FINAL.value: len(labelled)},
            "skipped_labels": dict(self.skipped_labels),
        }

    def json(self) -> dict[str, Any]:
        """Every listed image series with its modality and, when labelled, its final SEG (from the store)."""
        records = self._listing.get().by_uid
        finals = self.final_labels()
        objects = {}
        for uid in self.list_images():
            rec = records[uid]
            final = {"info": {"seg_series_uid": finals[uid].uid}} if uid in finals else None
            labels = {DefaultLabelTag.FINAL.value: final} if final else {}
            info = {"Modality": rec.modality, "StudyInstanceUID": rec.study_uid, "SeriesDate": rec.date}
            objects[uid] = {"image": {"info": info}, "labels": labels}
        return {"name": self.name(), "objects": objects}

    # ------------------------------------------------------------------------------------------------ images
    def _series(self, series_uid: str) -> SeriesRecord:
        record = self._listing.get().by_uid.get(series_uid)
        if record is not None:
            return record
        try:
            found = self._client.search_for_series(search_filters={"SeriesInstanceUID": series_uid})
        except requests.RequestException as exc:
            raise StoreError(f"cannot look up series {series_uid} in the DICOM store: {exc}") from exc
        if not found:
            raise NotFoundError(f"series {series_uid} is not in the DICOM store {self.name()}")
        record = SeriesRecord.from_qido(found[0])
        self._listing.update(lambda index: index.with_series(record))  # listed now, without listing the store again
        return record

    def _image_series(self, series_uid: str) -> SeriesRecord:
        record = self._series(series_uid)
        if record.modality not in self._settings.modalities:
            raise InvalidInputError(
                f"series {series_uid} has modality {record.modality or 'unknown'}, not an image modality HOPE "
                f"annotates ({', '.join(self._settings.modalities)}); pick the image series it refers to"
            )
        return record

    def _series_dir(self, series_uid: str) -> Path:
        return Path(self._datastore.image_path()) / series_uid

    def series_state(self, series_uid: str) -> SeriesState:
        """How many instances Orthanc holds of the series now, and whether it is stable (one REST request).

        Raises:
            NotFoundError: the store has no series of this UID.
            StoreError: Orthanc did not answer, or refused the request.
        """
        query = {"Level": "Series", "Query": {"SeriesInstanceUID": series_uid}, "Expand": True}
        response = self._gateway.rest("POST", "/tools/find", json=query)
        if not response.ok:
            raise StoreError(f"Orthanc could not look up series {series_uid}: {response.status_code} "
                             f"{response.text[:200]}")
        found = [s for s in response.json()  # an exact match: Orthanc's find treats * and ? as wildcards
                 if s.get("MainDicomTags", {}).get("SeriesInstanceUID") == series_uid]
        if not found:
            raise NotFoundError(f"series {series_uid} is not in the DICOM store {self.name()}")
        return SeriesState(instances=sum(len(s.get("Instances") or []) for s in found),
                           stable=all(bool(s.get("IsStable")) for s in found))

    def _fetch_lock(self, series_uid: str) -> threading.Lock:
        """The lock that makes one thread at a time fetch a given series."""
        with self._fetch_locks_guard:
            return self._fetch_locks.setdefault(series_uid, threading.Lock())

    def _cached_image(self, image_id: str, state: SeriesState) -> str | None:
        """The cached NIfTI of the series when it was made from as many instances as the store holds now."""
        nifti = Path(self._datastore.image_path()) / f"{image_id}.nii.gz"
        obj = self._datastore.objects.get(image_id)
        fetched = obj.image.info.get(_FETCHED_INSTANCES) if obj is not None else None
        return str(nifti) if fetched == state.instances and nifti.exists() else None

    def _download(self, record: SeriesRecord, dest: Path) -> int:
        """Fetch a series with WADO-RS into ``dest``, replacing what was there (a partial download never lands);
        the number of instances fetched."""
        try:
            datasets = self._client.retrieve_series(
                record.study_uid, record.uid, media_types=(("application/dicom", "*"),)
            )
        except requests.RequestException as exc:
            raise StoreError(f"cannot retrieve series {record.uid} from the DICOM store: {exc}") from exc
        if not datasets:
            raise StoreError(f"series {record.uid} has no instance in the DICOM store; the store changed while it "
                             "was read, try again")
        tmp = Path(tempfile.mkdtemp(dir=dest.parent, prefix=f".{dest.name}."))
        try:
            for i, ds in enumerate(datasets):
                ds.save_as(tmp / f"{i:05d}.dcm", write_like_original=False)
            shutil.rmtree(dest, ignore_errors=True)
            try:
                tmp.rename(dest)
            except OSError:
                if not dest.is_dir():  # else another process (a training run) fetched it meanwhile
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return len(datasets)

    def get_image_uri(self, image_id: str) -> str:
        """Local NIfTI of the series, fetched and converted when it is not cached or no longer matches the store.

        Each use asks Orthanc for the series' instance count (see :meth:`series_state`); a cached copy made from
        another count (the series grew since, or the copy predates this check) is fetched again, and its cached
        labels, drawn on the old grid, are dropped. Only a stable series is fetched: one still arriving is waited
        for, ``stable_wait_seconds`` at most.

        Raises:
            NotFoundError: the series is not in the store.
            InvalidInputError: the series is not of an image modality HOPE annotates.
            ConflictError: the series is still arriving in the store (not stable yet).
            StoreError: the store could not be reached.
        """
        with self._fetch_lock(image_id):
            state = self.series_state(image_id)
            cached = self._cached_image(image_id, state)
            if cached is not None:
                return cached
            record = self._image_series(image_id)
            deadline = time.monotonic() + self._settings.stable_wait_seconds
            while not state.stable and time.monotonic() < deadline:
                time.sleep(STABLE_POLL_SECONDS)
                state = self.series_state(image_id)
            if not state.stable:
                raise ConflictError(
                    f"series {image_id} is still arriving in the DICOM store ({state.instances} instances so far); "
                    "try again in a few seconds, once the store has received all of it"
                )
            fetched = self._download(record, self._series_dir(image_id))
            if fetched != state.instances:
                logger.info(f"series {image_id} changed while it was fetched ({state.instances} instances listed, "
                            f"{fetched} fetched); it is fetched again at its next use")
            with tempfile.TemporaryDirectory() as tmp:
                converted = write_volume(read_series(self._series_dir(image_id)), Path(tmp) / f"{image_id}.nii.gz")
                info = {"SeriesInstanceUID": image_id, "StudyInstanceUID": record.study_uid,
                        "Modality": record.modality, _FETCHED_INSTANCES: fetched}
                self.add_image(image_id, str(converted), info)  # a new entry: labels cached on an old grid go
        return str(Path(self._datastore.image_path()) / f"{image_id}.nii.gz")

    # ------------------------------------------------------------------------------------------------ labels
    def _validated_label(self, image_id: str, label_file: Path, work_dir: Path) -> tuple[sitk.Image, np.ndarray]:
        image = sitk.ReadImage(self.get_image_uri(image_id))
        label = read_label_on_grid(label_file, image, image_id, self._max_label_bytes, work_dir)
        array = sitk.GetArrayFromImage(label)
        labels = self.label_map_of(image_id)
        unknown = sorted(set(np.unique(array).tolist()) - {0, *labels.values()})
        if unknown:
            raise InvalidInputError(
                f"label values {unknown} are not defined for {self.modality(image_id)} series; known labels are "
                f"{labels}"
            )
        return label, array.astype(np.uint8)

    def save_label(
        self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]
    ) -> str:
        """Check the label; for tag ``final`` store it as a verified DICOM SEG; then cache it locally.

        All-or-nothing and safe to repeat (see the module's docstring). Temporary files are removed whatever
        happens; ``label_filename`` is the caller's.

        Args:
            image_id: the image's SeriesInstanceUID.
            label_filename: the label file (see :mod:`hope.datastore.label_files` for the formats).
            label_tag: ``final`` (a SEG in the store) or another tag (cached locally only).
            label_info: the client's ``params``: ``user`` becomes the SEG's content creator, ``description`` its
                series description.

        Raises:
            InvalidInputError: the label is unreadable, truncated, off the image's grid, empty, or has values the
                task does not define.
            TooLargeError: the label file, or the volume it declares, is larger than ``max_label_bytes``.
            NotFoundError: the image series is not in the store.
            StoreError: the store could not be reached, or did not store the SEG.
        """
        info = dict(label_info or {})
        with tempfile.TemporaryDirectory(prefix=".saving-", dir=self._datastore.image_path()) as tmp:
            work = Path(tmp)
            label, array = self._validated_label(image_id, Path(label_filename), work)
            cached = write_volume(label, work / "cache" / f"{image_id}.nii.gz")
            if label_tag != DefaultLabelTag.FINAL:
                return super().save_label(image_id, str(cached), label_tag, info)
            info.update(self._store_seg(image_id, label, array, info))
            try:
                return super().save_label(image_id, str(cached), label_tag, info)
            except OSError as exc:
                logger.warning(f"SEG {info['seg_series_uid']} of series {image_id} is stored, but the local cache "
                               f"was not updated ({exc}); it is refreshed from the DICOM store when next used")
                return image_id

    def _store_seg(self, image_id: str, label: sitk.Image, array: np.ndarray, info: Mapping[str, Any]
                   ) -> dict[str, str]:
        if not array.any():
            raise InvalidInputError(f"the label for series {image_id} is empty; draw at least one structure")
        current = self._newest_segs().get(image_id)  # gated or not: a repeated save finds the SEG it stored
        labels = self.label_map_of(image_id)
        digest = _label_digest(image_id, array, labels)
        already = self._already_final(image_id, digest, current)
        if already is not None:
            logger.info(f"the label of series {image_id} is its final SEG {already['seg_series_uid']} already; "
                        "nothing stored")
            return already
        series_uid, sop_uid = _content_uids(digest, current.uid if current else "")
        sources = read_datasets(self._series_dir(image_id))
        seg = label_to_seg(
            array,
            sources,
            labels,
            series_description=str(info.get("description", "HOPE final label")),
            content_creator=str(info["user"]) if info.get("user") else None,
            series_instance_uid=series_uid,
            sop_instance_uid=sop_uid,
        )
        if info.get("user"):
            seg.OperatorsName = str(info["user"])  # who made it, for the series too (the content creator is per SEG)
        now = datetime.now()
        seg.SeriesDate = now.strftime("%Y%m%d")
        seg.SeriesTime = now.strftime("%H%M%S.%f")
        try:
            response = self._client.store_instances([seg])
        except requests.RequestException as exc:
            raise StoreError(f"the DICOM store refused the SEG for series {image_id}: {exc}") from exc
        self._verify_stored(image_id, seg, response)
        self._segs.add(series_uid, image_id, sop_uid)
        stored = SeriesRecord(uid=series_uid, study_uid=str(seg.StudyInstanceUID), modality="SEG",
                              date=seg.SeriesDate, time=seg.SeriesTime)
        self._listing.update(lambda index: index.with_series(stored))  # listed at once, without asking the store
        logger.info(f"stored SEG {series_uid} for series {image_id}")
        if self._seg_stored is not None:
            self._seg_stored(image_id, self.modality(image_id), seg, label, labels, sources)
        return {"seg_series_uid": series_uid, "seg_sop_uid": sop_uid}

    def _already_final(self, image_id: str, digest: str, current: SeriesRecord | None) -> dict[str, str] | None:
        """The UIDs of ``current`` when it is the SEG of this very label (a repeated save), else ``None``."""
        if current is None:
            return None
        predecessors = {""} | {uid for uid in self._segs.segs_of(image_id) if uid != current.uid}
        for predecessor in sorted(predecessors):
            series_uid, sop_uid = _content_uids(digest, predecessor)
            if series_uid == current.uid:
                return {"seg_series_uid": series_uid, "seg_sop_uid": sop_uid}
        return None

    def _verify_stored(self, image_id: str, seg: Dataset, response: Any) -> None:
        """Raise :class:`StoreError` unless the store holds ``seg`` after a STOW-RS that answered ``response``."""
        answer = response if response is not None else {}
        failed = answer.get("FailedSOPSequence")
        if failed:
            raise StoreError(f"the DICOM store refused the SEG for series {image_id}: {failed}")
        sop_uid = str(seg.SOPInstanceUID)
        try:
            found = self._client.search_for_instances(
                study_instance_uid=str(seg.StudyInstanceUID),
                series_instance_uid=str(seg.SeriesInstanceUID),
                search_filters={"SOPInstanceUID": sop_uid},
            )
        except requests.RequestException as exc:
            raise StoreError(
                f"the SEG for series {image_id} was sent to the DICOM store, but reading it back failed ({exc}); "
                "save the label again (a repeated save stores no second SEG)"
            ) from exc
        if any(str(Dataset.from_json(item).get("SOPInstanceUID", "")) == sop_uid for item in found):
            return
        listed = answer.get("ReferencedSOPSequence") or []
        referenced = any(str(item.get("ReferencedSOPInstanceUID", "")) == sop_uid for item in listed)
        said = "lists it as stored" if referenced else "lists it neither as stored nor as failed"
        raise StoreError(
            f"the DICOM store did not store the SEG for series {image_id}: its STOW-RS answer {said}, but SOP instance "
            f"{sop_uid} is not there when read back. Nothing was saved; check the store (its log, free space, write "
            "access to its storage) and save the label again"
        )

    def _sync_final_label(self, image_id: str, seg: SeriesRecord) -> str | None:
        """Local NIfTI of the newest SEG of ``image_id``, converted from the store when it changed."""
        obj = self._datastore.objects.get(image_id)
        local = obj.labels.get(DefaultLabelTag.FINAL) if obj else None
        path = Path(self._datastore.label_path(DefaultLabelTag.FINAL)) / f"{image_id}.nii.gz"
        if local and local.info.get("seg_series_uid") == seg.uid and path.exists():
            return str(path)
        image = sitk.ReadImage(self.get_image_uri(image_id))
        try:
            instances = self._client.retrieve_series(seg.study_uid, seg.uid, media_types=(("application/dicom", "*"),))
        except requests.RequestException as exc:
            raise StoreError(f"cannot retrieve SEG series {seg.uid} of series {image_id} from the DICOM store: {exc}"
                             ) from exc
        if not instances:
            raise StoreError(f"SEG series {seg.uid} of series {image_id} has no instance in the DICOM store; the "
                             "store changed while it was read, try again")
        try:
            array = seg_to_label(instances[0], read_datasets(self._series_dir(image_id)),
                                 self.label_map_of(image_id))
        except ValueError as exc:
            self.skipped_labels[seg.uid] = str(exc)
            logger.warning(f"SEG {seg.uid} of series {image_id} not used for training: {exc}")
            return None
        with tempfile.TemporaryDirectory() as tmp:
            converted = write_volume(label_like(array, image), Path(tmp) / f"{image_id}.nii.gz")
            super().save_label(image_id, str(converted), DefaultLabelTag.FINAL, {"seg_series_uid": seg.uid})
        return str(path)

    def saved_label_path(self, image_id: str) -> str | None:
        """The local copy of the series' final label last saved or read here (not refreshed from the store, not
        gated by review), or ``None``."""
        path = Path(self._datastore.label_path(DefaultLabelTag.FINAL)) / f"{image_id}.nii.gz"
        return str(path) if path.is_file() else None

    def get_label_uri(self, label_id: str, label_tag: str, image_id: str = "") -> str:
        """Local file of a label; final labels are refreshed from the store first."""
        if label_tag == DefaultLabelTag.FINAL:
            seg = self.final_labels().get(label_id)
            if seg is None:
                raise NotFoundError(f"series {label_id} has no final label (no SEG) in the DICOM store")
            return self._sync_final_label(label_id, seg) or ""
        return super().get_label_uri(label_id, label_tag)

    def datalist(self, full_path: bool = True) -> list[dict[str, Any]]:
        """Image/label pairs for training: every listed series with a usable SEG in the store, with its modality."""
        pairs = []
        for image_id, seg in sorted(self.final_labels().items()):
            label = self._sync_final_label(image_id, seg)
            if label:
                pairs.append({"image": self.get_image_uri(image_id), "label": label, "seg": seg.uid,
                              "modality": self.modality(image_id)})
        return pairs


def _label_digest(image_id: str, array: np.ndarray, label_map: Mapping[str, int]) -> str:
    """SHA-256 (hex) of what a SEG of ``array`` says: the image series, the label's shape and voxels, its segments."""
    present = {int(v) for v in np.unique(array)} - {0}
    segments = sorted((name, value) for name, value in label_map.items() if value in present)
    digest = hashlib.sha256(json.dumps({"series": image_id, "shape": list(array.shape), "segments": segments}).encode())
    digest.update(np.ascontiguousarray(array, dtype=np.uint8).tobytes())
    return digest.hexdigest()


def _content_uids(digest: str, predecessor: str) -> tuple[str, str]:
    """Series and SOP Instance UIDs of the SEG of content ``digest`` that replaces the final SEG ``predecessor``."""
    return (generate_uid(entropy_srcs=[digest, predecessor, "series"]),
            generate_uid(entropy_srcs=[digest, predecessor, "instance"]))
