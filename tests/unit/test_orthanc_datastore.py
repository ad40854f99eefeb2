"""HOPE's datastore on a DICOMweb store, against a fake DICOMweb client (no Orthanc).

The fake answers the five calls the datastore makes (QIDO-RS series and instance searches, series metadata, WADO-RS
series, STOW-RS) from lists the test fills, and counts the searches so that caching can be checked. Like Orthanc
(``OverwriteInstances: false``), it keeps one instance per SOP Instance UID and lists what it keeps; it can also
fail as Orthanc was seen to: a storage that cannot write answers 200 with empty sequences. It is also the
datastore's gateway to Orthanc's REST API, where it answers ``POST /tools/find`` (a series' instances, and whether it
is stable) from the same lists.
"""

from __future__ import annotations

import errno
import json
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import SimpleITK as sitk
from monailabel.datastore.local import LocalDatastore
from monailabel.datastore.utils.convert import binary_to_image
from monailabel.interfaces.datastore import DefaultLabelTag
from pydicom.dataset import Dataset

from hope.config import DatastoreSettings
from hope.datastore import orthanc
from hope.datastore.label_maps import LabelMaps
from hope.datastore.orthanc import OrthancDatastore
from hope.dicom.seg import seg_to_label
from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.errors import ConflictError, InvalidInputError, NotFoundError, StoreError, TooLargeError

LABELS = {"C1": 1, "C2": 2}
STUDY = "1.2.826.0.1.3680043.8.498.1"


def qido(uid: str, modality: str, date: str = "20240101", time_: str = "120000", study: str = STUDY) -> dict:
    """One QIDO-RS series result, as the store sends it."""
    ds = Dataset()
    ds.SeriesInstanceUID = uid
    ds.StudyInstanceUID = study
    ds.Modality = modality
    ds.SeriesDate = date
    ds.SeriesTime = time_
    return ds.to_json_dict()


def seg_metadata(*referenced: str) -> list[dict]:
    """Series metadata of a SEG whose ReferencedSeriesSequence names ``referenced``."""
    ds = Dataset()
    ds.SOPInstanceUID = "1.2.3.4.5"
    items = []
    for uid in referenced:
        item = Dataset()
        item.SeriesInstanceUID = uid
        items.append(item)
    ds.ReferencedSeriesSequence = items
    return [ds.to_json_dict()]


