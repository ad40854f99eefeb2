"""The Orthanc plugin's logic without Orthanc: series validation, events, the durable outbox and worklist."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from hope.errors import UnauthenticatedError
from hope.orthanc_plugin.catalog import Catalog, SeriesRecord
from hope.orthanc_plugin.config import PluginConfig
from hope.orthanc_plugin.events import build_event
from hope.orthanc_plugin.hope_client import HopeClient, HopeRejected, HopeUnavailable
from hope.orthanc_plugin.outbox import DELIVERED, PENDING, REJECTED, Outbox
from hope.orthanc_plugin.service import PluginService, backoff
from hope.orthanc_plugin.validation import validate_series
from hope.orthanc_plugin.views import series_view
from hope.orthanc_plugin.worklist import Worklist
from hope.processes.process import free_port
from hope.sync.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, EventKey

KEY = EventKey(b"k" * 32)


def _slice(k: int, **overrides: Any) -> dict[str, Any]:
    """Simplified tags of slice ``k`` of an axial CT, as Orthanc's ``instances-tags?simplify`` gives them."""
    tags = {
        "InstanceNumber": str(k + 1),
        "Rows": "64",
        "Columns": "64",
        "PixelSpacing": "0.8\\0.8",
        "ImageOrientationPatient": "1\\0\\0\\0\\1\\0",
        "ImagePositionPatient": f"-100\\-100\\{2.5 * k}",
        "PixelData": None,
    }
    tags.update(overrides)
    return {k: v for k, v in tags.items() if v != "<absent>"}


def _ct(n: int) -> list[dict[str, Any]]:
    return [_slice(k) for k in range(n)]


# --- validation ----------------------------------------------------------------------------------------------


def test_good_ct_is_valid() -> None:
    result = validate_series("CT", _ct(40))
    assert result.valid
    assert result.to_json() == {"valid": True, "reasons": []}


def test_two_slice_ct_is_too_thin() -> None:
    result = validate_series("CT", _ct(2))
    assert not result.valid
    assert result.reasons == ("only 2 slice(s); a CT volume needs at least 3 slices",)


def test_mixed_orientation_is_flagged() -> None:
    instances = _ct(10)
    instances[6] = _slice(6, ImageOrientationPatient="1\\0\\0\\0\\0\\-1")
    (reason,) = validate_series("MR", instances).reasons
    assert (
        reason
        == "inconsistent ImageOrientationPatient: 1\\0\\0\\0\\1\\0 in instance 1 but 1\\0\\0\\0\\0\\-1 in instance 7"
    )


def test_orientation_within_tolerance_is_consistent() -> None:
    instances = _ct(5)
    instances[3] = _slice(3, ImageOrientationPatient="1\\0\\0\\0\\0.99999\\0")
    assert validate_series("CT", instances).valid


def test_duplicate_positions_are_flagged() -> None:
    instances = _ct(5)
    instances[4] = _slice(4, ImagePositionPatient="-100.0\\-100.0\\2.5")
    (reason,) = validate_series("CT", instances).reasons
    assert reason == "duplicate ImagePositionPatient -100\\-100\\2.5 at instance 2 and instance 5"


def test_inconsistent_size_and_spacing_are_flagged() -> None:
    instances = _ct(4)
    instances[1] = _slice(1, Rows="32")
    instances[2] = _slice(2, PixelSpacing="0.5\\0.5")
    reasons = validate_series("CT", instances).reasons
    assert reasons == (
        "inconsistent Rows/Columns: 64x64 in instance 1 but 32x64 in instance 2",
        "inconsistent PixelSpacing: 0.8\\0.8 in instance 1 but 0.5\\0.5 in instance 3",
    )


def test_missing_pixel_data_is_flagged() -> None:
    instances = _ct(4)
    instances[0] = _slice(0, PixelData="<absent>")
    (reason,) = validate_series("CT", instances).reasons
    assert reason == "1 of 4 instances have no pixel data (instance 1)"


def test_missing_geometry_is_flagged_for_a_volume() -> None:
    instances = _ct(3)
    instances[2] = _slice(2, ImagePositionPatient="<absent>", InstanceNumber="<absent>")
    (reason,) = validate_series("CT", instances).reasons
    assert reason == "1 of 3 instances lack a valid ImagePositionPatient (instance #3 (no InstanceNumber))"


def test_single_dx_image_is_valid() -> None:
    dx = {"InstanceNumber": "1", "Rows": "2048", "Columns": "1660", "PixelData": None}
    assert validate_series("DX", [dx]).valid
    assert validate_series("cr", [dx, {**dx, "Rows": "1024"}]).valid  # independent 2-D images


