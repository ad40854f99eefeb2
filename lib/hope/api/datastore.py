"""HOPE's datastore listing off the event loop, and its answers to MONAI Label's datastore deletes.

MONAI Label 0.8.5 lists the datastore (``GET /datastore/``) from an ``async def`` route: a listing that asks the
DICOM store held the event loop, and every other request of the server waited. HOPE's route is a plain ``def`` (run
in a worker thread) that answers exactly what MONAI Label's does (``output``: ``stats``, the default, ``all`` or
``train``), computed at each request by the same function.

In HOPE the DICOM store is the source of truth: a label is a DICOM SEG in Orthanc and an image is a series there.
MONAI Label's ``DELETE /datastore/label`` and ``DELETE /datastore/image`` answered 200 and deleted only HOPE's
cached copy, leaving the SEG in Orthanc, so a client was told a label was gone when it was not. They are refused,
with what to do instead.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse
from monailabel.endpoints.datastore import ResultType, datastore

REFUSED = (
    "HOPE does not delete from its cache alone: labels are DICOM SEG series and images are series in the DICOM "
    "store (Orthanc), which is the source of truth. To replace a final label, save a new one (PUT "
    "/datastore/label); the newest SEG of a series is its final label. An administrator removes series in Orthanc."
)


def build_router(label_states: Callable[[list[str]], Mapping[str, str]] | None = None) -> APIRouter:
    """``GET /datastore/``, answered as MONAI Label answers it, each series of ``output=all`` with its label
    ``state`` from ``label_states`` (unlabelled, suggested, submitted, approved, rejected, final);
    ``DELETE /datastore/label`` and ``DELETE /datastore/image``, refused with 405 and the reason."""
    router = APIRouter(tags=["HOPE datastore"])

    @router.get("/datastore/", summary="The images and labels of the datastore (output: stats, all or train)")
    def listing(output: ResultType | None = None) -> Any:
        answer = datastore(output)
        if output == ResultType.all and label_states is not None:
            objects = answer.get("objects", {})
            for uid, state in label_states(list(objects)).items():
                objects[uid]["state"] = state
        return answer

    @router.delete("/datastore/label", summary="Refused: the SEG lives in the DICOM store")
    def delete_label() -> JSONResponse:
        return JSONResponse({"detail": REFUSED}, status_code=405, headers={"Allow": "GET, HEAD, PUT"})

    @router.delete("/datastore/image", summary="Refused: the series lives in the DICOM store")
    def delete_image() -> JSONResponse:
        return JSONResponse({"detail": REFUSED}, status_code=405, headers={"Allow": "GET, HEAD"})

    return router