class FakeDicomWeb:
    """The DICOMweb calls :class:`OrthancDatastore` makes, answered from memory."""

    base_url = "http://store.test/dicom-web"

    def __init__(self) -> None:
        self.series: list[dict] = []
        self.metadata: dict[str, list[dict]] = {}
        self.instances: dict[str, list[Dataset]] = {}
        self.stored: list[Dataset] = []  # what STOW-RS stored, one instance per SOP Instance UID
        self.stow_requests = 0
        self.searches = 0
        self.retrievals = 0  # WADO-RS series retrievals
        self.rest_requests = 0
        self.rest_status = 200  # what Orthanc's REST API answers
        self.arriving: set[str] = set()  # series Orthanc is still receiving (not stable)
        self.metadata_reads = 0
        self.down = False
        self.broken: set[str] = set()  # calls that fail with a connection error
        self.store_error: Exception | None = None
        self.store_response: Any = None  # answered to STOW-RS instead of storing
        self.keeps_instances = True  # False: STOW-RS stores nothing (a storage that cannot write, a filter)
        self.lists_dropped = False  # with keeps_instances False: the answer lists them as stored all the same

    def _call(self, name: str) -> None:
        if name in self.broken:
            raise requests.ConnectionError(f"{name}: connection refused")

    def search_for_series(
        self, fields: list[str] | None = None, get_remaining: bool = False, search_filters: dict | None = None
    ) -> list[dict]:
        self.searches += 1
        if self.down:
            raise requests.ConnectionError("connection refused")
        wanted = (search_filters or {}).get("SeriesInstanceUID")
        return [dict(s) for s in self.series if wanted is None or s["0020000E"]["Value"][0] == wanted]

    def retrieve_series_metadata(self, study_instance_uid: str, series_instance_uid: str) -> list[dict]:
        self._call("retrieve_series_metadata")
        self.metadata_reads += 1
        return self.metadata[series_instance_uid]

    def retrieve_series(
        self, study_instance_uid: str, series_instance_uid: str, media_types: tuple | None = None
    ) -> list[Dataset]:
        self._call("retrieve_series")
        self.retrievals += 1
        return list(self.instances[series_instance_uid])

    def rest(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """Orthanc's REST API, as :meth:`OrthancGateway.rest` reaches it: ``POST /tools/find`` of a series, expanded."""
        assert (method, path) == ("POST", "/tools/find"), (method, path)
        self.rest_requests += 1
        if "rest" in self.broken:
            raise StoreError(f"Orthanc at {self.base_url} did not answer {method} {path}: connection refused")
        wanted = kwargs["json"]["Query"]["SeriesInstanceUID"]
        found = [{"Type": "Series", "MainDicomTags": {"SeriesInstanceUID": uid},
                  "Instances": [f"{uid}-{i}" for i in range(len(self.instances.get(uid, [])))],
                  "IsStable": uid not in self.arriving}
                 for uid in (s["0020000E"]["Value"][0] for s in self.series) if uid == wanted]
        response = requests.Response()
        response.status_code = self.rest_status
        response._content = json.dumps(found if response.ok else {"Message": "Service Unavailable"}).encode()
        return response

    def search_for_instances(
        self, study_instance_uid: str | None = None, series_instance_uid: str | None = None,
        search_filters: dict | None = None,
    ) -> list[dict]:
        self._call("search_for_instances")
        wanted = (search_filters or {}).get("SOPInstanceUID")
        found = [ds for ds in self.stored if series_instance_uid in (None, ds.SeriesInstanceUID)
                 and wanted in (None, ds.SOPInstanceUID)]
        return [_identifiers(ds).to_json_dict() for ds in found]

    def store_instances(self, datasets: list[Dataset]) -> Any:
        self.stow_requests += 1
        if self.store_error is not None:
            raise self.store_error
        if self.store_response is not None:
            return self.store_response
        answer = Dataset()
        answer.FailedSOPSequence = []
        answer.ReferencedSOPSequence = []
        for ds in datasets:
            if self.keeps_instances:
                self._keep(ds)
            if self.keeps_instances or self.lists_dropped:
                item = Dataset()
                item.ReferencedSOPClassUID = ds.SOPClassUID
                item.ReferencedSOPInstanceUID = ds.SOPInstanceUID
                answer.ReferencedSOPSequence.append(item)
        return answer

    def _keep(self, ds: Dataset) -> None:
        if any(kept.SOPInstanceUID == ds.SOPInstanceUID for kept in self.stored):
            return  # Orthanc keeps the instance it has (OverwriteInstances: false)
        self.stored.append(ds)
        uid = str(ds.SeriesInstanceUID)
        if uid not in self.instances:
            self.series.append(qido(uid, ds.Modality, ds.SeriesDate, ds.SeriesTime, str(ds.StudyInstanceUID)))
            self.metadata[uid] = [_identifiers(ds).to_json_dict()]
        self.instances.setdefault(uid, []).append(ds)

    def segs(self) -> list[Dataset]:
        """The SEG instances the store holds."""
        return [ds for ds in self.stored if ds.Modality == "SEG"]


def _identifiers(ds: Dataset) -> Dataset:
    """What QIDO-RS and series metadata say of an instance, as far as the datastore reads it."""
    found = Dataset()
    found.SOPInstanceUID = ds.SOPInstanceUID
    found.SeriesInstanceUID = ds.SeriesInstanceUID
    if "ReferencedSeriesSequence" in ds:
        found.ReferencedSeriesSequence = ds.ReferencedSeriesSequence
    return found


class Factory:
    """A ``client_factory`` that hands out one fake and counts how often it was asked."""

    def __init__(self, client: FakeDicomWeb) -> None:
        self.client = client
        self.calls = 0

    def __call__(self) -> FakeDicomWeb:
        self.calls += 1
        return self.client


@pytest.fixture
def store() -> FakeDicomWeb:
    return FakeDicomWeb()


def _datastore(store: FakeDicomWeb, cache: Path, **settings: Any) -> OrthancDatastore:
    return OrthancDatastore(Factory(store), DatastoreSettings(**settings), LabelMaps(LABELS), cache,  # type: ignore[arg-type]
                            gateway=store)  # type: ignore[arg-type]


def _wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)


# ----------------------------------------------------------------------------------------------------- listing
def test_every_configured_image_modality_is_listed_and_nothing_else(store: FakeDicomWeb, tmp_path: Path) -> None:
    store.series = [qido(f"1.1.{i}", m) for i, m in enumerate(["CT", "MR", "CR", "DX", "SEG", "SR", "OT", "ct"])]
    store.metadata["1.1.4"] = seg_metadata("1.1.0")
    datastore = _datastore(store, tmp_path / "cache")
    assert datastore.list_images() == ["1.1.0", "1.1.1", "1.1.2", "1.1.3", "1.1.7"]  # "ct" is CT
    assert datastore.get_unlabeled_images() == ["1.1.1", "1.1.2", "1.1.3", "1.1.7"]
    assert datastore.get_labeled_images() == ["1.1.0"]
    assert datastore.modality("1.1.4") == "SEG"
    assert datastore.modality("9.9") is None
    assert set(datastore.json()["objects"]) == {"1.1.0", "1.1.1", "1.1.2", "1.1.3", "1.1.7"}

    ct_only = _datastore(store, tmp_path / "cache2", modalities=("CT",))
    assert ct_only.list_images() == ["1.1.0", "1.1.7"]


