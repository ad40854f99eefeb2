"""HOPE's ``POST /infer/{model}`` with an uploaded label, against a fake datastore and a recording ``run_inference``.

MONAI Label 0.8.5 handed the uploaded label to SimpleITK or to its ``binary_to_image`` unchecked: a ``.bin`` of the
wrong size and a file that is no label answered 500, a header declaring a huge volume was allocated before any
check, ``params`` could name a file on the server as the label, and a failed request left its copies in the temp
folder for good.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hope.api import infer
from hope.errors import InvalidInputError, NotFoundError
from hope.server.errors import install_error_handlers
from tests.integration.helpers import nifti_header_only

SERIES = "1.2.826.0.1.3680043.8.498.7"
MODELS = ("spine_ct_scribbles", "tumor_grade")
LIMIT = 2048
GRID = (10, 12, 4)  # x, y, z


class ImageStore:
    """The datastore's ``get_image_uri``: one stored series, as a NIfTI file; counts the calls."""

    def __init__(self, folder: Path) -> None:
        image = sitk.Image(*GRID, sitk.sitkInt16)
        image.SetSpacing((0.7, 0.7, 2.0))
        image.SetOrigin((-3.0, 4.0, 10.0))
        self.image = image
        self.path = folder / f"{SERIES}.nii.gz"
        sitk.WriteImage(image, str(self.path))
        self.calls = 0

    def get_image_uri(self, image_id: str) -> str:
        self.calls += 1
        if image_id != SERIES:
            raise NotFoundError(f"series {image_id} is not in the DICOM store")
        return str(self.path)


