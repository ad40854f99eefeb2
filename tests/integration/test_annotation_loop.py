"""The walking skeleton, end to end: real Orthanc, real HOPE server, real clients over HTTP and DICOMweb.

Store phantoms -> list -> infer -> save a final label as DICOM SEG -> read it back -> train -> infer again,
plus the bad-input answers. Each test stores what it needs through fixtures: any one of them runs alone.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import psutil
import pydicom
import pytest
import requests
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from hope.demo import StoredPhantom, store_phantom
from hope.dicom.seg import seg_to_label
from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.phantoms import generate_neck_ct
from hope.processes.orthanc import OrthancSettings

from .helpers import (
    assert_on_grid,
    download_series,
    model_checksum,
    nifti_bytes,
    poll,
    put_label,
    read_nifti_bytes,
    seg_series,
    series_volume,
    wait_for_training,
)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def client(orthanc: OrthancSettings) -> DICOMwebClient:
    """A plain dicomweb-client on the test Orthanc."""
    return orthanc.dicomweb_client()


@pytest.fixture(scope="module")
def phantoms(orthanc: OrthancSettings, spine_labels: dict[str, int]) -> list[StoredPhantom]:
    """Three phantom CT series stored in Orthanc."""
    return [
        store_phantom(orthanc.url, generate_neck_ct(seed, spine_labels), patient_id=f"TEST-{seed}", auth=orthanc.auth)
        for seed in (11, 12, 13)
    ]


@pytest.fixture(scope="module")
def real_ct(client: DICOMwebClient, shared_data: Path) -> list[Dataset]:
    """The JPEG 2000 CT from TotalSegmentator's test data, stored in Orthanc by STOW-RS."""
    datasets = [pydicom.dcmread(p) for p in sorted((shared_data / "ct-abdomen-totalseg" / "dicom").glob("*"))]
    client.store_instances(datasets)
    return datasets


@pytest.fixture(scope="module")
def final_labels(hope_url: str, client: DICOMwebClient, phantoms: list[StoredPhantom]) -> list[StoredPhantom]:
    """The second and third phantoms with their final labels saved (SEGs in Orthanc): the training cases."""
    for stored in phantoms[1:]:
        image = series_volume(client, stored.study_uid, stored.series_uid)
        assert put_label(hope_url, stored.series_uid, nifti_bytes(stored.phantom.label, image)).status_code == 200
    return phantoms[1:]


def _listed_images(hope_url: str) -> dict[str, dict]:
    response = requests.get(f"{hope_url}/datastore/", params={"output": "all"}, timeout=60)
    response.raise_for_status()
    return response.json()["objects"]


def test_lists_every_image_modality_but_not_seg(
    hope_url: str, client: DICOMwebClient, phantoms: list[StoredPhantom], real_ct: list[Dataset]
) -> None:
    """CT, MR, DX and compressed real CT stored by STOW-RS all appear in HOPE's listing within seconds."""
    phantom = phantoms[0].phantom
    mr = volume_to_datasets(phantom.image, phantom.spacing, new_identity("TEST-MR", modality="MR"))
    dx = volume_to_datasets(phantom.image[:1], phantom.spacing, new_identity("TEST-DX"))[0]
    dx.Modality = "DX"
    dx.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
    dx.SeriesInstanceUID = generate_uid()
    client.store_instances(mr)
    client.store_instances([dx])
    expected = {
        phantoms[0].series_uid: "CT",
        mr[0].SeriesInstanceUID: "MR",
        dx.SeriesInstanceUID: "DX",
        real_ct[0].SeriesInstanceUID: "CT",
    }

    def all_listed() -> dict | None:
        listed = _listed_images(hope_url)
        return listed if set(expected) <= set(listed) else None

    listed = poll(all_listed, timeout=30, what="new series to be listed")
    assert {uid: listed[uid]["image"]["info"]["Modality"] for uid in expected} == expected


def test_infer_returns_label_on_series_grid(
    hope_url: str, client: DICOMwebClient, phantoms: list[StoredPhantom], spine_labels: dict[str, int]
) -> None:
    """``POST /infer/spine_ct?image=<uid>`` answers a label volume with the series' size, spacing and origin."""
    stored = phantoms[0]
    response = requests.post(
        f"{hope_url}/infer/spine_ct", params={"image": stored.series_uid, "output": "image"}, timeout=600
    )
    assert response.status_code == 200, response.text
    label = read_nifti_bytes(response.content)
    image = series_volume(client, stored.study_uid, stored.series_uid)
    assert_on_grid(label, image)


def test_infer_on_compressed_real_ct(hope_url: str, real_ct: list[Dataset]) -> None:
    """The JPEG 2000 CT from TotalSegmentator's test data is fetched, decoded and segmented."""
    uid = real_ct[0].SeriesInstanceUID
    response = requests.post(f"{hope_url}/infer/spine_ct", params={"image": uid, "output": "image"}, timeout=600)
    assert response.status_code == 200, response.text
    assert read_nifti_bytes(response.content).GetSize() == (512, 512, 20)


