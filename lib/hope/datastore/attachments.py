"""HOPE's results kept with the images: JSON attachments on a series in Orthanc.

Orthanc keeps user-defined attachments beside a resource's DICOM files (``UserContentType`` in
``orthanc/orthanc.json``); they are listed, fetched and deleted with the series, so a result lives with the images
it is about: ``GET /series/{orthanc_id}/attachments/<name>/data`` on Orthanc's REST API. One attachment per task;
a new result replaces the previous one in a single PUT, so nothing half-written is ever visible.
"""

from __future__ import annotations

import json
from typing import Any

from hope.datastore.gateway import OrthancGateway
from hope.errors import NotFoundError, StoreError


def attachment_name(task: str) -> str:
    """The attachment a task's results are kept in (declared in ``orthanc/orthanc.json``)."""
    return f"hope-{task.replace('_', '-')}"


class SeriesAttachments:
    """Reads and writes JSON attachments of series, found by SeriesInstanceUID, through Orthanc's REST API."""

    def __init__(self, gateway: OrthancGateway) -> None:
        self.gateway = gateway
        self.rest_url = gateway.rest_url

    def series_id(self, series_uid: str) -> str:
        """Orthanc's identifier of the series with this SeriesInstanceUID (404 when the store has none)."""
        response = self.gateway.rest("POST", "/tools/lookup", data=series_uid)
        if not response.ok:
            raise StoreError(f"Orthanc could not look up series {series_uid}: {response.status_code} {response.text}")
        for match in response.json():
            if match.get("Type") == "Series":
                return str(match["ID"])
        raise NotFoundError(f"series {series_uid} is not in the DICOM store {self.rest_url}")

    def put(self, series_uid: str, name: str, payload: dict[str, Any]) -> str:
        """Keep ``payload`` as the series' ``name`` attachment (replacing any earlier one); returns the series' ID."""
        series_id = self.series_id(series_uid)
        body = json.dumps(payload, indent=1, default=str).encode()
        response = self.gateway.rest("PUT", f"/series/{series_id}/attachments/{name}", data=body,
                                 headers={"Content-Type": "application/json"})
        if not response.ok:
            raise StoreError(f"Orthanc refused the {name} attachment of series {series_uid}: "
                             f"{response.status_code} {response.text}; is {name} a UserContentType in its "
                             "configuration (orthanc/orthanc.json)?")
        return series_id

    def get(self, series_uid: str, name: str) -> dict[str, Any] | None:
        """The series' ``name`` attachment, or ``None`` when it has none."""
        series_id = self.series_id(series_uid)
        response = self.gateway.rest("GET", f"/series/{series_id}/attachments/{name}/data")
        if response.status_code == 404:
            return None
        if not response.ok:
            raise StoreError(f"Orthanc could not give the {name} attachment of series {series_uid}: "
                             f"{response.status_code} {response.text}")
        return dict(response.json())