class Inference:
    """Stands in for MONAI Label's ``run_inference``: records what it got, the label's voxels read at call time."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error: Exception | None = None

    def __call__(self, background_tasks: Any, model: str, image: str, session_id: str, params: str, file: Any,
                 label: Any, output: Any) -> dict[str, Any]:
        request = json.loads(params)
        call = {"model": model, "image": image, "params": request, "file": file, "label": label}
        if "label" in request:
            checked = sitk.ReadImage(request["label"])
            call["voxels"] = sitk.GetArrayFromImage(checked)
            call["geometry"] = (checked.GetSpacing(), checked.GetOrigin())
        self.calls.append(call)
        if self.error is not None:
            raise self.error
        return {"model": model}


@pytest.fixture
def store(tmp_path: Path) -> ImageStore:
    return ImageStore(tmp_path)


@pytest.fixture
def inference(monkeypatch: pytest.MonkeyPatch) -> Inference:
    recorder = Inference()
    monkeypatch.setattr(infer, "run_inference", recorder)
    return recorder


@pytest.fixture
def refused() -> dict[str, str]:
    """Series that ``check_servable`` refuses, with the reason."""
    return {}


@pytest.fixture
def client(store: ImageStore, inference: Inference, refused: dict[str, str], temp: Path) -> Iterator[TestClient]:
    def check_servable(model: str, image: object) -> None:
        if image in refused:
            raise InvalidInputError(refused[str(image)])

    app = FastAPI()
    app.include_router(infer.build_router(lambda: MODELS, check_servable, store, LIMIT))  # type: ignore[arg-type]
    install_error_handlers(app)
    with TestClient(app) as test_client:
        yield test_client


def _infer(client: TestClient, data: bytes | None, filename: str = "label.nii.gz", model: str = MODELS[0],
           params: dict[str, Any] | None = None, image: str = SERIES) -> Any:
    files = {"label": (filename, data, "application/octet-stream")} if data is not None else None
    return client.post(f"/infer/{model}", params={"image": image, "output": "json"},
                       data={"params": json.dumps(params or {"selected_label_name": "tumor"})}, files=files)


def _label() -> np.ndarray:
    array = np.zeros(GRID[::-1], dtype=np.uint8)
    array[1:3, 2:7, 3:8] = 5  # any value: scribble values are the task's to judge
    return array


def _nifti(array: np.ndarray, reference: sitk.Image, path: Path) -> bytes:
    label = sitk.GetImageFromArray(array)
    label.CopyInformation(reference)
    sitk.WriteImage(label, str(path))
    return path.read_bytes()


@pytest.mark.parametrize("filename", ["label.nii.gz", "label.nii", "label.nrrd"])
def test_a_label_on_the_grid_reaches_the_task_checked_and_is_removed(
    client: TestClient, store: ImageStore, inference: Inference, temp: Path, tmp_path: Path, filename: str
) -> None:
    expected = _label()
    response = _infer(client, _nifti(expected, store.image, tmp_path / filename), filename=filename)
    assert response.status_code == 200, response.text
    (call,) = inference.calls
    assert (call["model"], call["image"], call["file"], call["label"]) == (MODELS[0], SERIES, None, None)
    assert call["params"]["selected_label_name"] == "tumor"
    assert Path(call["params"]["label"]).name == "checked.nii"
    assert np.array_equal(call["voxels"], expected)
    assert not Path(call["params"]["label"]).exists() and list(temp.iterdir()) == []


def test_an_ohif_bin_label_is_read_onto_the_series_geometry(
    client: TestClient, store: ImageStore, inference: Inference, temp: Path
) -> None:
    expected = _label()
    response = _infer(client, expected.tobytes(), filename="label.bin")  # x fastest: C order of (z, y, x)
    assert response.status_code == 200, response.text
    (call,) = inference.calls
    assert np.array_equal(call["voxels"], expected)
    np.testing.assert_allclose(call["geometry"], (store.image.GetSpacing(), store.image.GetOrigin()), atol=1e-5)
    assert list(temp.iterdir()) == []


@pytest.mark.parametrize(
    ("filename", "data", "status", "reason"),
    [
        ("label.bin", bytes(100), 422, "the .bin label has 100 bytes, but the grid of series"),
        ("lesion.nii.gz", b"this is not a label\n" * 40, 422, "the label file is not NIfTI-1"),
        ("lesion.nii.gz", b"not a label", 422, "ends inside its NIfTI header"),
        ("lesion.txt", b"not a label", 422, "unknown format"),
        ("label.nii", nifti_header_only((1024, 1024, 512), np.int16), 422, "does not lie on the grid"),
        ("label.nii", nifti_header_only(GRID, np.float64), 413, "of voxels, more than the"),
        ("label.nii.gz", bytes(LIMIT + 1), 413, "max_upload_mb"),
    ],
    ids=["bin-of-the-wrong-size", "text-as-nifti", "short-text-as-nifti", "text-file", "header-only-bomb",
         "declared-over-the-limit", "upload-over-the-limit"],
)
@pytest.mark.parametrize("model", MODELS)
def test_a_bad_label_is_refused_with_a_reason_and_leaves_no_file(
    client: TestClient, inference: Inference, temp: Path, model: str, filename: str, data: bytes, status: int,
    reason: str,
) -> None:
    """Each answered 500 (or allocated what a header declared) and left its copies in the temp folder."""
    response = _infer(client, data, filename=filename, model=model)
    assert response.status_code == status, response.text
    assert reason in response.json()["detail"]
    assert inference.calls == [] and list(temp.iterdir()) == []


def test_a_failed_inference_leaves_no_file(client: TestClient, store: ImageStore, inference: Inference, temp: Path,
                                           tmp_path: Path) -> None:
    inference.error = InvalidInputError("no lesion to grade")
    response = _infer(client, _nifti(_label(), store.image, tmp_path / "l.nii.gz"), model="tumor_grade")
    assert response.status_code == 422 and response.json() == {"detail": "no lesion to grade"}
    assert len(inference.calls) == 1 and list(temp.iterdir()) == []


@pytest.mark.parametrize("key", ["label", "image", "session"])
def test_params_may_not_name_a_server_file(client: TestClient, store: ImageStore, inference: Inference,
                                           key: str) -> None:
    """MONAI Label merged ``params`` over the request: ``{"label": "/etc/passwd"}`` was read as the label, and
    ``{"image": "/etc/passwd"}`` as the image."""
    for data in (None, bytes(480)):
        response = _infer(client, data, filename="label.bin", params={key: "/etc/passwd"})
        assert response.status_code == 422 and f"params may not set {key}" in response.json()["detail"]
    assert inference.calls == [] and store.calls == 0


def test_a_label_needs_a_stored_series_the_model_may_run_on(
    client: TestClient, store: ImageStore, inference: Inference, refused: dict[str, str], temp: Path
) -> None:
    response = client.post(f"/infer/{MODELS[0]}", files={"file": ("image.nii.gz", b"x"), "label": ("l.bin", b"x")})
    assert response.status_code == 422 and "give image=<SeriesInstanceUID>" in response.json()["detail"]
    response = _infer(client, bytes(480), filename="label.bin", image="9.9.9")
    assert response.status_code == 404 and "series 9.9.9 is not in the DICOM store" in response.json()["detail"]
    refused[SERIES] = f"series {SERIES} was flagged invalid when it arrived: duplicate slice positions"
    response = _infer(client, bytes(480), filename="label.bin")
    assert response.status_code == 422 and "flagged invalid" in response.json()["detail"]
    assert store.calls == 1 and inference.calls == [] and list(temp.iterdir()) == []


def test_a_request_without_a_label_goes_to_monai_label_as_it_came(client: TestClient, store: ImageStore,
                                                                  inference: Inference) -> None:
    response = _infer(client, None, params={"tumor_type": "chordoma"})
    assert response.status_code == 200, response.text
    assert inference.calls == [{"model": MODELS[0], "image": SERIES, "params": {"tumor_type": "chordoma"},
                                "file": None, "label": None}]
    assert store.calls == 0
