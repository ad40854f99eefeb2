"""A 3D Slicer annotation session against a real HOPE server, driven by the Slicer plugin's own client.

The MONAI Label extension for 3D Slicer talks to the server through ``MONAILabelLib/client.py``
(``MONAILabelClient``). The monailabel wheel ships that plugin as data files, so the very client Slicer runs is
loaded here from the installed package (never copied into this repository). Where Slicer itself does plain
HTTP (downloading the next sample from ``/datastore/image`` when the datastore is not on the same machine),
the test does the same request.

The session: server info -> next sample -> download it -> infer -> submit a corrected label (a DICOM SEG in
Orthanc) -> start training -> stop it.
"""

from __future__ import annotations

import time
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest
import requests
import SimpleITK as sitk
from pydicom.dataset import Dataset

from hope.config import load_task
from hope.demo import StoredPhantom, store_phantom
from hope.phantoms import generate_neck_ct, generate_neck_mr
from hope.processes.oidc_provider import demo_password
from hope.processes.orthanc import OrthancSettings

from ..conftest import SignedInHope
from .helpers import nifti_bytes, poll, seg_series

pytestmark = pytest.mark.slow

SEEDS = (41, 42, 43)


@pytest.fixture(scope="module")
def phantoms(orthanc: OrthancSettings, spine_labels: dict[str, int]) -> dict[str, StoredPhantom]:
    """Three unlabelled phantom CT series in Orthanc, by SeriesInstanceUID."""
    stored = [
        store_phantom(orthanc.url, generate_neck_ct(seed, spine_labels), patient_id=f"SLICER-{seed}", auth=orthanc.auth)
        for seed in SEEDS
    ]
    return {s.series_uid: s for s in stored}


def _unlabelled(slicer: Any) -> set[str]:
    """Series the server lists without a final label (``GET /datastore/?output=all`` through the client)."""
    return {uid for uid, obj in slicer.datastore()["objects"].items() if not obj.get("labels", {}).get("final")}


def _read_image(path: str | Path) -> sitk.Image:
    return sitk.ReadImage(str(path))