def test_listings_are_cached_until_invalidated(store: FakeDicomWeb, tmp_path: Path) -> None:
    store.series = [qido("1.1.1", "CT")]
    datastore = _datastore(store, tmp_path, list_cache_seconds=600)
    assert datastore.list_images() == ["1.1.1"]
    store.series.append(qido("1.1.2", "CT"))
    assert datastore.list_images() == ["1.1.1"]
    assert store.searches == 1
    datastore.invalidate()
    assert datastore.list_images() == ["1.1.1", "1.1.2"]
    assert store.searches == 2


def test_a_cached_listing_expires(store: FakeDicomWeb, tmp_path: Path) -> None:
    store.series = [qido("1.1.1", "CT")]
    datastore = _datastore(store, tmp_path, list_cache_seconds=0.05)
    assert datastore.list_images() == ["1.1.1"]
    store.series.append(qido("1.1.2", "CT"))
    _wait_for(lambda: datastore.list_images() == ["1.1.1", "1.1.2"], "the listing to expire")
    assert store.searches >= 2


def test_each_thread_gets_its_own_client(store: FakeDicomWeb, tmp_path: Path) -> None:
    factory = Factory(store)
    datastore = OrthancDatastore(factory, DatastoreSettings(), LabelMaps(LABELS), tmp_path, gateway=store)  # type: ignore[arg-type]
    assert datastore.name() == store.base_url
    datastore.name()
    assert factory.calls == 1
    other = threading.Thread(target=datastore.name)
    other.start()
    other.join()
    assert factory.calls == 2


def test_a_store_that_is_down_is_a_store_error(store: FakeDicomWeb, tmp_path: Path) -> None:
    store.down = True
    datastore = _datastore(store, tmp_path)
    with pytest.raises(StoreError, match="cannot list series in the DICOM store http://store.test/dicom-web"):
        datastore.list_images()


def test_an_unknown_series_is_not_found_and_a_seg_is_not_an_image(store: FakeDicomWeb, tmp_path: Path) -> None:
    store.series = [qido("1.1.1", "CT"), qido("1.1.9", "SEG")]
    datastore = _datastore(store, tmp_path)
    with pytest.raises(NotFoundError, match="series 7.7.7 is not in the DICOM store"):
        datastore.get_image_uri("7.7.7")
    with pytest.raises(InvalidInputError, match="modality SEG"):
        datastore.get_image_uri("1.1.9")


# ------------------------------------------------------------------------------------------------------- flags
def test_a_flagged_series_leaves_the_pool_and_the_flag_survives_a_restart(
    store: FakeDicomWeb, tmp_path: Path
) -> None:
    store.series = [qido("1.1.1", "CT"), qido("1.1.2", "CT")]
    datastore = _datastore(store, tmp_path, list_cache_seconds=600)
    assert datastore.list_images() == ["1.1.1", "1.1.2"]
    datastore.flag("1.1.2", ["only 2 slices"])
    assert datastore.list_images() == ["1.1.1"]
    assert store.searches == 1  # left out when asked: flagging does not list the store again
    assert json.loads((tmp_path / "flagged.json").read_text()) == {"1.1.2": ["only 2 slices"]}
    assert sorted(p.name for p in tmp_path.iterdir() if "flagged" in p.name) == ["flagged.json"]

    restarted = _datastore(store, tmp_path)
    assert restarted.flagged == {"1.1.2": ["only 2 slices"]}
    assert restarted.list_images() == ["1.1.1"]


# ------------------------------------------------------------------------------------------------ final labels
def test_the_newest_seg_of_a_series_is_its_final_label(store: FakeDicomWeb, tmp_path: Path) -> None:
    store.series = [
        qido("1.1.1", "CT"),
        qido("1.1.2", "CT"),
        qido("2.1", "SEG", date="20240101", time_="090000"),
        qido("2.2", "SEG", date="20240102", time_="080000"),
        qido("2.3", "SEG", date="20240101", time_="100000"),
        qido("2.4", "SEG"),  # references two series: unusable
        qido("2.5", "SEG"),  # references a series that is not in the pool
    ]
    store.metadata = {
        "2.1": seg_metadata("1.1.1"),
        "2.2": seg_metadata("1.1.1"),
        "2.3": seg_metadata("1.1.1"),
        "2.4": seg_metadata("1.1.1", "1.1.2"),
        "2.5": seg_metadata("5.5.5"),
    }
    datastore = _datastore(store, tmp_path, list_cache_seconds=600)
    finals = datastore.final_labels()
    assert {uid: seg.uid for uid, seg in finals.items()} == {"1.1.1": "2.2"}
    assert set(datastore.skipped_labels) == {"2.4"}
    assert "references 2 series" in datastore.skipped_labels["2.4"]
    status = datastore.status()
    assert (status["total"], status["completed"]) == (2, 1)
    assert datastore.json()["objects"]["1.1.1"]["labels"] == {"final": {"info": {"seg_series_uid": "2.2"}}}

    reads = store.metadata_reads
    datastore.final_labels()
    assert store.metadata_reads == reads  # resolved once per listing, not per question
    datastore.invalidate()
    datastore.final_labels()
    assert store.metadata_reads == reads + 1  # only the unusable SEG is read again; resolved ones are kept


