"""A DICOMweb client whose every request has a timeout and whose failures say what went wrong."""

from __future__ import annotations

from typing import Any

import requests
from dicomweb_client import DICOMwebClient


class TimeoutSession(requests.Session):
    """A requests session that applies a default timeout to every request (dicomweb-client sets none)."""

    def __init__(self, timeout: float) -> None:
        super().__init__()
        self.timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Send the request with ``timeout`` unless the caller gave one."""
        kwargs.setdefault("timeout", self.timeout)
        return super().request(method, url, *args, **kwargs)


def make_client(url: str, timeout: float, username: str = "", password: str = "") -> DICOMwebClient:
    """A DICOMweb client for ``url`` (e.g. ``http://127.0.0.1:8042/dicom-web``), with basic auth when given.

    dicomweb-client's own retries (about 30 s of back-off on a refused connection) are off: a store that is down
    is reported at once, and callers that can wait (Orthanc's plugin outbox) do their own retrying.
    """
    session = TimeoutSession(timeout)
    if username and password:
        session.auth = (username, password)
    client = DICOMwebClient(url=url.rstrip("/"), session=session)
    client.set_http_retry_params(retry=False)
    return client
