"""HOPE's OHIF configuration: ``GET /ohif/app-config.js`` answered from ``configs/ohif/app-config.js``.

MONAI Label 0.8.5 serves a bundled OHIF v3 build at ``/ohif/`` with an ``app-config.js`` whose MONAI Label mode
cannot edit or save (https://github.com/Project-MONAI/MONAILabel/issues/1805). HOPE keeps the build and serves its
own configuration instead (see the comments in the file): the MONAI Label mode gains OHIF's Segmentation panel
(Brush, Eraser, Shapes), whose "Export DICOM SEG" sends the labelmap to ``PUT /datastore/label`` (tag final); HOPE
writes the DICOM SEG and stores it in Orthanc, where it is the series' final label. OHIF's own SEG writer is not
used: in OHIF 3.10 it writes each slice's mask onto the mirrored slice.

The router must be mounted in front of MONAI Label's ``/ohif/{path}`` route, which would otherwise answer.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Depends
from fastapi.responses import Response
from monailabel.config import settings
from monailabel.endpoints.user.auth import RBAC, User

from hope.config import DEFAULT_CONFIG_DIR, config_dir
from hope.errors import NotFoundError

APP_CONFIG = Path("ohif") / "app-config.js"
#: The role MONAI Label's own ``/ohif`` route asks for (every request is an admin while auth is off).
_USER = Depends(RBAC(settings.MONAI_LABEL_AUTH_ROLE_USER))


def app_config_path() -> Path:
    """``ohif/app-config.js`` of the configuration folder, else the repository's default one."""
    for folder in (config_dir(), DEFAULT_CONFIG_DIR):
        path = folder / APP_CONFIG
        if path.is_file():
            return path
    raise NotFoundError(f"no OHIF configuration: {config_dir() / APP_CONFIG} does not exist")


def ohif_router() -> APIRouter:
    """``GET /ohif/app-config.js``: HOPE's OHIF configuration, read on every request (edits apply at reload)."""
    router = APIRouter(tags=["HOPE OHIF"])

    @router.get("/ohif/app-config.js", include_in_schema=False)
    def app_config(user: User = _USER) -> Response:
        return Response(
            app_config_path().read_bytes(),
            media_type="application/javascript",
            headers={"Cache-Control": "no-cache"},
        )

    return router