def test_dx_without_pixel_data_is_flagged() -> None:
    assert validate_series("DX", [{"InstanceNumber": "1"}]).reasons == (
        "1 of 1 instances have no pixel data (instance 1)",
    )


def test_empty_series_and_non_image_modality() -> None:
    assert validate_series("CT", []).reasons == ("series has no instances",)
    with pytest.raises(ValueError, match="not an image modality"):
        validate_series("SEG", _ct(3))


# --- events ------------------------------------------------------------------------------------------------


def _orthanc(modality: str, instances: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Canned answers of Orthanc's REST API for one series ``s1`` in study ``st1``."""
    return {
        "/series/s1": {
            "ID": "s1",
            "ParentStudy": "st1",
            "LastUpdate": "20260101T120000",
            "Instances": list(instances),
            "MainDicomTags": {"Modality": modality, "SeriesInstanceUID": "1.2.3"},
        },
        "/studies/st1": {"MainDicomTags": {"StudyInstanceUID": "1.2"}},
        "/series/s1/instances-tags?simplify": instances,
        **{f"/instances/{i}/tags?simplify": tags for i, tags in instances.items()},
    }


def test_stable_ct_gives_a_series_stable_event() -> None:
    answers = _orthanc("CT", {f"i{k}": tags for k, tags in enumerate(_ct(2))})
    assert build_event("s1", answers.__getitem__) == {
        "id": "series_stable:1.2.3:20260101T120000",
        "type": "series_stable",
        "series_uid": "1.2.3",
        "study_uid": "1.2",
        "modality": "CT",
        "orthanc_id": "s1",
        "instances": 2,
        "valid": False,
        "reasons": ["only 2 slice(s); a CT volume needs at least 3 slices"],
    }


def test_seg_gives_a_seg_stored_event_with_its_reference() -> None:
    seg = {"ReferencedSeriesSequence": [{"SeriesInstanceUID": "9.8.7", "ReferencedInstanceSequence": []}],
           "SegmentSequence": [{"SegmentNumber": 1, "SegmentLabel": "C2"},
                               {"SegmentNumber": 2, "SegmentLabel": "tumor"}]}
    event = build_event("s1", _orthanc("SEG", {"i0": seg}).__getitem__)
    assert event == {
        "id": "seg_stored:1.2.3",
        "type": "seg_stored",
        "series_uid": "1.2.3",
        "study_uid": "1.2",
        "modality": "SEG",
        "orthanc_id": "s1",
        "referenced_series_uid": "9.8.7",
        "segment_labels": ["C2", "tumor"],
    }


def test_other_modalities_give_no_event() -> None:
    assert build_event("s1", _orthanc("SR", {"i0": {}}).__getitem__) is None


# --- outbox ------------------------------------------------------------------------------------------------


def _event(event_id: str) -> dict[str, Any]:
    return {"id": event_id, "type": "series_stable", "series_uid": event_id.split(":")[1]}


def test_same_event_id_is_stored_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "state.sqlite")
    assert outbox.add(_event("series_stable:1.2:a"))
    assert not outbox.add({**_event("series_stable:1.2:a"), "valid": False})
    pending = outbox.pending()
    assert [e.id for e in pending] == ["series_stable:1.2:a"]
    assert "valid" not in pending[0].body  # the first copy is kept
    assert outbox.counts() == {PENDING: 1, DELIVERED: 0, REJECTED: 0}


def test_pending_failed_delivered_and_rejected(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "state.sqlite")
    for uid in ("1", "2", "3"):
        outbox.add(_event(f"series_stable:{uid}:x"))
    outbox.mark_failed("series_stable:1:x", "connection refused")
    outbox.mark_failed("series_stable:1:x", "HTTP 503")
    first = outbox.pending()[0]
    assert (first.id, first.attempts, first.last_error) == ("series_stable:1:x", 2, "HTTP 503")
    outbox.mark_delivered("series_stable:1:x")
    outbox.mark_rejected("series_stable:2:x", "HTTP 422: no id")
    assert [e.id for e in outbox.pending()] == ["series_stable:3:x"]
    assert outbox.status("series_stable:1:x") == DELIVERED
    assert outbox.status("series_stable:2:x") == REJECTED
    assert outbox.status("nope") is None
    assert outbox.counts() == {PENDING: 1, DELIVERED: 1, REJECTED: 1}
    assert [(e.id, e.last_error) for e in outbox.troubled()] == [("series_stable:2:x", "HTTP 422: no id")]
    outbox.mark_failed("series_stable:1:x", "late failure")  # a delivered event stays delivered
    assert not outbox.add(_event("series_stable:1:x"))  # and is never queued again
    assert outbox.status("series_stable:1:x") == DELIVERED