def test_final_label_becomes_seg_in_orthanc(
    hope_url: str, client: DICOMwebClient, phantoms: list[StoredPhantom], spine_labels: dict[str, int],
    tmp_path: Path,
) -> None:
    """A saved final label is a SEG in Orthanc that equals the label voxel for voxel and references the series."""
    stored = phantoms[0]
    image = series_volume(client, stored.study_uid, stored.series_uid)
    before = {s.SeriesInstanceUID for s in seg_series(client)}
    response = put_label(hope_url, stored.series_uid, nifti_bytes(stored.phantom.label, image))
    assert response.status_code == 200, response.text

    new = [s for s in seg_series(client) if s.SeriesInstanceUID not in before]
    assert len(new) == 1
    seg = download_series(client, new[0].StudyInstanceUID, new[0].SeriesInstanceUID, tmp_path / "seg")[0]
    sources = download_series(client, stored.study_uid, stored.series_uid, tmp_path / "image")
    assert seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.4"
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == stored.series_uid
    assert seg.FrameOfReferenceUID == sources[0].FrameOfReferenceUID
    assert {s.SegmentLabel for s in seg.SegmentSequence} == set(spine_labels)
    np.testing.assert_array_equal(seg_to_label(seg, sources, spine_labels), stored.phantom.label)

    stats = requests.get(f"{hope_url}/datastore/", params={"output": "stats"}, timeout=60).json()
    assert stats["completed"] >= 1


def test_train_publishes_a_new_model_used_without_restart(
    hope_url: str, phantoms: list[StoredPhantom], final_labels: list[StoredPhantom]
) -> None:
    """One epoch on the final labels read back from Orthanc makes a new version, served without a restart: at once
    when the promotion rule lets it (not worse on the frozen validation set), else once pinned; inference works."""
    before = model_checksum(hope_url, "spine_ct")

    response = requests.post(f"{hope_url}/train/spine_ct", json={"max_epochs": 1, "val_split": 0.0}, timeout=60)
    assert response.status_code == 200, response.text
    task = wait_for_training(hope_url, timeout=900)
    assert task["status"] == "DONE", "\n".join(task.get("details", []))
    made = task["model_version"]
    assert made and made["promotion"]["reason"], task
    pinned = not made["promotion"]["promoted"]
    if pinned:  # kept, not served: the admin's override
        response = requests.put(f"{hope_url}/hope/models/spine_ct/pin", json={"version": made["version"]}, timeout=60)
        assert response.status_code == 200, response.text
    try:
        info = requests.get(f"{hope_url}/model/info/spine_ct", timeout=30).json()
        assert info["checksum"] != before
        assert info["train_stats"]["epoch"] == 1
        response = requests.post(
            f"{hope_url}/infer/spine_ct", params={"image": phantoms[0].series_uid, "output": "json"}, timeout=600
        )
        assert response.status_code == 200, response.text
    finally:
        if pinned:
            requests.delete(f"{hope_url}/hope/models/spine_ct/pin", timeout=60).raise_for_status()


def test_unknown_series_is_404_with_reason(hope_url: str) -> None:
    """Inference on a series that is not in the store answers 404 and names it."""
    uid = generate_uid()
    response = requests.post(f"{hope_url}/infer/spine_ct", params={"image": uid}, timeout=60)
    assert response.status_code == 404
    assert uid in response.json()["detail"]


def test_seg_series_is_not_an_image(
    hope_url: str, client: DICOMwebClient, final_labels: list[StoredPhantom]
) -> None:
    """Inference on a SEG series answers 422 instead of segmenting the segmentation."""
    poll(lambda: seg_series(client), timeout=30, what="a SEG in the store")
    seg_uid = seg_series(client)[0].SeriesInstanceUID
    response = requests.post(f"{hope_url}/infer/spine_ct", params={"image": seg_uid}, timeout=60)
    assert response.status_code == 422
    assert "SEG" in response.json()["detail"]


def test_label_on_wrong_grid_is_422_and_writes_nothing(
    hope_url: str, client: DICOMwebClient, phantoms: list[StoredPhantom]
) -> None:
    """A label one slice short is refused with the reason, and no SEG reaches Orthanc."""
    stored = phantoms[2]
    image = series_volume(client, stored.study_uid, stored.series_uid)
    cropped = image[:, :, :-1]
    before = len(seg_series(client))
    response = put_label(hope_url, stored.series_uid, nifti_bytes(stored.phantom.label[:-1], cropped))
    assert response.status_code == 422
    assert "size" in response.json()["detail"]
    assert len(seg_series(client)) == before


def test_out_of_bounds_training_parameters_are_422(hope_url: str) -> None:
    """Training parameters outside the task's bounds are refused with the reason, and nothing starts."""
    response = requests.post(f"{hope_url}/train/spine_ct", json={"max_epochs": 1, "learning_rate": 5.0}, timeout=60)
    assert response.status_code == 422
    assert "learning_rate" in response.json()["detail"]


def test_broken_training_run_keeps_the_served_model(hope_url: str, final_labels: list[StoredPhantom]) -> None:
    """A training process that dies (as under the OOM killer) is reported as failed; the served model stays.

    ``final_labels``: with training cases, the run gets as far as training (it is killed there, not short of data).
    """
    before = model_checksum(hope_url, "spine_ct")
    response = requests.post(f"{hope_url}/train/spine_ct", json={"max_epochs": 50, "val_split": 0.0}, timeout=60)
    assert response.status_code == 200, response.text

    def training_process() -> psutil.Process | None:
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = proc.info["cmdline"] or []
            if "monailabel.interfaces.utils.app" in cmdline and "train" in cmdline:
                return proc
        return None

    poll(training_process, timeout=60, what="the training subprocess").kill()
    task = wait_for_training(hope_url, timeout=120)
    assert task["status"] == "ERROR"
    assert model_checksum(hope_url, "spine_ct") == before