def test_seg_references_are_read_once_and_survive_a_restart(store: FakeDicomWeb, tmp_path: Path) -> None:
    """A SEG's image series is asked about once; a restarted datastore reads it from its cache folder."""
    store.series = [qido("1.1.1", "CT"), qido("1.1.2", "CT"), qido("2.1", "SEG")]
    store.metadata = {"2.1": seg_metadata("1.1.1")}
    assert list(_datastore(store, tmp_path).final_labels()) == ["1.1.1"]
    assert store.metadata_reads == 1
    restarted = _datastore(store, tmp_path)
    assert list(restarted.final_labels()) == ["1.1.1"] and restarted.modality("1.1.2") == "CT"
    assert store.metadata_reads == 1


def test_a_store_event_updates_one_series_without_listing_again(store: FakeDicomWeb, tmp_path: Path) -> None:
    store.series = [qido("1.1.1", "CT")]
    datastore = _datastore(store, tmp_path, list_cache_seconds=600)
    assert datastore.list_images() == ["1.1.1"]
    store.series += [qido("1.1.2", "CT"), qido("2.1", "SEG")]
    store.metadata = {"2.1": seg_metadata("1.1.2")}
    searches = store.searches
    datastore.refresh_series("1.1.2")
    datastore.refresh_series("2.1")
    assert datastore.list_images() == ["1.1.1", "1.1.2"] and list(datastore.final_labels()) == ["1.1.2"]
    assert store.searches == searches + 2  # one QIDO-RS of each series, not of the store


def test_a_final_label_of_a_flagged_series_does_not_count(store: FakeDicomWeb, tmp_path: Path) -> None:
    store.series = [qido("1.1.1", "CT"), qido("2.1", "SEG")]
    store.metadata = {"2.1": seg_metadata("1.1.1")}
    datastore = _datastore(store, tmp_path)
    assert list(datastore.final_labels()) == ["1.1.1"]
    datastore.flag("1.1.1", ["duplicate positions"])
    assert datastore.final_labels() == {}
    assert datastore.get_labeled_images() == []


def test_with_a_label_gate_the_newest_accepted_seg_is_the_final_label(store: FakeDicomWeb, tmp_path: Path) -> None:
    """Label review: only approved SEGs (by SOP Instance UID) count; a newer SEG awaiting review does not."""
    store.series = [qido("1.1.1", "CT"), qido("1.1.2", "CT"), qido("2.1", "SEG", time_="090000"),
                    qido("2.2", "SEG", time_="100000"), qido("2.3", "SEG")]
    store.metadata = {"2.1": seg_metadata("1.1.1"), "2.2": seg_metadata("1.1.1"), "2.3": seg_metadata("1.1.2")}
    for series, sop in (("2.1", "9.1"), ("2.2", "9.2"), ("2.3", "9.3")):
        store.metadata[series][0]["00080018"]["Value"] = [sop]
    asked: list[str] = []

    def approved(sop: str) -> bool:
        asked.append(sop)
        return sop == "9.1"

    datastore = OrthancDatastore(Factory(store), DatastoreSettings(), LabelMaps(LABELS), tmp_path,  # type: ignore[arg-type]
                                 gateway=store, label_gate=approved)  # type: ignore[arg-type]
    assert {uid: seg.uid for uid, seg in datastore.final_labels().items()} == {"1.1.1": "2.1"}
    assert sorted(set(asked)) == ["9.1", "9.2", "9.3"]
    assert datastore.get_labeled_images() == ["1.1.1"] and datastore.get_unlabeled_images() == ["1.1.2"]
    assert datastore.status()["completed"] == 1
    assert _datastore(store, tmp_path / "ungated").final_labels()["1.1.1"].uid == "2.2"


def test_with_a_label_gate_a_repeated_save_still_stores_one_seg(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset
) -> None:
    """A saved label the gate does not accept yet (awaiting review) is still the SEG a repeated save finds."""
    uid = str(ct.SeriesInstanceUID)
    datastore = OrthancDatastore(Factory(store), DatastoreSettings(), LabelMaps(LABELS), tmp_path,  # type: ignore[arg-type]
                                 gateway=store, label_gate=lambda sop: False)  # type: ignore[arg-type]
    label = _label_file(datastore, uid, tmp_path / "label.nii.gz")
    for _ in range(2):
        datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert store.stow_requests == 1 and len(store.segs()) == 1
    assert datastore.get_label_info(uid, DefaultLabelTag.FINAL)["seg_sop_uid"] == str(store.segs()[0].SOPInstanceUID)
    assert datastore.final_labels() == {} and datastore.datalist() == []


