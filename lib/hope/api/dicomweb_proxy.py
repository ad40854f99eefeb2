"""HOPE's DICOMweb proxy for the browser viewer: QIDO-RS and WADO-RS reads of Orthanc, and nothing else.

It replaces MONAI Label's proxy, which forwarded any path (``/proxy/dicom/%2e%2e/tools/shutdown`` reached all of
Orthanc's REST API), read whole answers into memory, and had no timeout. Here a path is decoded and checked
before it is forwarded: it must be a DICOMweb resource path (``studies``, ``series`` or ``instances`` first, then
UIDs and resource names), with no ``..`` and no other characters. Answers are streamed, with the gateway's timeout
and credentials. Writes (STOW-RS) do not go through the proxy: labels are saved through ``PUT /datastore/label``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import requests
from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse

from hope.datastore.gateway import OrthancGateway
from hope.errors import InvalidInputError, StoreError

RESOURCES = ("studies", "series", "instances")
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9.,_-]{0,127}$")
_PASSED_HEADERS = ("content-type", "content-length", "content-encoding", "etag", "last-modified")
_CHUNK = 1 << 16


def dicomweb_path(path: str) -> str:
    """``path`` when it is a plain DICOMweb resource path; an :class:`InvalidInputError` saying why otherwise."""
    segments = path.split("/")
    if not segments or segments[0] not in RESOURCES:
        raise InvalidInputError(f"the DICOMweb proxy forwards only paths starting with {', '.join(RESOURCES)}; "
                                f"got {path!r}")
    for segment in segments:
        if segment in {"", ".", ".."} or ".." in segment or not _SEGMENT.match(segment):
            raise InvalidInputError(f"the DICOMweb proxy refuses the path segment {segment!r} of {path!r}: only UIDs "
                                    "and DICOMweb resource names (letters, digits, '.', ',', '_', '-') are forwarded")
    return path


def build_router(gateway: OrthancGateway) -> APIRouter:
    """``GET /proxy/dicom/qido/...`` and ``GET /proxy/dicom/wado/...``, forwarded to ``gateway``'s DICOMweb root."""
    router = APIRouter(tags=["HOPE DICOMweb proxy"])

    def forward(request: Request, path: str) -> StreamingResponse:
        checked = dicomweb_path(path)
        query = request.url.query  # as the client encoded it (re-encoding turns QIDO's * wildcards into %2A)
        url = f"{gateway.dicomweb_url}/{checked}" + (f"?{query}" if query else "")
        headers = {"Accept": request.headers.get("accept", "application/dicom+json")}
        try:
            answer = requests.get(url, headers=headers, stream=True,
                                  timeout=gateway.timeout, auth=gateway.auth)
        except requests.RequestException as exc:
            raise StoreError(f"the DICOM store did not answer {checked}: {exc}") from exc

        def body() -> Iterator[bytes]:
            with answer:
                yield from answer.raw.stream(_CHUNK, decode_content=False)

        passed = {k: v for k, v in answer.headers.items() if k.lower() in _PASSED_HEADERS}
        return StreamingResponse(body(), status_code=answer.status_code, headers=passed)

    @router.get("/proxy/dicom/qido/{path:path}", include_in_schema=False)
    def qido(request: Request, path: str) -> StreamingResponse:
        return forward(request, path)

    @router.get("/proxy/dicom/wado/{path:path}", include_in_schema=False)
    def wado(request: Request, path: str) -> StreamingResponse:
        return forward(request, path)

    return router
