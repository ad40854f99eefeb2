"""Inference off the event loop, bounded: a real HOPE server with one inference worker and one queue place.

MONAI Label 0.8.5 ran ``/infer``, ``/info/`` and ``/datastore/`` inside ``async def`` routes, so one inference froze
every other request of the server, and inferences queued without bound. HOPE runs ``http.infer_workers`` at once,
lets ``http.infer_queue`` more wait, answers the rest 503 with ``Retry-After``, and keeps ``/info/`` and the
listing answering while inferences run.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from hope.demo import store_phantom
from hope.phantoms import generate_neck_ct
from hope.processes.orthanc import OrthancSettings
from tests.conftest import running_hope

from .helpers import poll

pytestmark = pytest.mark.slow

RETRY_AFTER = 7
HTTP = {"infer_workers": 1, "infer_queue": 1, "retry_after_seconds": RETRY_AFTER}
#: What HOPE logs when both places of the pool (one worker, one queue place) hold an inference.
POOL_FULL = "inference admitted: 2 of 2 places taken"
#: Far above a responsive answer (tens of ms), far below an inference the event loop would wait for.
RESPONSIVE_S = 1.0


@pytest.fixture(scope="module")
def busy_hope(orthanc: OrthancSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A HOPE server with one inference worker and one queue place; its URL and log file."""
    with running_hope(orthanc, tmp_path_factory.mktemp("busy-hope"), http=HTTP) as (url, process):
        yield url, process.log_path


@pytest.fixture(scope="module")
def fresh_series(orthanc: OrthancSettings, spine_labels: dict[str, int]) -> list[str]:
    """Six phantom series no server has a suggestion for, so that every request really infers."""
    return [
        store_phantom(orthanc.url, generate_neck_ct(seed, spine_labels), patient_id=f"TEST-BUSY-{seed}",
                      auth=orthanc.auth).series_uid
        for seed in range(7101, 7107)
    ]


class Inferences:
    """``POST /infer/spine_ct`` on each series, each from its own thread; the responses, by series."""

    def __init__(self, url: str, series: list[str], barrier: threading.Barrier | None = None) -> None:
        self.responses: dict[str, requests.Response] = {}
        self.threads = [threading.Thread(target=self._infer, args=(url, uid, barrier)) for uid in series]
        for thread in self.threads:
            thread.start()

    def _infer(self, url: str, uid: str, barrier: threading.Barrier | None) -> None:
        if barrier is not None:
            barrier.wait(timeout=60)
        self.responses[uid] = requests.post(f"{url}/infer/spine_ct", params={"image": uid, "output": "json"},
                                            timeout=600)

    def running(self) -> bool:
        """Whether any request is still waiting for its answer."""
        return any(thread.is_alive() for thread in self.threads)

    def join(self) -> dict[str, requests.Response]:
        """Every response, once all have come."""
        for thread in self.threads:
            thread.join(timeout=600)
        assert not self.running(), "an inference request never answered"
        return self.responses


def _timed_get(url: str, params: dict[str, str] | None = None) -> float:
    started = time.monotonic()
    response = requests.get(url, params=params, timeout=60)
    elapsed = time.monotonic() - started
    assert response.status_code == 200, response.text
    return elapsed


def test_requests_beyond_the_queue_are_refused_with_retry_after(busy_hope: tuple[str, Path],
                                                               fresh_series: list[str]) -> None:
    url, _ = busy_hope
    inferences = Inferences(url, fresh_series[:4], threading.Barrier(4))
    statuses = {uid: response.status_code for uid, response in inferences.join().items()}
    refused = [inferences.responses[uid] for uid, status in statuses.items() if status == 503]
    assert refused and set(statuses.values()) == {200, 503}, statuses
    assert len(refused) <= 2, "one worker and one queue place admit two of four requests at once"
    for response in refused:
        assert response.headers["Retry-After"] == str(RETRY_AFTER)
        assert "http.infer_queue" in response.json()["detail"], response.text
    for uid, status in statuses.items():
        if status == 200:
            assert not inferences.responses[uid].json().get("precomputed"), "it must really infer"


def test_info_and_listing_answer_while_inferences_run(busy_hope: tuple[str, Path], fresh_series: list[str]) -> None:
    url, log = busy_hope
    seen = log.stat().st_size
    inferences = Inferences(url, fresh_series[4:])

    def pool_full() -> bool:
        with log.open("rb") as text:
            text.seek(seen)
            return POOL_FULL in text.read().decode(errors="replace")

    poll(pool_full, timeout=120, what="both inferences to be admitted", interval=0.1)
    info = [_timed_get(f"{url}/info/") for _ in range(20)]
    listing = [_timed_get(f"{url}/datastore/", {"output": "stats"}) for _ in range(20)]
    assert inferences.running(), "the inferences ended before the measurement did: it measured an idle server"
    print(f"under load: /info/ max {max(info):.3f} s, /datastore/ max {max(listing):.3f} s")
    assert max(info) < RESPONSIVE_S, info
    assert max(listing) < RESPONSIVE_S, listing
    assert {response.status_code for response in inferences.join().values()} == {200}
