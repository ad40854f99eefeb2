"""Client-side helpers for integration tests: talk to Orthanc and HOPE the way real clients do."""

from __future__ import annotations

import io
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np
import requests
import SimpleITK as sitk
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE

from hope.config.server import DicomSender, OrthancAccess
from hope.dicom.volume import read_series
from hope.processes.orthanc import OrthancSettings
from hope.sync.signing import EventKey

#: The AE title the tests C-STORE as, from this machine.
TEST_SENDER = DicomSender(aet="HOPE-TEST", host="127.0.0.1")
#: An Orthanc that accepts the tests' C-STOREs (``OrthancSettings(access=C_STORE_ACCESS)``).
C_STORE_ACCESS = OrthancAccess(dicom_senders=(TEST_SENDER,))


def poll(fn: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    """Call ``fn`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = fn()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


def seg_series(client: DICOMwebClient) -> list[Dataset]:
    """Every SEG series in the store (QIDO-RS)."""
    return [Dataset.from_json(d) for d in client.search_for_series(search_filters={"Modality": "SEG"})]


def download_series(client: DICOMwebClient, study_uid: str, series_uid: str, dest: Path) -> list[Dataset]:
    """WADO-RS a series into ``dest`` (one file per instance) and return the datasets."""
    datasets = client.retrieve_series(study_uid, series_uid, media_types=(("application/dicom", "*"),))
    dest.mkdir(parents=True, exist_ok=True)
    for i, ds in enumerate(datasets):
        ds.save_as(dest / f"{i:04d}.dcm", write_like_original=False)
    return datasets


def series_volume(client: DICOMwebClient, study_uid: str, series_uid: str) -> sitk.Image:
    """The series as a SimpleITK volume, read independently of the server."""
    with tempfile.TemporaryDirectory() as tmp:
        download_series(client, study_uid, series_uid, Path(tmp))
        return read_series(Path(tmp))


def nifti_bytes(array_zyx: np.ndarray, reference: sitk.Image) -> bytes:
    """A uint8 label volume with ``reference``'s geometry, as NIfTI bytes."""
    label = sitk.GetImageFromArray(array_zyx.astype(np.uint8))
    label.CopyInformation(reference)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "label.nii.gz"
        sitk.WriteImage(label, str(path))
        return path.read_bytes()


def assert_on_grid(label: sitk.Image, image: sitk.Image) -> None:
    """``label`` lies on ``image``'s voxel grid: size, spacing, origin and direction."""
    assert label.GetSize() == image.GetSize()
    np.testing.assert_allclose(label.GetSpacing(), image.GetSpacing(), atol=1e-3)
    np.testing.assert_allclose(label.GetOrigin(), image.GetOrigin(), atol=1e-3)
    np.testing.assert_allclose(label.GetDirection(), image.GetDirection(), atol=1e-4)


def read_nifti_bytes(data: bytes) -> sitk.Image:
    """Parse NIfTI bytes (as returned by ``/infer``) into a SimpleITK image."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "result.nii.gz"
        path.write_bytes(data)
        return sitk.ReadImage(str(path))


def put_label(hope_url: str, series_uid: str, data: bytes, tag: str = "final") -> requests.Response:
    """``PUT /datastore/label`` as the Slicer and OHIF clients do."""
    return requests.put(
        f"{hope_url}/datastore/label",
        params={"image": series_uid, "tag": tag},
        files={"label": ("label.nii.gz", io.BytesIO(data), "application/octet-stream")},
        data={"params": "{}"},
        timeout=300,
    )


def model_checksum(hope_url: str, model: str) -> str:
    """The served model file's checksum from ``GET /model/info/<model>``."""
    response = requests.get(f"{hope_url}/model/info/{model}", timeout=30)
    response.raise_for_status()
    return str(response.json()["checksum"])


def wait_for_training(hope_url: str, timeout: float) -> dict[str, Any]:
    """Poll ``GET /train/`` until the latest training task has ended; return it."""

    def finished() -> dict[str, Any] | None:
        task = requests.get(f"{hope_url}/train/", timeout=30).json()
        return task if task.get("status") not in {"SUBMITTED", "RUNNING"} else None

    return poll(finished, timeout, "training to finish", interval=1.0)


def post_event(hope_url: str, event: dict[str, Any], key: EventKey) -> requests.Response:
    """``POST /hope/events`` signed with ``key``, exactly as HOPE's Orthanc plugin posts it."""
    body = json.dumps(event).encode()
    headers = {"Content-Type": "application/json", **key.sign(body)}
    return requests.post(f"{hope_url}/hope/events", data=body, headers=headers, timeout=30)


def c_store(dicom_port: int, datasets: list[Dataset]) -> None:
    """Send ``datasets`` to Orthanc (AET HOPE) by DICOM C-STORE as :data:`TEST_SENDER`, as a modality does."""
    ae = AE(ae_title=TEST_SENDER.aet)
    for sop_class in {ds.SOPClassUID for ds in datasets}:
        ae.add_requested_context(sop_class, ExplicitVRLittleEndian)
    assoc = ae.associate("127.0.0.1", dicom_port, ae_title="HOPE")
    assert assoc.is_established, "Orthanc refused the association"
    try:
        for ds in datasets:
            status = assoc.send_c_store(ds)
            assert status and status.Status == 0x0000, f"C-STORE failed: {status}"
    finally:
        assoc.release()


def orthanc_instances(orthanc: OrthancSettings) -> int:
    """How many instances Orthanc holds (its ``/statistics``)."""
    response = requests.get(f"{orthanc.url}/statistics", auth=orthanc.auth, timeout=30)
    response.raise_for_status()
    return int(response.json()["CountInstances"])


def nifti_header_only(shape: tuple[int, ...], dtype: type = np.uint8) -> bytes:
    """A single-file NIfTI-1 header (352 bytes with its extension flag) declaring ``shape``, without its voxels:
    a bomb when the volume is large."""
    header = nib.Nifti1Header()
    header.set_data_shape(shape)
    header.set_data_dtype(dtype)
    header["vox_offset"] = 352
    return header.binaryblock + b"\0" * 4
