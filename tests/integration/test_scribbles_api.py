"""Scribble corrections over HTTP: upload label + scribbles, get the refined label, save it as a final SEG.

Drives ``POST /infer/spine_ct_scribbles`` the way the clients do: 3D Slicer uploads a NIfTI labelmap, OHIF a raw
``.bin`` the server converts on the image's grid. A server that does not serve the model fails these tests.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import requests
import SimpleITK as sitk
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset
from scipy import ndimage

from hope.config import load_task
from hope.demo import StoredPhantom, store_phantom
from hope.dicom.seg import seg_to_label
from hope.interactive import next_scribble, paint
from hope.phantoms import generate_neck_ct
from hope.processes.orthanc import OrthancSettings

from .helpers import (
    assert_on_grid,
    download_series,
    nifti_bytes,
    poll,
    put_label,
    read_nifti_bytes,
    seg_series,
    series_volume,
)

pytestmark = pytest.mark.slow

MODEL = "spine_ct_scribbles"


@pytest.fixture(scope="module")
def scribbles_model(hope_url: str) -> str:
    """The scribbles model's name, once ``GET /info/`` lists it (an error of every test using it otherwise)."""
    response = requests.get(f"{hope_url}/info/", timeout=60)
    assert response.status_code == 200, response.text
    models = response.json().get("models", {})
    assert MODEL in models, f"the server does not list {MODEL!r} in GET /info/ (it serves {sorted(models)})"
    return MODEL


@pytest.fixture(scope="module")
def client(orthanc: OrthancSettings) -> DICOMwebClient:
    """A plain dicomweb-client on the test Orthanc."""
    return orthanc.dicomweb_client()


@pytest.fixture(scope="module")
def stored(orthanc: OrthancSettings, spine_labels: dict[str, int]) -> StoredPhantom:
    """The phantom of seed 141 stored in Orthanc."""
    return store_phantom(orthanc.url, generate_neck_ct(141, spine_labels), patient_id="SCRIBBLE-141",
                         auth=orthanc.auth)


@pytest.fixture(scope="module")
def upload(stored: StoredPhantom, spine_labels: dict[str, int]) -> dict[str, np.ndarray]:
    """An under-segmented tumour (its rim given to its vertebra) with one foreground scribble painted in."""
    truth, tumor = stored.phantom.label, spine_labels["tumor"]
    host = spine_labels[stored.phantom.params["tumor"]["vertebra"]]
    suggestion = truth.copy()
    suggestion[(truth == tumor) & ~ndimage.binary_erosion(truth == tumor)] = host
    scribble = next_scribble(
        suggestion, truth, tumor, np.random.default_rng(0), spacing=stored.phantom.spacing[::-1], kind="foreground"
    )
    assert scribble is not None
    settings = load_task("spine_ct").interactive
    assert settings is not None, "configs/tasks/spine_ct.yaml has no 'interactive' section"
    painted = suggestion.copy()
    paint(painted, scribble, settings.background_scribble, settings.foreground_scribble)
    return {"suggestion": suggestion, "painted": painted, "scribble": scribble.mask}


def _refine(hope_url: str, model: str, series_uid: str, filename: str, data: bytes) -> requests.Response:
    return requests.post(
        f"{hope_url}/infer/{model}",
        params={"image": series_uid, "output": "image"},
        files={"label": (filename, io.BytesIO(data), "application/octet-stream")},
        data={"params": json.dumps({"selected_label_name": "tumor"})},
        timeout=300,
    )


@pytest.mark.parametrize("client_kind", ["slicer-nifti", "ohif-bin"])
def test_scribbles_refine_the_tumor_and_reach_orthanc_as_seg(
    hope_url: str,
    scribbles_model: str,
    client: DICOMwebClient,
    stored: StoredPhantom,
    upload: dict[str, np.ndarray],
    spine_labels: dict[str, int],
    client_kind: str,
    tmp_path: Path,
) -> None:
    """The refined label is on the series' grid, holds the scribbled tumour, and saved as final it is a SEG."""
    image = series_volume(client, stored.study_uid, stored.series_uid)
    if client_kind == "slicer-nifti":
        filename, data = "label.nii.gz", nifti_bytes(upload["painted"], image)
    else:  # OHIF: the labelmap's raw bytes, x fastest, which is C order of the (z, y, x) array
        filename, data = "label.bin", upload["painted"].astype(np.uint8).tobytes()
    response = _refine(hope_url, scribbles_model, stored.series_uid, filename, data)
    assert response.status_code == 200, response.text
    refined_image = read_nifti_bytes(response.content)
    assert_on_grid(refined_image, image)
    refined = sitk.GetArrayFromImage(refined_image)
    tumor = spine_labels["tumor"]
    assert (refined[upload["scribble"]] == tumor).all(), "foreground scribbles are hard constraints"
    untouched = (upload["suggestion"] != tumor) & (refined != tumor)
    np.testing.assert_array_equal(refined[untouched], upload["suggestion"][untouched])

    assert put_label(hope_url, stored.series_uid, nifti_bytes(refined, image)).status_code == 200
    sources = download_series(client, stored.study_uid, stored.series_uid, tmp_path / "image")

    def final_seg() -> Dataset | None:
        """The SEG of the series holding the refined label (saving the same label twice stores one SEG)."""
        for found in seg_series(client):
            if found.StudyInstanceUID != stored.study_uid:
                continue
            uid = found.SeriesInstanceUID
            seg = download_series(client, stored.study_uid, uid, tmp_path / uid)[0]
            if np.array_equal(seg_to_label(seg, sources, spine_labels), refined):
                return seg
        return None

    seg = poll(final_seg, timeout=30, what="the final SEG holding the refined label")
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == stored.series_uid


def test_label_on_another_grid_is_422(
    hope_url: str, scribbles_model: str, client: DICOMwebClient, stored: StoredPhantom, upload: dict[str, np.ndarray]
) -> None:
    """A label that does not match the series' grid is refused with a reason, not a 500."""
    image = series_volume(client, stored.study_uid, stored.series_uid)
    data = nifti_bytes(upload["painted"][:-1], image[:, :, :-1])
    response = _refine(hope_url, scribbles_model, stored.series_uid, "label.nii.gz", data)
    assert response.status_code == 422, response.text
    assert "grid" in response.json()["detail"]
