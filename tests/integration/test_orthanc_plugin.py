"""HOPE's Orthanc plugin in a real Orthanc: validation, events to HOPE, retries, restarts, REST routes.

HOPE is played by :class:`HopeStub`, a small real HTTP server in the test process that checks the signature of the
events posted to ``/hope/events`` (as HOPE does), records them, and can answer 503 or be stopped. Series arrive the
ways real modalities send them: DICOM C-STORE (pynetdicom), STOW-RS (dicomweb-client) and Orthanc's REST API.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import requests
from pydicom.dataset import Dataset

from hope.demo import store_phantom
from hope.dicom.seg import label_to_seg
from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.errors import UnauthenticatedError
from hope.phantoms import Phantom, generate_neck_ct
from hope.processes.orthanc import OrthancSettings, orthanc_process
from hope.processes.process import ManagedProcess, free_port
from hope.sync.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, EventKey

from .helpers import C_STORE_ACCESS, c_store, poll

pytestmark = pytest.mark.slow

EVENT_TIMEOUT = 30.0  # s; an event normally arrives ~2 s after the last instance (StableAge 1)


class HopeStub:
    """HOPE's ``POST /hope/events`` and ``GET /hope/state`` on a free port; :attr:`unavailable` answers 503.

    Events must be signed with the key in ``<secrets_dir>/events.key`` (the plugin's ``Hope.SecretFile``), or are
    answered 401, as HOPE answers them.
    """

    def __init__(self, secrets_dir: Path) -> None:
        self.secrets_dir = secrets_dir
        self.key = EventKey.load(secrets_dir / "events.key")
        self.port = free_port()
        self.unavailable = False
        self.state: dict[str, dict[str, Any]] = {}
        self.posts: list[tuple[int, dict[str, Any]]] = []  # (HTTP status answered, event)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """The stub's root URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Listen (again) on the stub's port."""
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), self._handler())
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def stop(self) -> None:
        """Stop listening: connections are refused until :meth:`start`."""
        assert self._server is not None
        self._server.shutdown()
        self._server.server_close()

    def accepted(self, event_type: str | None = None) -> list[dict[str, Any]]:
        """Events answered 200, in arrival order."""
        with self._lock:
            return [e for status, e in self.posts if status == 200 and event_type in (None, e["type"])]

    def refused(self) -> list[dict[str, Any]]:
        """Events answered 503."""
        with self._lock:
            return [e for status, e in self.posts if status == 503]

    def event_for(self, event_type: str, series_uid: str) -> dict[str, Any] | None:
        """The accepted event of ``event_type`` about ``series_uid``, if it arrived."""
        return next((e for e in self.accepted(event_type) if e["series_uid"] == series_uid), None)

    def _record(self, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        with self._lock:
            if self.unavailable:
                self.posts.append((503, event))
                return 503, {"detail": "HOPE is starting"}
            duplicate = any(status == 200 and e["id"] == event["id"] for status, e in self.posts)
            self.posts.append((200, event))
            return 200, {"accepted": True, "duplicate": duplicate}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                raw = self.rfile.read(int(self.headers["Content-Length"]))
                try:
                    stub.key.verify(raw, self.headers[TIMESTAMP_HEADER], self.headers[SIGNATURE_HEADER])
                except UnauthenticatedError as exc:
                    self._answer(401, {"detail": exc.reason})
                    return
                self._answer(*stub._record(json.loads(raw)))

            def do_GET(self) -> None:
                self._answer(200, {"series": stub.state})

            def _answer(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                """Keep the test output quiet."""

        return Handler


@dataclass
class PluginOrthanc:
    """A real Orthanc with HOPE's plugin, restartable on the same storage."""

    settings: OrthancSettings
    process: ManagedProcess

    def get(self, path: str) -> Any:
        """``GET`` on Orthanc's REST API (the plugin's routes included), parsed."""
        response = requests.get(f"{self.settings.url}{path}", auth=self.settings.auth, timeout=10)
        response.raise_for_status()
        return response.json()

    def restart(self) -> None:
        """Stop Orthanc and start it again with the same configuration and storage."""
        self.process.stop()
        self.process = orthanc_process(self.settings)
        self.process.start(timeout=60)


@dataclass(frozen=True)
class Series:
    """A phantom CT series as written: the phantom, its datasets and UIDs."""

    phantom: Phantom
    datasets: list[Dataset]

    @property
    def uid(self) -> str:
        """SeriesInstanceUID."""
        return str(self.datasets[0].SeriesInstanceUID)


@pytest.fixture(scope="module")
def hope(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HopeStub]:
    """The HOPE stand-in, listening."""
    stub = HopeStub(tmp_path_factory.mktemp("secrets"))
    stub.start()
    yield stub
    stub.stop()


@pytest.fixture(scope="module")
def orthanc(tmp_path_factory: pytest.TempPathFactory, hope: HopeStub) -> Iterator[PluginOrthanc]:
    """Orthanc with HOPE's plugin posting to the stub; StableAge 1 s, retries at most 0.5 s apart."""
    settings = OrthancSettings(
        data_dir=tmp_path_factory.mktemp("orthanc-plugin"),
        http_port=free_port(),
        dicom_port=free_port(),
        stable_age=1,
        hope_url=hope.url,
        hope_retry_seconds=0.5,
        access=C_STORE_ACCESS,
        secrets_dir=hope.secrets_dir,
    )
    server = PluginOrthanc(settings, orthanc_process(settings))
    server.process.start(timeout=60)
    yield server
    server.process.stop()


def _series(seed: int, labels: dict[str, int]) -> Series:
    phantom = generate_neck_ct(seed, labels)
    identity = new_identity(f"PLUGIN-{seed}", series_description=f"plugin test {seed}")
    return Series(phantom, volume_to_datasets(phantom.image, phantom.spacing, identity))


def _stow(settings: OrthancSettings, datasets: list[Dataset]) -> None:
    settings.dicomweb_client().store_instances(datasets)


def _wait_for(hope: HopeStub, event_type: str, series_uid: str) -> dict[str, Any]:
    return poll(lambda: hope.event_for(event_type, series_uid), EVENT_TIMEOUT, f"{event_type} of {series_uid}", 0.1)


@pytest.fixture(scope="module")
def c_stored(orthanc: PluginOrthanc, spine_labels: dict[str, int]) -> Series:
    """A phantom CT series sent by C-STORE."""
    series = _series(101, spine_labels)
    c_store(orthanc.settings.dicom_port, series.datasets)
    return series


@pytest.fixture(scope="module")
def stowed(orthanc: PluginOrthanc, spine_labels: dict[str, int]) -> Series:
    """A phantom CT series sent by STOW-RS."""
    series = _series(102, spine_labels)
    _stow(orthanc.settings, series.datasets)
    return series


def test_stored_series_are_validated_and_reported(
    orthanc: PluginOrthanc, hope: HopeStub, c_stored: Series, stowed: Series
) -> None:
    """C-STORE and STOW-RS series each give one valid series_stable event and are listed by /hope/series."""
    for series in (c_stored, stowed):
        event = _wait_for(hope, "series_stable", series.uid)
        orthanc_series = orthanc.get(f"/series/{event['orthanc_id']}")
        assert event["id"] == f"series_stable:{series.uid}:{orthanc_series['LastUpdate']}"
        assert event | {"id": "", "orthanc_id": ""} == {
            "id": "",
            "type": "series_stable",
            "series_uid": series.uid,
            "study_uid": series.datasets[0].StudyInstanceUID,
            "modality": "CT",
            "orthanc_id": "",
            "instances": len(series.datasets),
            "valid": True,
            "reasons": [],
        }
        metadata = orthanc.get(f"/series/{event['orthanc_id']}/metadata/HopeValidation")
        assert metadata == {"valid": True, "reasons": []}

    listed = {s["series_uid"]: s for s in orthanc.get("/hope/series")}
    for series in (c_stored, stowed):
        view = listed[series.uid]
        assert view["validation"] == {"valid": True, "reasons": []}
        assert (view["state"], view["hope_reachable"], view["modality"]) == ("unlabelled", True, "CT")


def test_invalid_series_are_flagged_with_the_reason(
    orthanc: PluginOrthanc, hope: HopeStub, spine_labels: dict[str, int]
) -> None:
    """A 2-slice CT and a CT with two slices at one position are reported invalid, with why; nothing is deleted."""
    thin = _series(103, spine_labels)
    thin_datasets = thin.datasets[:2]
    _stow(orthanc.settings, thin_datasets)
    stacked = _series(104, spine_labels).datasets[:4]
    stacked[3].ImagePositionPatient = stacked[2].ImagePositionPatient
    c_store(orthanc.settings.dicom_port, stacked)

    expected = {
        thin.uid: ["only 2 slice(s); a CT volume needs at least 3 slices"],
        str(stacked[0].SeriesInstanceUID): ["duplicate ImagePositionPatient 0\\0\\5 at instance 3 and instance 4"],
    }
    for uid, reasons in expected.items():
        event = _wait_for(hope, "series_stable", uid)
        assert (event["valid"], event["reasons"]) == (False, reasons)
        view = orthanc.get(f"/hope/series/{uid}")
        assert view["validation"] == {"valid": False, "reasons": reasons}
        assert len(orthanc.get(f"/series/{event['orthanc_id']}")["Instances"]) == event["instances"]

    missing = requests.get(f"{orthanc.settings.url}/hope/series/1.2.3.4", auth=orthanc.settings.auth, timeout=10)
    assert missing.status_code == 404
    assert "1.2.3.4" in missing.json()["error"]


def test_seg_is_reported_and_makes_its_series_final(
    orthanc: PluginOrthanc, hope: HopeStub, spine_labels: dict[str, int]
) -> None:
    """A stored SEG gives seg_stored with the referenced series, whose state becomes final; HOPE's state shows.

    Its own two series: ``c_stored`` and ``stowed`` stay unlabelled for the other tests.
    """
    labelled, suggested = _series(108, spine_labels), _series(109, spine_labels)
    for series in (labelled, suggested):
        _stow(orthanc.settings, series.datasets)
        _wait_for(hope, "series_stable", series.uid)
    seg = label_to_seg(labelled.phantom.label, labelled.datasets, spine_labels)
    _stow(orthanc.settings, [seg])

    event = _wait_for(hope, "seg_stored", seg.SeriesInstanceUID)
    assert event | {"orthanc_id": ""} == {
        "id": f"seg_stored:{seg.SeriesInstanceUID}",
        "type": "seg_stored",
        "series_uid": seg.SeriesInstanceUID,
        "study_uid": labelled.datasets[0].StudyInstanceUID,
        "modality": "SEG",
        "orthanc_id": "",
        "referenced_series_uid": labelled.uid,
        "segment_labels": [name for name, value in spine_labels.items() if (labelled.phantom.label == value).any()],
    }
    assert orthanc.get(f"/hope/series/{labelled.uid}")["state"] == "final"

    hope.state[suggested.uid] = {"suggestion_model_version": "spine_ct:7", "final": False}
    view = orthanc.get(f"/hope/series/{suggested.uid}")
    assert (view["state"], view["suggestion_model_version"]) == ("suggested", "spine_ct:7")
    assert seg.SeriesInstanceUID not in {s["series_uid"] for s in orthanc.get("/hope/series")}


def _troubled(orthanc: PluginOrthanc, series_uid: str, error: str) -> bool:
    """Whether the outbox holds a pending event about ``series_uid`` whose last delivery failed with ``error``."""
    return any(
        t["id"].startswith(f"series_stable:{series_uid}:") and error in (t["last_error"] or "")
        for t in orthanc.get("/hope/outbox")["troubled"]
    )


def test_events_wait_while_hope_is_down(orthanc: PluginOrthanc, hope: HopeStub, spine_labels: dict[str, int]) -> None:
    """HOPE answering 503, then not listening at all: the event stays pending and arrives once HOPE is back."""
    hope.unavailable = True
    stored = store_phantom(orthanc.settings.url, generate_neck_ct(105, spine_labels), patient_id="PLUGIN-105",
                           auth=orthanc.settings.auth)
    poll(lambda: _troubled(orthanc, stored.series_uid, "HTTP 503"), EVENT_TIMEOUT, "a refused delivery", 0.1)
    hope.stop()
    poll(lambda: _troubled(orthanc, stored.series_uid, "refused"), EVENT_TIMEOUT, "a refused connection", 0.1)
    assert orthanc.get("/hope/outbox")["pending"] >= 1
    offline = orthanc.get(f"/hope/series/{stored.series_uid}")
    assert (offline["hope_reachable"], offline["state"]) == (False, "unlabelled")

    hope.unavailable = False
    hope.start()
    event = _wait_for(hope, "series_stable", stored.series_uid)
    assert event["valid"] is True
    poll(lambda: orthanc.get("/hope/outbox")["pending"] == 0, EVENT_TIMEOUT, "an empty outbox", 0.1)


def test_pending_events_survive_a_restart_and_nothing_is_sent_twice(
    orthanc: PluginOrthanc, hope: HopeStub, spine_labels: dict[str, int]
) -> None:
    """An event still pending when Orthanc stops is delivered after the restart; delivered ones are not resent."""
    delivered = store_phantom(orthanc.settings.url, generate_neck_ct(106, spine_labels), patient_id="PLUGIN-106",
                              auth=orthanc.settings.auth)
    _wait_for(hope, "series_stable", delivered.series_uid)
    hope.unavailable = True
    pending = store_phantom(orthanc.settings.url, generate_neck_ct(107, spine_labels), patient_id="PLUGIN-107",
                            auth=orthanc.settings.auth)
    poll(lambda: _troubled(orthanc, pending.series_uid, "HTTP 503"), EVENT_TIMEOUT, "a refused delivery", 0.1)
    delivered_before = len(hope.accepted())

    orthanc.restart()
    hope.unavailable = False
    _wait_for(hope, "series_stable", pending.series_uid)
    poll(lambda: orthanc.get("/hope/outbox")["pending"] == 0, EVENT_TIMEOUT, "an empty outbox", 0.1)

    after_restart = hope.accepted()[delivered_before:]
    assert [e["series_uid"] for e in after_restart] == [pending.series_uid]
    assert [n for n in Counter(e["id"] for e in hope.accepted()).values() if n > 1] == []
    assert {delivered.series_uid, pending.series_uid} <= {s["series_uid"] for s in orthanc.get("/hope/series")}
