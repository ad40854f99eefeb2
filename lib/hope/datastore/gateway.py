"""The one way HOPE reaches Orthanc: a DICOMweb client per thread, and a REST session per thread.

Built once by the composition root (:mod:`hope.server`) and handed to the datastore, the case lookup and the
result attachments. A dicomweb-client client and a requests session are not safe to share across threads, so each
thread gets its own, made on first use.
"""

from __future__ import annotations

import threading
from typing import Any

import requests
from dicomweb_client import DICOMwebClient

from hope.datastore.client import TimeoutSession, make_client
from hope.errors import StoreError

DICOMWEB_SUFFIX = "/dicom-web"
READ_ONLY_POSTS = ("/tools/find", "/tools/lookup")  # Orthanc's REST calls that are POSTs but change nothing


def orthanc_rest_url(dicomweb_url: str) -> str:
    """Orthanc's REST root from its DICOMweb root (``http://host:8042/dicom-web`` -> ``http://host:8042``)."""
    url = dicomweb_url.rstrip("/")
    return url[: -len(DICOMWEB_SUFFIX)] if url.endswith(DICOMWEB_SUFFIX) else url


class OrthancGateway:
    """Orthanc's DICOMweb and REST APIs, with one timeout and one set of credentials.

    Args:
        dicomweb_url: the DICOMweb root, e.g. ``http://127.0.0.1:8042/dicom-web`` (the REST root is derived).
        timeout: seconds for every request.
        username: HTTP basic-auth user, when Orthanc asks for one.
        password: its password.
    """

    def __init__(self, dicomweb_url: str, timeout: float, username: str = "", password: str = "") -> None:
        self.dicomweb_url = dicomweb_url.rstrip("/")
        self.rest_url = orthanc_rest_url(dicomweb_url)
        self.timeout = timeout
        self.auth = (username, password) if username and password else None
        self._local = threading.local()

    def new_dicomweb_client(self) -> DICOMwebClient:
        """A new DICOMweb client (for a caller that keeps one per thread itself)."""
        return make_client(self.dicomweb_url, self.timeout, *(self.auth or ("", "")))

    def dicomweb(self) -> DICOMwebClient:
        """This thread's DICOMweb client."""
        client = getattr(self._local, "dicomweb", None)
        if client is None:
            client = self._local.dicomweb = self.new_dicomweb_client()
        return client

    def rest(self, method: str, path: str, **kwargs: Any) -> requests.Response:
        """One request to Orthanc's REST API (``path`` starts with ``/``); a :class:`StoreError` if none answers.

        The answer is returned whatever its status: callers decide what a 404 means.
        """
        session = getattr(self._local, "rest", None)
        if session is None:
            session = self._local.rest = TimeoutSession(self.timeout, READ_ONLY_POSTS)
            session.auth = self.auth
        try:
            return session.request(method, f"{self.rest_url}{path}", **kwargs)
        except requests.RequestException as exc:
            raise StoreError(f"Orthanc at {self.rest_url} did not answer {method} {path}: {exc}") from exc
