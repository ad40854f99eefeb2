"""Does the DICOM store have a study? A QIDO-RS lookup, for :class:`~hope.cases.repository.CaseRepository`."""

from __future__ import annotations

from collections.abc import Callable

import requests

from hope.datastore.gateway import OrthancGateway

STUDY_INSTANCE_UID = "0020000D"


class StudyLookupError(RuntimeError):
    """The DICOM store could not say whether a study exists (unreachable, timed out, or answered an error)."""


def orthanc_study_exists(gateway: OrthancGateway) -> Callable[[str], bool]:
    """A ``study_exists(study_uid) -> bool`` that asks the DICOMweb store behind ``gateway`` by QIDO-RS.

    Each call is one ``GET {dicomweb_url}/studies?StudyInstanceUID=...`` with the gateway's timeout and no retries
    (dicomweb-client's default retries a refused connection for 30 s); a failure raises :class:`StudyLookupError`
    instead of answering ``False``.
    """

    def study_exists(study_uid: str) -> bool:
        try:
            matches = gateway.dicomweb().search_for_studies(search_filters={"StudyInstanceUID": study_uid})
        except requests.RequestException as exc:
            raise StudyLookupError(
                f"could not ask the DICOM store {gateway.dicomweb_url} whether study {study_uid} exists: {exc}"
            ) from exc
        return any(study_uid in m.get(STUDY_INSTANCE_UID, {}).get("Value", []) for m in matches)

    return study_exists