# ----------------------------------------------------------------------------------------- images and storing
@pytest.fixture
def ct(store: FakeDicomWeb) -> Dataset:
    """A small CT series in the fake store; returns its first slice."""
    volume = np.full((4, 12, 10), -500, dtype=np.int16)
    datasets = volume_to_datasets(volume, (1.0, 1.0, 2.0), new_identity("UNIT-1"))
    uid = str(datasets[0].SeriesInstanceUID)
    store.series.append(qido(uid, "CT", study=str(datasets[0].StudyInstanceUID)))
    store.instances[uid] = datasets
    return datasets[0]


def _label_file(datastore: OrthancDatastore, uid: str, path: Path, value: int = 2, shift: int = 0) -> Path:
    image = sitk.ReadImage(datastore.get_image_uri(uid))
    array = np.zeros(sitk.GetArrayFromImage(image).shape, dtype=np.uint8)
    array[1:3, 3 + shift:8 + shift, 2:6] = value
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(image)
    sitk.WriteImage(label, str(path))
    return path


def test_an_image_is_fetched_and_converted_once(store: FakeDicomWeb, tmp_path: Path, ct: Dataset) -> None:
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    uri = Path(datastore.get_image_uri(uid))
    assert uri.name == f"{uid}.nii.gz"
    assert sitk.ReadImage(str(uri)).GetSize() == (10, 12, 4)
    assert datastore.get_image_uri(uid) == str(uri)
    assert (store.retrievals, store.rest_requests) == (1, 2)  # a second use asks for the instance count, no more


def test_a_final_label_is_stored_as_seg_before_it_is_cached(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset
) -> None:
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache", list_cache_seconds=600)
    label = _label_file(datastore, uid, tmp_path / "label.nii.gz")
    searches = store.searches
    datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {"user": "Doe^Jane"})
    assert [ds.Modality for ds in store.stored] == ["SEG"]
    seg = store.stored[0]
    info = datastore.get_label_info(uid, DefaultLabelTag.FINAL)
    assert info["seg_series_uid"] == str(seg.SeriesInstanceUID)
    assert info["user"] == "Doe^Jane"
    assert list((tmp_path / "cache").rglob(f"labels/**/{uid}*"))  # cached locally too
    assert datastore.final_labels()[uid].uid == str(seg.SeriesInstanceUID)  # listed at once, as stored
    assert store.searches == searches  # without asking the store again


@pytest.mark.parametrize(
    ("error", "response"),
    [
        (requests.HTTPError("409 Client Error: Conflict"), None),
        (None, {"FailedSOPSequence": [{"ReferencedSOPInstanceUID": "1.2"}]}),
    ],
    ids=["http-error", "failed-sop"],
)
def test_a_refused_seg_is_a_store_error_and_nothing_is_cached(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset, error: Exception | None, response: Any
) -> None:
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    label = _label_file(datastore, uid, tmp_path / "label.nii.gz")
    store.store_error, store.store_response = error, response
    with pytest.raises(StoreError, match=f"the DICOM store refused the SEG for series {uid}"):
        datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert datastore.get_labels_by_image_id(uid) == {}
    assert list((tmp_path / "cache").rglob(f"labels/**/{uid}*")) == []


def test_a_label_off_the_grid_or_with_unknown_values_is_refused_before_the_store(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset
) -> None:
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    unknown = _label_file(datastore, uid, tmp_path / "unknown.nii.gz", value=7)
    with pytest.raises(InvalidInputError, match=r"label values \[7\] are not defined"):
        datastore.save_label(uid, str(unknown), DefaultLabelTag.FINAL, {})
    off_grid = sitk.Image(5, 5, 5, sitk.sitkUInt8)
    sitk.WriteImage(off_grid, str(tmp_path / "off.nii.gz"))
    with pytest.raises(InvalidInputError, match="does not lie on the grid"):
        datastore.save_label(uid, str(tmp_path / "off.nii.gz"), DefaultLabelTag.FINAL, {})
    assert store.stored == []


# ---------------------------------------------------------------------------------- verified, idempotent saves
def _leftovers(cache: Path) -> list[str]:
    """Hidden work folders the datastore left in its cache (saves and downloads work in ``.<name>`` folders)."""
    return sorted(p.name for p in cache.iterdir() if p.is_dir() and p.name.startswith("."))


@pytest.mark.parametrize("lists_dropped", [False, True], ids=["storage-cannot-write", "filtered-but-listed"])
def test_a_seg_the_store_does_not_keep_is_a_store_error_and_nothing_is_cached(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset, lists_dropped: bool
) -> None:
    """Orthanc whose storage cannot write answers 200 with empty sequences; HOPE answered 200 and lost the label."""
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    label = _label_file(datastore, uid, tmp_path / "label.nii.gz")
    store.keeps_instances, store.lists_dropped = False, lists_dropped
    said = "lists it as stored" if lists_dropped else "lists it neither as stored nor as failed"
    with pytest.raises(StoreError, match=f"did not store the SEG for series {uid}: its STOW-RS answer {said}"):
        datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert store.stow_requests == 1 and store.segs() == []
    assert datastore.get_labels_by_image_id(uid) == {}
    assert list((tmp_path / "cache").rglob(f"labels/**/{uid}*")) == []
    assert _leftovers(tmp_path / "cache") == []


