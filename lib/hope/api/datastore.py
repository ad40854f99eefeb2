"""HOPE's answers to MONAI Label's datastore deletes, which would remove only the local cache.

In HOPE the DICOM store is the source of truth: a label is a DICOM SEG in Orthanc and an image is a series there.
MONAI Label's ``DELETE /datastore/label`` and ``DELETE /datastore/image`` answered 200 and deleted only HOPE's
cached copy, leaving the SEG in Orthanc, so a client was told a label was gone when it was not. They are refused,
with what to do instead.
"""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import JSONResponse

REFUSED = (
    "HOPE does not delete from its cache alone: labels are DICOM SEG series and images are series in the DICOM "
    "store (Orthanc), which is the source of truth. To replace a final label, save a new one (PUT "
    "/datastore/label); the newest SEG of a series is its final label. An administrator removes series in Orthanc."
)


def build_router() -> APIRouter:
    """``DELETE /datastore/label`` and ``DELETE /datastore/image``, refused with 405 and the reason."""
    router = APIRouter(tags=["HOPE datastore"])

    @router.delete("/datastore/label", summary="Refused: the SEG lives in the DICOM store")
    def delete_label() -> JSONResponse:
        return JSONResponse({"detail": REFUSED}, status_code=405, headers={"Allow": "GET, HEAD, PUT"})

    @router.delete("/datastore/image", summary="Refused: the series lives in the DICOM store")
    def delete_image() -> JSONResponse:
        return JSONResponse({"detail": REFUSED}, status_code=405, headers={"Allow": "GET, HEAD"})

    return router