def test_only_a_rejected_event_is_retried(tmp_path: Path) -> None:
    """An admin's retry makes a rejected event pending again; delivered, pending and unknown ones are left alone."""
    outbox = Outbox(tmp_path / "state.sqlite")
    for uid in ("1", "2", "3"):
        outbox.add(_event(f"series_stable:{uid}:x"))
    outbox.mark_rejected("series_stable:1:x", "HTTP 422: no id")
    outbox.mark_delivered("series_stable:2:x")
    assert [(e.id, e.status) for e in outbox.troubled()] == [("series_stable:1:x", REJECTED)]
    assert not outbox.retry("series_stable:2:x") and not outbox.retry("series_stable:3:x")
    assert not outbox.retry("nope")
    assert outbox.retry("series_stable:1:x")
    assert outbox.status("series_stable:1:x") == PENDING and not outbox.retry("series_stable:1:x")
    assert [e.id for e in outbox.pending()] == ["series_stable:1:x", "series_stable:3:x"]


def test_outbox_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "plugin" / "state.sqlite"
    outbox = Outbox(path)
    outbox.add(_event("series_stable:1:x"))
    outbox.add(_event("series_stable:2:x"))
    outbox.mark_delivered("series_stable:1:x")
    outbox.close()
    reopened = Outbox(path)
    assert [e.id for e in reopened.pending()] == ["series_stable:2:x"]
    assert not reopened.add(_event("series_stable:1:x"))
    assert reopened.counts()[DELIVERED] == 1


# --- HTTP to HOPE --------------------------------------------------------------------------------------------


Received = list[tuple[dict[str, str], bytes]]