def test_slicer_annotation_session(
    slicer: Any,
    slicer_lib: ModuleType,
    hope_url: str,
    orthanc: OrthancSettings,
    phantoms: dict[str, StoredPhantom],
    spine_labels: dict[str, int],
    tmp_path: Path,
) -> None:
    """Everything an annotator does in Slicer's MONAI Label module works against HOPE and lands in Orthanc."""
    # 1. Server info: the module fills its model, strategy and trainer boxes from it.
    info = slicer.info()
    assert info["name"] == "HOPE"
    assert "spine_ct" in info["models"], info["models"].keys()
    assert info["models"]["spine_ct"]["labels"] == spine_labels
    assert "spine_ct" in info["trainers"]
    assert "random" in info["strategies"]

    # 2. Next sample. Other tests may have stored series too: every answer must be an unlabelled listed
    # series, and the random strategy never repeats a picked one while unpicked ones remain, so ours comes up.
    ours = set(phantoms)
    poll(lambda: ours <= _unlabelled(slicer), timeout=30, what="the SLICER phantoms to be listed")

    def next_ours() -> dict[str, Any] | None:
        pool = _unlabelled(slicer)
        sample = slicer.next_sample("random", {})
        assert sample.get("id") in pool, f"next sample {sample.get('id')} is not an unlabelled series"
        return sample if sample["id"] in ours else None

    sample = poll(next_ours, timeout=60, what="the random strategy to offer a SLICER phantom", interval=0)
    image_id = sample["id"]
    stored = phantoms[image_id]
    # Slicer names the downloaded file after ``name`` and picks the reader by its extension.
    assert sample["name"].endswith(".nii.gz"), sample
    picked = requests.get(f"{hope_url}/datastore/image/info", params={"image": image_id}, timeout=30).json()
    assert picked["strategy"]["random"]["client_id"] == "slicer"  # what keeps ``random`` from repeating it

    # 3. Download the image as Slicer does when the server's files are not local to it.
    response = requests.get(f"{hope_url}/datastore/image", params={"image": image_id}, timeout=120)
    assert response.status_code == 200, response.text
    image_file = tmp_path / sample["name"]
    image_file.write_bytes(response.content)
    image = _read_image(image_file)
    z, y, x = stored.phantom.image.shape
    assert image.GetSize() == (x, y, z)
    np.testing.assert_allclose(image.GetSpacing(), stored.phantom.spacing, atol=1e-3)
    np.testing.assert_array_equal(sitk.GetArrayFromImage(image), stored.phantom.image)

    # 4. Auto segmentation: the label comes back as a file on the image's grid, with the label names.
    label_file, params = slicer.infer("spine_ct", image_id, {})
    assert label_file, "infer returned no label file"
    label = _read_image(label_file)
    assert label.GetSize() == image.GetSize()
    np.testing.assert_allclose(label.GetOrigin(), image.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(label.GetSpacing(), image.GetSpacing(), atol=1e-3)
    assert set(np.unique(sitk.GetArrayFromImage(label)).tolist()) <= {0, *spine_labels.values()}
    assert params["label_names"] == spine_labels

    # 5. Submit Label: Slicer sends the corrected labelmap on the downloaded image's grid, without a tag.
    corrected = tmp_path / "corrected.nii.gz"
    corrected.write_bytes(nifti_bytes(stored.phantom.label, image))
    client = orthanc.dicomweb_client()
    before = {s.SeriesInstanceUID for s in seg_series(client)}
    label_info = [{"name": name, "idx": value} for name, value in spine_labels.items()]
    saved = slicer.save_label(image_id, str(corrected), params={"label_info": label_info})
    assert saved["image"] == image_id
    new = [s for s in seg_series(client) if s.SeriesInstanceUID not in before]
    assert len(new) == 1, [s.SeriesInstanceUID for s in new]
    metadata = client.retrieve_series_metadata(new[0].StudyInstanceUID, new[0].SeriesInstanceUID)[0]
    meta = Dataset.from_json(metadata, bulk_data_uri_handler=lambda uri: b"")  # pixel data not needed
    assert meta.ReferencedSeriesSequence[0].SeriesInstanceUID == image_id
    assert meta.StudyInstanceUID == stored.study_uid
    assert image_id not in _unlabelled(slicer)

    # 6. Training: Slicer sends the trainer's config table from ``/info/`` (first choice of every list), here
    # edited to one epoch without validation, and the client adds its ``client_id``. Wait until no other
    # test's run is going, start it, see it run, stop it.
    params = {k: v[0] if isinstance(v, list) else v for k, v in info["trainers"]["spine_ct"]["config"].items()}
    params.update(max_epochs=1, val_split=0.0)
    poll(lambda: not slicer.train_status(True), timeout=600, what="other training runs to end", interval=1.0)
    task = _train_start(slicer, slicer_lib, params)
    assert task["status"] in {"SUBMITTED", "RUNNING"}, task
    poll(lambda: _training_or_ended(slicer, task["id"]), timeout=60, what="the trainer to start its epochs")
    if _train_task(slicer, task["id"])["status"] == "RUNNING":  # else it finished already: nothing to stop
        stopped = slicer.train_stop()
        assert stopped["id"] == task["id"], stopped
        assert stopped["status"] == "STOPPED"
    final = _train_task(slicer, task["id"])
    assert final["status"] in {"STOPPED", "DONE"}, "\n".join(final.get("details", []))
    assert final["end_ts"]


def _train_start(slicer: Any, slicer_lib: ModuleType, params: dict[str, Any]) -> dict[str, Any]:
    """``train_start``; a run someone else started in between (HTTP 429) is waited out, within a deadline."""
    deadline = time.monotonic() + 600
    while True:
        try:
            return slicer.train_start("spine_ct", dict(params))
        except slicer_lib.MONAILabelClientException as exc:
            if "Status: 429" not in exc.msg or time.monotonic() > deadline:
                raise
        poll(lambda: not slicer.train_status(True), timeout=600, what="the other training run to end", interval=1.0)


def _training_or_ended(slicer: Any, task_id: str) -> bool:
    """The run has ended, or a training process is running and its log says the trainer has read its data."""
    task = _train_task(slicer, task_id)
    if task["status"] not in {"SUBMITTED", "RUNNING"}:
        return True
    started = any("Records for Training" in line or "Epoch" in line for line in task.get("details", []))
    return started and slicer.train_status(True)


def _train_task(slicer: Any, task_id: str) -> dict[str, Any]:
    """Our training task from ``GET /train/?all=true`` (the client's ``train_status`` shows only the latest)."""
    response = requests.get(f"{slicer.get_server_url()}/train/", params={"all": "true"}, timeout=30)
    response.raise_for_status()
    return next(t for t in response.json() if t["id"] == task_id)


def test_slicer_signed_in_as_an_annotator(slicer_lib: ModuleType, team_hope: SignedInHope, orthanc: OrthancSettings,
                                          spine_labels: dict[str, int], tmp_path: Path) -> None:
    """With sign-in on, Slicer's module signs in with a username and password (``POST /auth/token``), infers and
    saves as that user (the SEG names them), and is refused training with a 403 that names the role it needs."""
    stored = store_phantom(orthanc.url, generate_neck_ct(44, spine_labels), patient_id="SLICER-AUTH-44",
                           auth=orthanc.auth)
    client = slicer_lib.MONAILabelClient(team_hope.url, tmpdir=str(tmp_path), client_id="slicer")
    assert client.auth_enabled()
    with pytest.raises(slicer_lib.MONAILabelClientException, match="Status: 401"):
        client.info()  # not signed in yet
    with pytest.raises(slicer_lib.MONAILabelClientException, match="Status: 401"):
        client.auth_token("anna", "not-her-password")
    client.update_auth(client.auth_token("anna", demo_password("anna")))
    assert client.auth_valid_token()
    assert "spine_ct" in client.info()["models"]

    label_file, params = client.infer("spine_ct", stored.series_uid, {})
    assert params["label_names"] == spine_labels and Path(label_file).is_file()
    image = sitk.ReadImage(str(label_file))
    corrected = tmp_path / "corrected.nii.gz"
    corrected.write_bytes(nifti_bytes(stored.phantom.label, image))
    before = {s.SeriesInstanceUID for s in seg_series(orthanc.dicomweb_client())}
    client.save_label(stored.series_uid, str(corrected), params={"user": "someone-else"})
    new = [s for s in seg_series(orthanc.dicomweb_client()) if s.SeriesInstanceUID not in before
           and s.StudyInstanceUID == stored.study_uid]
    assert len(new) == 1
    instance = orthanc.dicomweb_client().retrieve_series(stored.study_uid, new[0].SeriesInstanceUID)[0]
    assert str(instance.ContentCreatorName) == "anna" and str(instance.OperatorsName) == "anna"

    with pytest.raises(slicer_lib.MONAILabelClientException, match="Status: 403") as refused:
        client.train_start("spine_ct", {"max_epochs": 1})
    assert "needs the admin role" in refused.value.msg


def test_slicer_on_a_sagittal_mr(slicer: Any, orthanc: OrthancSettings, tmp_path: Path) -> None:
    """Slicer's client on an MR series (a T1 phantom stored as sagittal slices): spine_mr's label comes back on the
    image's grid with its measurements, and the corrected label becomes a SEG, then a measurement SR, in the study."""
    labels = load_task("spine_mr").labels
    stored = store_phantom(orthanc.url, generate_neck_mr(45, labels, "T1"), patient_id="SLICER-MR-45",
                           auth=orthanc.auth)
    assert slicer.info()["models"]["spine_mr"]["labels"] == labels
    label_file, params = slicer.infer("spine_mr", stored.series_uid, {})
    assert params["label_names"] == labels
    assert {"levels", "discs", "cobb_c2_c7_deg"} <= set(params["measurements"])
    image = sitk.ReadImage(str(label_file))
    assert sorted(image.GetSize()) == sorted(stored.phantom.image.shape)  # sagittal: the slices run left-right
    truth = sitk.GetImageFromArray(stored.phantom.label)
    truth.SetSpacing(stored.phantom.spacing)
    corrected = tmp_path / "corrected.nii.gz"
    on_grid = sitk.Resample(truth, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0, sitk.sitkUInt8)
    corrected.write_bytes(nifti_bytes(sitk.GetArrayFromImage(on_grid), image))
    client = orthanc.dicomweb_client()
    slicer.save_label(stored.series_uid, str(corrected), params={})
    segs = [s for s in seg_series(client) if s.StudyInstanceUID == stored.study_uid]
    assert len(segs) == 1
    poll(lambda: client.search_for_series(stored.study_uid, search_filters={"Modality": "SR"}), timeout=120,
         what="the measurement SR of the saved MR label")
