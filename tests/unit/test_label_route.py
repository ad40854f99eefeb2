"""HOPE's ``PUT /datastore/label``, against a recording datastore: the request MONAI Label's route takes, bounded.

MONAI Label 0.8.5's route left the upload in the temp folder whenever the save failed, answered 500 to invalid
JSON in ``params``, and read an upload of any size.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from hope.api.labels import FORM_OVERHEAD_BYTES, build_router
from hope.errors import InvalidInputError

from .conftest import demo_app

LIMIT = 4096


class RecordingDatastore:
    """Records each ``save_label`` call with the bytes of the file it was given; fails with ``error`` if set."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, str, dict[str, Any], bytes]] = []
        self.files: list[Path] = []
        self.error: Exception | None = None

    def save_label(self, image_id: str, label_filename: str, label_tag: str, label_info: dict[str, Any]) -> str:
        path = Path(label_filename)
        self.files.append(path)
        self.calls.append((image_id, path.name, label_tag, label_info, path.read_bytes()))
        if self.error is not None:
            raise self.error
        return image_id


@pytest.fixture
def datastore() -> RecordingDatastore:
    return RecordingDatastore()


@pytest.fixture
def saved() -> list[tuple[str, str]]:
    """The app's ``on_save_label`` calls."""
    return []


@pytest.fixture
def client(datastore: RecordingDatastore, saved: list[tuple[str, str]], temp: Path) -> Iterator[TestClient]:
    def on_save_label(image: str, label: str) -> dict[str, Any]:
        saved.append((image, label))
        return {"saved": len(saved)}

    app = demo_app()
    app.include_router(build_router(datastore, on_save_label, LIMIT))  # type: ignore[arg-type]
    with TestClient(app) as test_client:
        yield test_client


def _put(client: TestClient, data: bytes, filename: str = "label.nii.gz", params: str | None = "{}",
         **query: str) -> Any:
    form = {"params": params} if params is not None else {}
    return client.put("/datastore/label", params={"image": "1.2.3", **query}, data=form,
                      files={"label": (filename, data, "application/octet-stream")})


def test_a_label_is_saved_as_monai_label_saves_it(client: TestClient, datastore: RecordingDatastore,
                                                   saved: list[tuple[str, str]], temp: Path) -> None:
    response = _put(client, b"label bytes", params='{"user": "Doe^Jane"}', tag="final")
    assert response.status_code == 200, response.text
    assert response.json() == {"saved": 1, "image": "1.2.3", "label": "1.2.3"}
    assert datastore.calls == [("1.2.3", "label.nii.gz", "final", {"user": "Doe^Jane"}, b"label bytes")]
    assert saved == [("1.2.3", "1.2.3")]
    assert _put(client, b"x", filename="label.bin", params=None).status_code == 200  # OHIF: .bin, tag by default
    assert datastore.calls[-1][1:4] == ("label.bin", "final", {"user": "demo"})  # nobody named: the demo user
    assert not any(path.exists() for path in datastore.files) and list(temp.iterdir()) == []


def test_a_failed_save_leaves_no_file(client: TestClient, datastore: RecordingDatastore,
                                      saved: list[tuple[str, str]], temp: Path) -> None:
    datastore.error = InvalidInputError("label does not lie on the grid")
    response = _put(client, b"label bytes")
    assert response.status_code == 422 and response.json() == {"detail": "label does not lie on the grid"}
    assert saved == []
    assert datastore.files and not datastore.files[0].exists() and list(temp.iterdir()) == []


@pytest.mark.parametrize(
    ("params", "reason"),
    [("{not json", "params must be a JSON object"), ("[1, 2]", "params must be a JSON object, got list")],
)
def test_invalid_params_are_refused(client: TestClient, datastore: RecordingDatastore, params: str,
                                    reason: str) -> None:
    response = _put(client, b"label bytes", params=params)
    assert response.status_code == 422 and reason in response.json()["detail"]
    assert datastore.calls == []


def test_a_request_without_a_label_or_of_an_unknown_format_is_refused(client: TestClient,
                                                                       datastore: RecordingDatastore) -> None:
    response = client.put("/datastore/label", params={"image": "1.2.3"}, data={"params": "{}"})
    assert response.status_code == 422 and "no label file" in response.json()["detail"]
    response = _put(client, b"print('x')", filename="x.py")
    assert response.status_code == 422 and "unknown format" in response.json()["detail"]
    assert datastore.calls == []


def test_an_upload_over_the_limit_is_refused_with_413(client: TestClient, datastore: RecordingDatastore,
                                                     temp: Path) -> None:
    response = _put(client, bytes(LIMIT + 1))  # the form fits its overhead, the label does not
    assert response.status_code == 413 and "max_upload_mb" in response.json()["detail"]
    response = _put(client, bytes(LIMIT + FORM_OVERHEAD_BYTES))  # refused from its Content-Length
    assert response.status_code == 413
    assert datastore.calls == [] and list(temp.iterdir()) == []


def test_an_upload_without_a_length_is_refused_once_over_the_limit(client: TestClient,
                                                                  datastore: RecordingDatastore) -> None:
    boundary = "hopeboundary"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"label\"; filename=\"l.nii.gz\"\r\n"
            "Content-Type: application/octet-stream\r\n\r\n").encode()

    def body() -> Iterator[bytes]:  # streamed: no Content-Length, Transfer-Encoding chunked
        yield head
        for _ in range(2 * (LIMIT + FORM_OVERHEAD_BYTES) // 65536 + 1):
            yield bytes(65536)
        yield f"\r\n--{boundary}--\r\n".encode()

    response = client.put("/datastore/label", params={"image": "1.2.3"}, content=body(),
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413 and "max_upload_mb" in response.json()["detail"]
    assert datastore.calls == []
