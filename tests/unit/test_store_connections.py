"""A store that drops a kept-alive connection: reads are sent again, writes are not.

The server here is a real HTTP/1.1 server on a loopback port. It answers the first request of each connection and
keeps the connection open, then closes it without answering the next one: what Orthanc does now and then when it
drops an idle keep-alive connection just as HOPE reuses it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hope.datastore.client import make_client
from hope.datastore.gateway import OrthancGateway
from hope.errors import StoreError


class DroppingStore(ThreadingHTTPServer):
    """Counts every request it reads, by method and path."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), OneAnswerPerConnection)
        self.received: Counter[tuple[str, str]] = Counter()
        self.lock = threading.Lock()

    @property
    def url(self) -> str:
        """The server's root URL."""
        return f"http://127.0.0.1:{self.server_address[1]}"


class OneAnswerPerConnection(BaseHTTPRequestHandler):
    """Answers ``[]`` to the first request on a connection; closes it, unanswered, on the second."""

    protocol_version = "HTTP/1.1"
    server: DroppingStore

    def setup(self) -> None:
        super().setup()
        self.answered = 0

    def serve(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        with self.server.lock:
            self.server.received[(self.command, self.path.split("?")[0])] += 1
        if self.answered:
            self.close_connection = True
            return
        self.answered += 1
        body = b"[]"
        self.send_response(200)
        self.send_header("Content-Type", "application/dicom+json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = serve

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the standard library's name
        """Quiet."""


@pytest.fixture
def store() -> Iterator[DroppingStore]:
    server = DroppingStore()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def test_a_read_only_post_is_sent_again_on_a_dropped_connection(store: DroppingStore) -> None:
    gateway = OrthancGateway(f"{store.url}/dicom-web", timeout=5)
    answers = [gateway.rest("POST", "/tools/find", json={"Level": "Series", "Query": {}}) for _ in range(2)]
    assert [a.json() for a in answers] == [[], []]
    assert store.received[("POST", "/tools/find")] == 3


def test_a_get_is_sent_again_on_a_dropped_connection(store: DroppingStore) -> None:
    gateway = OrthancGateway(f"{store.url}/dicom-web", timeout=5)
    assert [gateway.rest("GET", "/hope/outbox").status_code for _ in range(2)] == [200, 200]
    assert store.received[("GET", "/hope/outbox")] == 3


def test_a_write_is_not_sent_again(store: DroppingStore) -> None:
    gateway = OrthancGateway(f"{store.url}/dicom-web", timeout=5)
    gateway.rest("PUT", "/series/abc/attachments/9999", data=b"{}")
    with pytest.raises(StoreError, match="did not answer PUT /series/abc/attachments/9999"):
        gateway.rest("PUT", "/series/abc/attachments/9999", data=b"{}")
    assert store.received[("PUT", "/series/abc/attachments/9999")] == 2


def test_a_dicomweb_search_is_sent_again_on_a_dropped_connection(store: DroppingStore) -> None:
    client = make_client(f"{store.url}/dicom-web", timeout=5)
    assert [client.search_for_series() for _ in range(2)] == [[], []]
    assert store.received[("GET", "/dicom-web/series")] == 3


def test_a_read_is_sent_again_once_and_a_store_gone_is_still_an_error(store: DroppingStore) -> None:
    gateway = OrthancGateway(f"{store.url}/dicom-web", timeout=5)
    gateway.rest("GET", "/system")
    store.shutdown()
    store.server_close()  # the kept-alive connection still reads; a new one is refused
    with pytest.raises(StoreError, match="did not answer GET /system"):
        gateway.rest("GET", "/system")
    assert store.received[("GET", "/system")] == 2
