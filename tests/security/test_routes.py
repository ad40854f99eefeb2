"""Hostile requests to the routes HOPE inherits from MONAI Label, against a real HOPE server and Orthanc.

Each test is a regression test of a finding of issue 12: before the route allow-list, the identifier guard, the
Host and CORS checks and HOPE's own DICOMweb proxy, every one of these requests succeeded.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from pathlib import Path

import pytest
import requests

from hope.processes.orthanc import OrthancSettings

pytestmark = pytest.mark.slow

TIMEOUT = 30


def test_image_upload_cannot_write_outside_the_data_folder(hope_url: str, tmp_path: Path) -> None:
    """``PUT /datastore/image?image=../../x.py`` wrote a file outside the data folder; now no route takes it."""
    target = tmp_path / "x.py"
    image = os.path.relpath(target, "/")  # however deep the data folder is, enough ../ to reach the target
    for name in (f"{'../' * 12}{image}", str(target)):
        response = requests.put(f"{hope_url}/datastore/image", params={"image": name},
                                files={"file": ("x.py", b"print('owned')")}, timeout=TIMEOUT)
        assert response.status_code in (404, 405, 422), response.text
    assert not target.exists()


def test_session_upload_is_not_served(hope_url: str) -> None:
    """``PUT /session/?uncompress=true`` unpacked ``../`` archive entries outside the session folder (tar slip)."""
    marker = Path(tempfile.gettempdir()) / f"hope-tar-slip-{os.getpid()}.txt"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        data = b"slipped"
        info = tarfile.TarInfo(f"{'../' * 12}{str(marker).lstrip('/')}")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    response = requests.put(f"{hope_url}/session/", params={"uncompress": "true"},
                            files={"files": ("x.tar.gz", buffer.getvalue())}, timeout=TIMEOUT)
    assert response.status_code in (404, 405), response.text
    assert not marker.exists()


@pytest.mark.parametrize("tag", ["/tmp/hope-abs-tag", "../../escape", "final/../../x"])
def test_label_tag_cannot_name_a_folder(hope_url: str, tag: str) -> None:
    """``PUT /datastore/label?tag=/abs/dir`` created that folder and wrote into it."""
    response = requests.put(f"{hope_url}/datastore/label", params={"image": "1.2.3", "tag": tag},
                            files={"label": ("l.nii.gz", b"not a label")}, timeout=TIMEOUT)
    assert response.status_code == 422 and "not a valid tag" in response.json()["detail"]
    assert not Path("/tmp/hope-abs-tag").exists()


@pytest.mark.parametrize("image", ["/etc/passwd", "../../etc/passwd", "a/b", "..", "x" * 200])
def test_identifiers_never_reach_a_path(hope_url: str, image: str) -> None:
    """``image=/some/server/path`` inferred on a server-local file (and told which files exist)."""
    for method, path in (("POST", "/infer/spine_ct"), ("GET", "/datastore/image"), ("GET", "/datastore/label")):
        response = requests.request(method, f"{hope_url}{path}", params={"image": image, "label": image},
                                    timeout=TIMEOUT)
        assert response.status_code == 422, (method, path, response.status_code, response.text)
        assert "not a valid identifier" in response.json()["detail"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/model/spine_ct"),
        ("DELETE", "/model/spine_ct"),
        ("GET", "/model/spine_ct"),
        ("POST", "/reload"),
        ("GET", "/datastore/dataset"),
        ("PUT", "/datastore/image/info"),
        ("PUT", "/datastore/label/info"),
        ("POST", "/batch/infer/spine_ct"),
        ("GET", "/logs/"),
        ("POST", "/proxy/dicom/stow/studies"),
    ],
)
def test_unused_monai_label_routes_are_gone(hope_url: str, method: str, path: str) -> None:
    """Routes no HOPE client uses are removed (``PUT /model`` replaced the served weights behind the registry)."""
    response = requests.request(method, f"{hope_url}{path}", files={"file": ("m.pt", b"x")}, timeout=TIMEOUT)
    assert response.status_code in (404, 405), (method, path, response.status_code)


@pytest.mark.parametrize("path", ["label", "image"])
def test_cache_only_deletes_are_refused_with_a_reason(hope_url: str, path: str) -> None:
    """``DELETE /datastore/label`` answered 200 and deleted only the cache; the SEG stayed in Orthanc."""
    response = requests.delete(f"{hope_url}/datastore/{path}", params={"id": "1.2.3", "tag": "final"},
                               timeout=TIMEOUT)
    assert response.status_code == 405 and "source of truth" in response.json()["detail"]


@pytest.mark.parametrize(
    "path",
    [
        "/proxy/dicom/%2e%2e/tools/shutdown",
        "/proxy/dicom/qido/%2e%2e/tools/shutdown",
        "/proxy/dicom/wado/..%2f..%2ftools/shutdown",
        "/proxy/dicom/qido/studies/%2e%2e/%2e%2e/system",
        "/proxy/dicom/wado/patients",
        "/proxy/dicom/qido/studies/1.2/..;/system",
    ],
)
def test_proxy_forwards_only_dicomweb_paths(hope_url: str, orthanc: OrthancSettings, path: str) -> None:
    """``/proxy/dicom/%2e%2e/...`` reached Orthanc's whole REST API, including ``POST /tools/shutdown``."""
    for method in ("GET", "POST"):
        response = requests.request(method, f"{hope_url}{path}", timeout=TIMEOUT)
        assert response.status_code in (404, 405, 422), (method, path, response.status_code, response.text[:200])
    alive = requests.get(f"{hope_url}/proxy/dicom/qido/studies", timeout=TIMEOUT)
    assert alive.status_code == 200, "Orthanc must still be up"


def test_proxy_still_serves_qido_with_wildcards(hope_url: str) -> None:
    response = requests.get(f"{hope_url}/proxy/dicom/qido/studies?00100020=*&limit=5", timeout=TIMEOUT)
    assert response.status_code == 200 and isinstance(response.json(), list)


def test_cross_origin_requests_are_not_allowed(hope_url: str) -> None:
    """Any origin was reflected with credentials, so any web page an annotator opened could drive HOPE."""
    evil = "http://evil.example"
    simple = requests.get(f"{hope_url}/info/", headers={"Origin": evil}, timeout=TIMEOUT)
    assert "access-control-allow-origin" not in {k.lower() for k in simple.headers}
    assert "access-control-allow-credentials" not in {k.lower() for k in simple.headers}
    preflight = requests.options(f"{hope_url}/datastore/label", timeout=TIMEOUT, headers={
        "Origin": evil, "Access-Control-Request-Method": "PUT"})
    assert preflight.headers.get("access-control-allow-origin") != evil
    assert preflight.status_code >= 400


def test_unknown_host_header_is_refused(hope_url: str) -> None:
    """The Host header was not checked: a DNS-rebinding page could reach the loopback server under its own name."""
    refused = requests.get(f"{hope_url}/info/", headers={"Host": "rebind.evil.example"}, timeout=TIMEOUT)
    assert refused.status_code == 400
    assert requests.get(f"{hope_url}/info/", timeout=TIMEOUT).status_code == 200
