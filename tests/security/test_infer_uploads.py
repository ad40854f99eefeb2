"""Hostile and malformed labels uploaded to ``POST /infer/{model}``, against a real HOPE server and Orthanc.

Scribble corrections upload the current label (Slicer a ``.nii.gz``, OHIF a raw ``.bin``), and ``tumor_grade`` takes
a lesion label. MONAI Label's route handed the upload straight to SimpleITK or to its ``binary_to_image``: a
``.bin`` of the wrong size and a non-NIfTI label sent to ``tumor_grade`` answered 500 (found by Schemathesis), a
header-only bomb was allocated as declared, ``params`` could name a server file as the label, and every failed
request left its copies in the temp folder for good.

The module starts its own HOPE server (on the session's Orthanc) with ``http.max_upload_mb: 1`` and a temp folder
(``TMPDIR``) of its own. Every test asserts the answer, that Orthanc holds no new instance, and that the server left
no file in its temp folder and no work folder in its cache.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests

from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.processes.orthanc import OrthancSettings
from tests.conftest import running_hope
from tests.integration.helpers import nifti_header_only, orthanc_instances

pytestmark = pytest.mark.slow

TIMEOUT = 120
MiB = 1 << 20
SCRIBBLES = "spine_ct_scribbles"
GRADE = "tumor_grade"
NOT_A_LABEL = b"this is not a label, just text\n" * 40


@dataclass
class Server:
    """The module's HOPE server, the Orthanc it uses, and where to look for what it wrote."""

    url: str
    orthanc: OrthancSettings
    temp: Path
    cache: Path

    def instances(self) -> int:
        """How many instances Orthanc holds."""
        return orthanc_instances(self.orthanc)

    def leftovers(self) -> set[str]:
        """Files in the server's temp folder, and hidden work folders in its cache."""
        return {p.name for p in self.temp.iterdir()} | {str(p) for p in self.cache.rglob(".*")}


@pytest.fixture(scope="module")
def server(orthanc: OrthancSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """HOPE with its own temp folder and a 1 MB upload limit."""
    root = tmp_path_factory.mktemp("infer-uploads")
    temp = root / "server-tmp"
    temp.mkdir()
    data = root / "hope"
    with running_hope(orthanc, data, {"TMPDIR": str(temp)}, http={"max_upload_mb": 1}) as (url, _):
        yield Server(url, orthanc, temp, data / "cache")


@pytest.fixture(scope="module")
def series(server: Server) -> str:
    """A 16-slice CT of 64 x 64 voxels in Orthanc; its SeriesInstanceUID."""
    datasets = volume_to_datasets(np.full((16, 64, 64), -500, dtype=np.int16), (0.7, 0.7, 2.0),
                                  new_identity("SEC-INFER-UPLOAD"))
    server.orthanc.dicomweb_client().store_instances(datasets)
    return str(datasets[0].SeriesInstanceUID)


@pytest.fixture
def untouched(server: Server, series: str) -> Iterator[None]:
    """Asserts, after the test, that Orthanc holds no new instance and the server left no file behind."""
    instances, leftovers = server.instances(), server.leftovers()
    yield
    assert server.instances() == instances, "something was written in Orthanc"
    assert server.leftovers() == leftovers, f"left behind: {sorted(server.leftovers() - leftovers)}"


def _infer(server: Server, series: str, model: str, filename: str, data: bytes,
           params: dict[str, object] | None = None) -> requests.Response:
    return requests.post(
        f"{server.url}/infer/{model}",
        params={"image": series, "output": "json"},
        files={"label": (filename, data, "application/octet-stream")},
        data={"params": json.dumps(params or {})},
        timeout=TIMEOUT,
    )


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(
    ("model", "filename", "data", "status", "reason"),
    [
        (SCRIBBLES, "label.bin", bytes(100), 422, "the .bin label has 100 bytes, but the grid of series"),
        (GRADE, "label.bin", bytes(100), 422, "the .bin label has 100 bytes, but the grid of series"),
        (GRADE, "lesion.nii.gz", NOT_A_LABEL, 422, "the label file is not NIfTI-1"),
        (SCRIBBLES, "label.nii.gz", NOT_A_LABEL, 422, "the label file is not NIfTI-1"),
        (GRADE, "lesion", NOT_A_LABEL, 422, "has an unknown format"),
        (SCRIBBLES, "label.nrrd", NOT_A_LABEL, 422, "the label file is not NRRD"),
        (SCRIBBLES, "label.nii.gz", bytes(int(1.5 * MiB)), 413, "max_upload_mb"),
    ],
    ids=["bin-of-the-wrong-size-to-scribbles", "bin-of-the-wrong-size-to-tumor-grade", "text-to-tumor-grade",
         "text-to-scribbles", "text-without-a-suffix", "text-as-nrrd", "over-the-upload-limit"],
)
def test_a_malformed_label_is_refused_with_a_reason(server: Server, series: str, model: str, filename: str,
                                                    data: bytes, status: int, reason: str) -> None:
    """Each answered 500 (MONAI Label's route), and left its copies in the temp folder."""
    response = _infer(server, series, model, filename, data)
    assert response.status_code == status, response.text[:300]
    assert reason in response.json()["detail"]


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("model", [SCRIBBLES, GRADE])
def test_a_header_only_bomb_is_refused_at_once(server: Server, series: str, model: str) -> None:
    """352 bytes declaring a 1 GB volume: SimpleITK allocated it before any check."""
    started = time.monotonic()
    response = _infer(server, series, model, "label.nii", nifti_header_only((1024, 1024, 512), np.int16))
    assert response.status_code == 422, response.text[:300]
    assert "does not lie on the grid" in response.json()["detail"]
    assert time.monotonic() - started < 10


@pytest.mark.usefixtures("untouched")
def test_params_may_not_name_a_server_file_as_the_label(server: Server, series: str) -> None:
    """MONAI Label merged ``params`` over the request: ``{"label": "/etc/passwd"}`` was read as the lesion."""
    response = _infer(server, series, GRADE, "label.bin", bytes(100), params={"label": "/etc/passwd"})
    assert response.status_code == 422, response.text[:300]
    assert "params may not set label" in response.json()["detail"]
