"""A DICOMweb client whose every request has a timeout and whose failures say what went wrong."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any
from urllib.parse import urlsplit

import requests
from dicomweb_client import DICOMwebClient
from urllib3.exceptions import ProtocolError

READ_ONLY_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def dropped_unanswered(error: requests.RequestException) -> bool:
    """Whether ``error`` is a connection the server closed before answering (a pooled keep-alive it had dropped).

    requests raises a ``ConnectionError`` wrapping urllib3's ``ProtocolError`` ("Connection aborted.") for that; a
    refused connection or a timeout is something else and is not resent.
    """
    return isinstance(error, requests.ConnectionError) and bool(error.args) and isinstance(error.args[0], ProtocolError)


class TimeoutSession(requests.Session):
    """A requests session with a default timeout, which resends a read-only request once on a dropped connection.

    A server may close a kept-alive connection just as the next request goes out on it (Orthanc does, under load);
    the request then fails with "Remote end closed connection without response" although the server is up. Reads
    are sent once more on a fresh connection; writes never are, since the server may have acted on them.

    Args:
        timeout: seconds for every request unless the caller gives its own (dicomweb-client sets none).
        read_only_posts: URL path endings whose ``POST`` only reads (Orthanc's ``/tools/find``), so resending is safe.
    """

    def __init__(self, timeout: float, read_only_posts: Collection[str] = ()) -> None:
        super().__init__()
        self.timeout = timeout
        self.read_only_posts = frozenset(read_only_posts)

    def resendable(self, method: str, url: str) -> bool:
        """Whether ``method`` on ``url`` only reads, so that sending it twice changes nothing."""
        method = method.upper()
        path = urlsplit(url).path
        return method in READ_ONLY_METHODS or (method == "POST" and any(path.endswith(p) for p in self.read_only_posts))

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        """Send the request with ``timeout`` unless the caller gave one; resend a read once if it was dropped."""
        kwargs.setdefault("timeout", self.timeout)
        try:
            return super().request(method, url, *args, **kwargs)
        except requests.ConnectionError as error:
            name = method.decode() if isinstance(method, bytes) else method
            target = url.decode() if isinstance(url, bytes) else url
            if not (dropped_unanswered(error) and self.resendable(name, target)):
                raise
        return super().request(method, url, *args, **kwargs)


def make_client(url: str, timeout: float, username: str = "", password: str = "") -> DICOMwebClient:
    """A DICOMweb client for ``url`` (e.g. ``http://127.0.0.1:8042/dicom-web``), with basic auth when given.

    dicomweb-client's own retries (about 30 s of back-off on a refused connection) are off: a store that is down
    is reported at once, and callers that can wait (Orthanc's plugin outbox) do their own retrying. A read on a
    connection the store had dropped is resent once (:class:`TimeoutSession`).
    """
    session = TimeoutSession(timeout)
    if username and password:
        session.auth = (username, password)
    client = DICOMwebClient(url=url.rstrip("/"), session=session)
    client.set_http_retry_params(retry=False)
    return client