@pytest.fixture
def answering() -> Iterator[tuple[str, list[int], Received]]:
    """A local HTTP server answering every request with the next status of the returned list (JSON body); the
    third item collects each request's headers (lower-case names) and body."""
    statuses: list[int] = []
    received: Received = []

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            received.append(({k.lower(): v for k, v in self.headers.items()}, self.rfile.read(length)))
            status = statuses.pop(0)
            body = json.dumps({"accepted": True, "duplicate": False, "series": {}, "detail": f"HTTP {status}"})
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body.encode())

        do_GET = do_POST = _answer

        def log_message(self, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", statuses, received
    server.shutdown()
    server.server_close()


def test_hope_answers_are_classified(answering: tuple[str, list[int], Received]) -> None:
    url, statuses, _ = answering
    client = HopeClient(url, timeout_seconds=2.0, key=KEY)
    statuses.extend([200, 503, 422, 401, 404, 200])
    assert client.post_event(_event("series_stable:1:x"))["accepted"] is True
    with pytest.raises(HopeUnavailable, match="HTTP 503"):
        client.post_event(_event("series_stable:1:x"))
    with pytest.raises(HopeRejected, match="HTTP 422"):
        client.post_event(_event("series_stable:1:x"))
    with pytest.raises(HopeUnavailable, match="HTTP 401"):  # a refused signature: kept pending until the key is fixed
        client.post_event(_event("series_stable:1:x"))
    with pytest.raises(HopeUnavailable, match="HTTP 404"):  # e.g. an older HOPE without the route: retry later
        client.series_state()
    assert client.series_state() == {}


def test_events_are_signed_over_the_exact_body(answering: tuple[str, list[int], Received]) -> None:
    """HOPE can verify what the plugin posts with the shared key; another key, or a changed body, does not verify."""
    url, statuses, received = answering
    statuses.append(200)
    HopeClient(url, timeout_seconds=2.0, key=KEY).post_event(_event("series_stable:1:x"))
    (headers, body), = received
    timestamp, signature = headers[TIMESTAMP_HEADER.lower()], headers[SIGNATURE_HEADER.lower()]
    assert json.loads(body)["id"] == "series_stable:1:x"
    KEY.verify(body, timestamp, signature)
    with pytest.raises(UnauthenticatedError, match="badly signed"):
        EventKey(b"other key" * 4).verify(body, timestamp, signature)
    with pytest.raises(UnauthenticatedError, match="badly signed"):
        KEY.verify(body.replace(b'"series_stable"', b'"seg_stored"'), timestamp, signature)


def test_unreachable_hope_is_unavailable() -> None:
    with pytest.raises(HopeUnavailable, match="refused"):
        HopeClient(f"http://127.0.0.1:{free_port()}", timeout_seconds=2.0, key=KEY).post_event(
            _event("series_stable:1:x")
        )


class RecordingLog:
    """Collects the service's log lines by level."""

    def __init__(self) -> None:
        self.lines: dict[str, list[str]] = {"info": [], "warning": [], "error": []}

    def info(self, message: str) -> None:
        self.lines["info"].append(message)

    def warning(self, message: str) -> None:
        self.lines["warning"].append(message)

    def error(self, message: str) -> None:
        self.lines["error"].append(message)


def _until(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_service_rejects_malformed_events_and_gives_up_on_vanished_series(
    tmp_path: Path, answering: tuple[str, list[int], Received]
) -> None:
    """The threads without Orthanc: a 422 is final (logged, kept as rejected), an unreadable series is dropped."""
    url, statuses, _ = answering
    statuses.append(422)
    log = RecordingLog()
    answers = _orthanc("CT", {f"i{k}": tags for k, tags in enumerate(_ct(3))})
    config = PluginConfig(url, tmp_path, tmp_path / "secrets" / "events.key", retry_seconds=0.05)
    service = PluginService(config, answers.__getitem__, log)
    service.start()
    try:
        service.on_stable_series("s1")
        service.on_stable_series("deleted-meanwhile")
        _until(lambda: service.outbox.counts()[REJECTED] == 1 and len(service.worklist) == 0)
    finally:
        service.stop()
    assert any("HOPE rejected event series_stable:1.2.3:" in line for line in log.lines["error"])
    assert any("giving up on series deleted-meanwhile after 5" in line for line in log.lines["error"])
    assert len([line for line in log.lines["warning"] if "cannot read series deleted-meanwhile" in line]) == 4
    statuses.append(200)
    detail = service.series_detail("1.2.3")
    assert detail is not None and (detail["state"], detail["hope_reachable"]) == ("unlabelled", True)


# --- worklist, catalog, views, config --------------------------------------------------------------------------


def test_worklist_keeps_a_series_that_became_stable_again_while_processed(tmp_path: Path) -> None:
    worklist = Worklist(tmp_path / "state.sqlite")
    worklist.add("s1")
    (item,) = worklist.due(now=0)
    worklist.add("s1")  # new instances arrived meanwhile
    worklist.remove(item)
    (again,) = worklist.due(now=0)
    assert again.generation == item.generation + 1
    worklist.failed(again, "Orthanc busy", retry_at=100.0)
    assert worklist.due(now=50.0) == []
    assert worklist.next_due() == 100.0
    worklist.remove(worklist.due(now=100.0)[0])
    assert len(worklist) == 0 and worklist.next_due() is None


def test_series_state_from_segs_and_hope(tmp_path: Path) -> None:
    catalog = Catalog(tmp_path / "state.sqlite")
    for uid in ("1.1", "1.2", "1.3"):
        catalog.record(
            {"type": "series_stable", "series_uid": uid, "study_uid": "1", "modality": "CT", "orthanc_id": "o"}
            | {"valid": uid != "1.3", "reasons": [] if uid != "1.3" else ["too thin"]}
        )
    catalog.record({"type": "seg_stored", "series_uid": "9", "orthanc_id": "o9", "referenced_series_uid": "1.1"})
    assert catalog.labelled() == {"1.1"}
    records = {r.series_uid: r for r in catalog.all_series()}
    assert records["1.3"] == SeriesRecord("1.3", "1", "CT", "o", False, ("too thin",))
    hope = {"1.2": {"suggestion_model_version": "v3", "final": False}}
    states = {uid: series_view(r, catalog.labelled(), hope)["state"] for uid, r in records.items()}
    assert states == {"1.1": "final", "1.2": "suggested", "1.3": "unlabelled"}
    offline = series_view(records["1.2"], catalog.labelled(), None)
    assert (offline["state"], offline["hope_reachable"]) == ("unlabelled", False)
    assert offline["validation"] == {"valid": True, "reasons": []}


def test_config_section_is_checked() -> None:
    config = PluginConfig.from_section(
        {"Url": "http://127.0.0.1:8000/", "StateDirectory": "/tmp/x", "SecretFile": "/s/events.key"}
    )
    assert (config.hope_url, config.retry_seconds, config.database.name, config.secret_file) == (
        "http://127.0.0.1:8000",
        30.0,
        "hope-plugin.sqlite",
        Path("/s/events.key"),
    )
    with pytest.raises(ValueError, match='"Hope" section'):
        PluginConfig.from_section(None)
    with pytest.raises(ValueError, match="RetrySeconds"):
        PluginConfig.from_section({"Url": "http://h", "StateDirectory": "/x", "SecretFile": "/k", "RetrySeconds": 0})
    with pytest.raises(ValueError, match="SecretFile.*HOPE_EVENT_SECRET_FILE"):
        PluginConfig.from_section({"Url": "http://h", "StateDirectory": "/x"})


def test_backoff_doubles_up_to_the_cap() -> None:
    assert [backoff(n, cap=3.0) for n in (1, 2, 3, 4, 5)] == [0.5, 1.0, 2.0, 3.0, 3.0]