def test_a_read_back_that_fails_is_a_store_error(store: FakeDicomWeb, tmp_path: Path, ct: Dataset) -> None:
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    label = _label_file(datastore, uid, tmp_path / "label.nii.gz")
    store.broken.add("search_for_instances")
    with pytest.raises(StoreError, match="reading it back failed .*save the label again"):
        datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert datastore.get_labels_by_image_id(uid) == {}
    store.broken.clear()
    datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {})  # the retry: the SEG is there, once
    assert len(store.segs()) == 1


def test_network_errors_reading_segs_are_store_errors(store: FakeDicomWeb, tmp_path: Path, ct: Dataset) -> None:
    """``_referenced_series`` and ``_sync_final_label`` let raw ``requests`` exceptions through (a 500)."""
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    datastore.save_label(uid, str(_label_file(datastore, uid, tmp_path / "label.nii.gz")), DefaultLabelTag.FINAL, {})
    seg_uid = str(store.segs()[0].SeriesInstanceUID)

    fresh = _datastore(store, tmp_path / "fresh")  # knows nothing of the SEG: must read its metadata
    fresh.get_image_uri(uid)
    store.broken.add("retrieve_series_metadata")
    with pytest.raises(StoreError, match=f"cannot read the metadata of SEG series {seg_uid}"):
        fresh.final_labels()
    store.broken = {"retrieve_series"}
    with pytest.raises(StoreError, match=f"cannot retrieve SEG series {seg_uid} of series {uid}"):
        fresh.get_label_uri(uid, DefaultLabelTag.FINAL)


def test_a_repeated_save_stores_one_seg(store: FakeDicomWeb, tmp_path: Path, ct: Dataset) -> None:
    """A client that retries a save (after a 500 or a timeout) must not get a second SEG."""
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    label = _label_file(datastore, uid, tmp_path / "label.nii.gz")
    datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {"user": "Doe^Jane"})
    first = datastore.get_label_info(uid, DefaultLabelTag.FINAL)
    datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {"user": "Doe^Jane"})
    assert store.stow_requests == 1 and len(store.segs()) == 1
    again = datastore.get_label_info(uid, DefaultLabelTag.FINAL)
    assert (again["seg_series_uid"], again["seg_sop_uid"]) == (first["seg_series_uid"], first["seg_sop_uid"])

    restarted = _datastore(store, tmp_path / "cache-lost")  # a lost cache does not forget: the record is the SEG
    restarted.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert store.stow_requests == 1 and len(store.segs()) == 1


def test_a_save_racing_an_identical_one_stores_the_same_instance(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A retry that runs while the first save is still storing sees no final SEG either: it sends the same one."""
    uid = str(ct.SeriesInstanceUID)
    first = _datastore(store, tmp_path / "cache")
    label = _label_file(first, uid, tmp_path / "label.nii.gz")
    second = _datastore(store, tmp_path / "cache2")
    second.get_image_uri(uid)
    monkeypatch.setattr(second, "_newest_segs", lambda *counts: {})  # its listing predates the first save
    first.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    second.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert store.stow_requests == 2 and len(store.segs()) == 1
    assert first.get_label_info(uid, "final")["seg_sop_uid"] == second.get_label_info(uid, "final")["seg_sop_uid"]


def test_saving_an_earlier_label_again_makes_it_final(store: FakeDicomWeb, tmp_path: Path, ct: Dataset) -> None:
    """A, then B, then A again: the third save is not a repeat of the first; A is final again."""
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    a = _label_file(datastore, uid, tmp_path / "a.nii.gz")
    b = _label_file(datastore, uid, tmp_path / "b.nii.gz", shift=2)
    for label in (a, b, a):
        datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert len(store.segs()) == 3 and len({str(ds.SOPInstanceUID) for ds in store.segs()}) == 3
    final = datastore.final_labels()[uid]
    assert final.uid == str(store.segs()[2].SeriesInstanceUID)
    datastore.save_label(uid, str(a), DefaultLabelTag.FINAL, {})  # and a repeat of the third stores nothing
    assert len(store.segs()) == 3


def test_a_cache_failure_after_the_store_keeps_the_save(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The SEG is stored and verified: a failing cache update is logged, and the cache is refreshed from the store."""
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    label = _label_file(datastore, uid, tmp_path / "label.nii.gz")

    def full_disk(*args: Any) -> str:
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(LocalDatastore, "save_label", full_disk)
        assert datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {}) == uid
    assert len(store.segs()) == 1
    assert datastore.get_labels_by_image_id(uid) == {}
    cached = datastore.get_label_uri(uid, DefaultLabelTag.FINAL)  # converted from the store's SEG
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(label)))
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(cached)), expected)
    datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert len(store.segs()) == 1


def test_a_cache_that_cannot_be_written_fails_the_save_before_the_store(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    label = _label_file(datastore, uid, tmp_path / "label.nii.gz")

    def full_disk(*args: Any) -> Path:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(orthanc, "write_volume", full_disk)
    with pytest.raises(OSError, match="No space left"):
        datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert store.stow_requests == 0
    assert _leftovers(tmp_path / "cache") == []


# -------------------------------------------------------------------------------------------- series arriving
def _arriving(store: FakeDicomWeb, ct: Dataset, received: int) -> tuple[str, list[Dataset]]:
    """Make the store hold the first ``received`` instances of the ``ct`` series, still arriving; its UID and all."""
    uid = str(ct.SeriesInstanceUID)
    every = store.instances[uid]
    store.instances[uid] = every[:received]
    store.arriving.add(uid)
    return uid, every


def _complete(store: FakeDicomWeb, uid: str, every: list[Dataset]) -> None:
    """The series has arrived whole, and Orthanc found it stable."""
    store.instances[uid] = every
    store.arriving.discard(uid)


@pytest.fixture
def quick_polls(monkeypatch: pytest.MonkeyPatch) -> None:
    """The datastore asks Orthanc every 10 ms whether a series it waits for is stable."""
    monkeypatch.setattr(orthanc, "STABLE_POLL_SECONDS", 0.01)


@pytest.mark.usefixtures("quick_polls")
def test_a_series_still_arriving_is_a_conflict_and_nothing_of_it_is_cached(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset
) -> None:
    """A series fetched mid-transfer was cached truncated for good: inference ran on 45 of 112 slices."""
    uid, every = _arriving(store, ct, 2)
    cache = tmp_path / "cache"
    datastore = _datastore(store, cache, stable_wait_seconds=0.2)
    started = time.monotonic()
    with pytest.raises(ConflictError, match=rf"series {uid} is still arriving in the DICOM store \(2 instances so "
                                            r"far\); try again in a few seconds"):
        datastore.get_image_uri(uid)
    assert time.monotonic() - started < 5 and store.rest_requests > 2  # it waited, asking again, then gave up
    label = tmp_path / "label.bin"
    label.write_bytes(bytes(10 * 12 * 4))
    with pytest.raises(ConflictError, match="still arriving"):
        datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert store.retrievals == 0 and store.stow_requests == 0
    assert list(cache.rglob(f"{uid}*")) == [] and _leftovers(cache) == []

    _complete(store, uid, every)
    assert sitk.ReadImage(datastore.get_image_uri(uid)).GetSize() == (10, 12, 4)


def test_a_cached_series_is_fetched_again_when_the_store_holds_other_instances(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset
) -> None:
    """A series cached with 2 instances (a pause in its transfer made it stable) is fetched again once it has 4."""
    uid, every = _arriving(store, ct, 2)
    store.arriving.clear()  # stable: the sender paused for longer than Orthanc's StableAge
    datastore = _datastore(store, tmp_path / "cache", stable_wait_seconds=0)
    assert sitk.ReadImage(datastore.get_image_uri(uid)).GetSize() == (10, 12, 2)
    datastore.save_label(uid, str(_label_file(datastore, uid, tmp_path / "old.nii.gz")), "draft", {})
    assert datastore.get_labels_by_image_id(uid) == {"draft": uid}

    store.instances[uid] = every[:3]  # the rest is arriving: the cached copy is stale, and nothing can replace it
    store.arriving.add(uid)
    with pytest.raises(ConflictError, match=r"\(3 instances so far\)"):
        datastore.get_image_uri(uid)

    _complete(store, uid, every)
    uri = datastore.get_image_uri(uid)
    assert sitk.ReadImage(uri).GetSize() == (10, 12, 4)
    assert store.retrievals == 2 and len(list((tmp_path / "cache").rglob(f"{uid}/*.dcm"))) == 4
    assert datastore.get_labels_by_image_id(uid) == {}  # the draft lay on the old grid
    assert datastore.get_image_uri(uid) == uri and store.retrievals == 2

    label = _label_file(datastore, uid, tmp_path / "label.nii.gz")  # on the whole series' grid
    datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert len(store.segs()) == 1 and len(store.segs()[0].ReferencedSeriesSequence[0].ReferencedInstanceSequence) == 4


@pytest.mark.usefixtures("quick_polls")
def test_a_series_that_becomes_stable_while_waited_for_is_fetched_whole(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A series stored a moment ago is not stable yet in Orthanc (StableAge): the request waits, it does not fail."""
    uid, every = _arriving(store, ct, 3)
    answer = store.rest

    def rest(method: str, path: str, **kwargs: Any) -> requests.Response:
        if store.rest_requests == 3:
            _complete(store, uid, every)  # the last instance has come, and Orthanc finds the series stable
        return answer(method, path, **kwargs)

    monkeypatch.setattr(store, "rest", rest)
    datastore = _datastore(store, tmp_path / "cache", stable_wait_seconds=30)
    assert sitk.ReadImage(datastore.get_image_uri(uid)).GetSize() == (10, 12, 4)
    assert (store.rest_requests, store.retrievals) == (4, 1)


def test_a_cache_written_before_the_instance_check_is_fetched_again(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset
) -> None:
    """A truncated copy cached by an earlier HOPE records no instance count: it is replaced at its first use."""
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    truncated = sitk.Image(10, 12, 2, sitk.sitkInt16)
    sitk.WriteImage(truncated, str(tmp_path / f"{uid}.nii.gz"))
    datastore.add_image(uid, str(tmp_path / f"{uid}.nii.gz"), {"SeriesInstanceUID": uid})  # as HOPE cached it
    assert sitk.ReadImage(datastore.get_image_uri(uid)).GetSize() == (10, 12, 4)
    assert store.retrievals == 1


def test_orthanc_failing_to_say_how_many_instances_it_holds_is_a_store_error(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset
) -> None:
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    store.rest_status = 503
    with pytest.raises(StoreError, match=f"Orthanc could not look up series {uid}: 503"):
        datastore.get_image_uri(uid)
    store.rest_status = 200
    store.broken.add("rest")
    with pytest.raises(StoreError, match="did not answer POST /tools/find"):
        datastore.get_image_uri(uid)
    assert store.retrievals == 0


# ------------------------------------------------------------------------------------------ uploaded label files
@pytest.mark.parametrize(("name", "cut"), [("label.nii.gz", 20), ("label.nii", 100)], ids=["gzip", "plain"])
def test_a_truncated_label_is_refused_before_the_store(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset, name: str, cut: int
) -> None:
    """SimpleITK reads a truncated label without complaint: the SEG was stored with wrong voxels."""
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    label = _label_file(datastore, uid, tmp_path / name)
    label.write_bytes(label.read_bytes()[:-cut])  # gzip: its trailer and the end of the deflate stream
    with pytest.raises(InvalidInputError, match="truncated"):
        datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert store.stow_requests == 0 and datastore.get_labels_by_image_id(uid) == {}
    assert _leftovers(tmp_path / "cache") == []


def test_a_label_larger_than_the_limit_is_refused(store: FakeDicomWeb, tmp_path: Path, ct: Dataset) -> None:
    uid = str(ct.SeriesInstanceUID)
    datastore = OrthancDatastore(Factory(store), DatastoreSettings(), LabelMaps(LABELS), tmp_path / "cache",  # type: ignore[arg-type]
                                 gateway=store, max_label_bytes=100)  # type: ignore[arg-type]
    label = _label_file(datastore, uid, tmp_path / "label.nii")  # 480 voxels of one byte, uncompressed
    with pytest.raises(TooLargeError, match="max_upload_mb"):
        datastore.save_label(uid, str(label), DefaultLabelTag.FINAL, {})
    assert store.stow_requests == 0


def test_an_ohif_bin_label_is_read_on_the_grid_and_leaves_no_file(
    store: FakeDicomWeb, tmp_path: Path, ct: Dataset, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OHIF's .bin went through MONAI Label's ``binary_to_image``, which left a temporary file behind each time."""
    uid = str(ct.SeriesInstanceUID)
    datastore = _datastore(store, tmp_path / "cache")
    image_uri = datastore.get_image_uri(uid)
    expected = sitk.GetArrayFromImage(sitk.ReadImage(str(_label_file(datastore, uid, tmp_path / "l.nii.gz"))))
    binary = tmp_path / "label.bin"
    binary.write_bytes(expected.tobytes())  # (z, y, x) in C order: x fastest, as OHIF sends it
    stock = Path(binary_to_image(image_uri, str(binary)))  # MONAI Label's conversion, for reference
    assert np.array_equal(sitk.GetArrayFromImage(sitk.ReadImage(str(stock))), expected)
    stock.unlink()

    temp = tmp_path / "tmp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    datastore.save_label(uid, str(binary), DefaultLabelTag.FINAL, {})
    assert np.array_equal(seg_to_label(store.segs()[0], store.instances[uid], LABELS), expected)
    binary.write_bytes(expected.tobytes()[:-1])
    with pytest.raises(InvalidInputError, match=r"the \.bin label has 479 bytes, but the grid .* has 480 voxels"):
        datastore.save_label(uid, str(binary), DefaultLabelTag.FINAL, {})
    assert list(temp.iterdir()) == [] and _leftovers(tmp_path / "cache") == []
