"""Who may reach the store and speak for it: signed store events, Orthanc's credentials, addresses and AE titles.

Regression tests of issue 12's "Forged events" and "Orthanc is wide open": before the fix anyone could post to
``/hope/events`` (a forged "invalid" event removed a series from the pool for good, forged "SEG stored" events
started training), Orthanc's REST API had no credentials (anyone on the host could ``DELETE`` a SEG), and its DICOM
port took C-STORE from any AE title. Orthanc 1.10 cannot bind one address, so its ports listen on every interface;
what is checked is that they refuse other machines (HOPE's own port is bound to loopback).
"""

from __future__ import annotations

import json
import socket
import stat
import time
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
import requests
from pydicom.dataset import Dataset
from pydicom.uid import ExplicitVRLittleEndian
from pynetdicom import AE
from pynetdicom.sop_class import Verification

from hope.demo import StoredPhantom, store_phantom
from hope.dicom.seg import label_to_seg
from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.phantoms import generate_neck_ct
from hope.processes.orthanc import OrthancSettings, orthanc_process
from hope.processes.process import free_port
from hope.sync.signing import MAX_SKEW_SECONDS, EventKey
from tests.integration.helpers import C_STORE_ACCESS, TEST_SENDER, poll

pytestmark = pytest.mark.slow

TIMEOUT = 30
FORGED_KEY = EventKey(b"an attacker's guess at HOPE's key")


def _non_loopback_address() -> str:
    """An IPv4 address of this machine that is not loopback; the test is skipped on a machine without one."""
    for addresses in psutil.net_if_addrs().values():
        for address in addresses:
            if address.family == socket.AF_INET and not address.address.startswith("127."):
                return str(address.address)
    pytest.skip("this machine has no non-loopback IPv4 address to connect from")


def _forge(hope_url: str, event: dict[str, Any], how: str, key: EventKey) -> requests.Response:
    """Post ``event`` unsigned, signed with a guessed key, or signed with HOPE's ``key`` long ago (a replay)."""
    body = json.dumps(event).encode()
    headers = {
        "unsigned": {},
        "wrong key": FORGED_KEY.sign(body),
        "stale": key.sign(body, now=time.time() - 10 * MAX_SKEW_SECONDS),
    }[how]
    return requests.post(f"{hope_url}/hope/events", data=body, timeout=TIMEOUT,
                         headers={"Content-Type": "application/json", **headers})


def _hope_state(hope_url: str) -> dict[str, Any]:
    return requests.get(f"{hope_url}/hope/state", timeout=TIMEOUT).json()


def _listed(hope_url: str) -> dict[str, Any]:
    return requests.get(f"{hope_url}/datastore/", params={"output": "all"}, timeout=TIMEOUT).json()["objects"]


# --- forged events -----------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def target(orthanc: OrthancSettings, hope_url: str, spine_labels: dict[str, int]) -> StoredPhantom:
    """A series in the annotation pool, listed by HOPE."""
    stored = store_phantom(orthanc.url, generate_neck_ct(331, spine_labels), "SEC-331", auth=orthanc.auth)
    poll(lambda: stored.series_uid in _listed(hope_url), 60, "the series to be listed")
    return stored


@pytest.mark.parametrize("how", ["unsigned", "wrong key", "stale"])
def test_a_forged_invalid_event_is_refused_and_the_series_stays_in_the_pool(
    hope_url: str, event_key: EventKey, target: StoredPhantom, how: str
) -> None:
    """A forged "invalid" event removed the series from the pool for good; now it is a 401 and nothing changes."""
    event = {"id": f"series_stable:{target.series_uid}", "type": "series_stable", "series_uid": target.series_uid,
             "study_uid": target.study_uid, "modality": "CT", "valid": False, "reasons": ["forged"]}
    response = _forge(hope_url, event, how, event_key)
    assert response.status_code == 401, response.text
    assert "refused" in response.json()["detail"]
    assert "flags" not in _hope_state(hope_url)["series"].get(target.series_uid, {})
    assert target.series_uid in _listed(hope_url)


@pytest.mark.parametrize("how", ["unsigned", "wrong key", "stale"])
def test_forged_seg_events_do_not_count_towards_training(
    hope_url: str, event_key: EventKey, target: StoredPhantom, how: str
) -> None:
    """Six forged "SEG stored" events started a training run; now each is a 401, and nothing is counted."""
    before = _hope_state(hope_url)["retrain"]["counted"]
    training_before = requests.get(f"{hope_url}/train/", timeout=TIMEOUT).json()
    for i in range(6):
        seg_uid = f"2.25.{int(time.time() * 1000)}{i}"
        event = {"id": f"seg_stored:{seg_uid}", "type": "seg_stored", "series_uid": seg_uid, "modality": "SEG",
                 "referenced_series_uid": target.series_uid, "segment_labels": ["C2", "C3"]}
        assert _forge(hope_url, event, how, event_key).status_code == 401
    state = _hope_state(hope_url)
    assert state["retrain"]["counted"] == before
    assert not state["series"].get(target.series_uid, {}).get("final")
    assert requests.get(f"{hope_url}/train/", timeout=TIMEOUT).json() == training_before


def test_a_signed_event_is_still_accepted(hope_url: str, event_key: EventKey) -> None:
    """The plugin's way in stays open: the same kind of request, signed with the shared key, is handled."""
    body = json.dumps({"id": "series_stable:2.25.1:signed", "type": "series_stable", "series_uid": "2.25.1",
                       "modality": "SR"}).encode()
    response = requests.post(f"{hope_url}/hope/events", data=body, timeout=TIMEOUT,
                             headers={"Content-Type": "application/json", **event_key.sign(body)})
    assert response.status_code == 200, response.text


# --- Orthanc's HTTP API --------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def seg(orthanc: OrthancSettings, spine_labels: dict[str, int]) -> str:
    """A SEG stored in the test Orthanc; its Orthanc series id."""
    phantom = generate_neck_ct(332, spine_labels)
    datasets = volume_to_datasets(phantom.image, phantom.spacing, new_identity("SEC-332"))
    client = orthanc.dicomweb_client()
    client.store_instances(datasets)
    segmentation = label_to_seg(phantom.label, datasets, spine_labels)
    client.store_instances([segmentation])
    found = requests.post(f"{orthanc.url}/tools/lookup", data=segmentation.SeriesInstanceUID, auth=orthanc.auth,
                          timeout=TIMEOUT).json()
    return str(found[0]["ID"])


@pytest.mark.parametrize("path", ["/system", "/patients", "/dicom-web/studies", "/app/explorer.html",
                                  "/hope/series"])
def test_orthanc_http_needs_credentials(orthanc: OrthancSettings, path: str) -> None:
    """Orthanc's REST API, DICOMweb and explorer answered anyone on the host; now only with the credentials."""
    assert requests.get(f"{orthanc.url}{path}", timeout=TIMEOUT).status_code == 401
    wrong = (orthanc.credentials.username, "not the password")
    assert requests.get(f"{orthanc.url}{path}", auth=wrong, timeout=TIMEOUT).status_code == 401
    assert requests.get(f"{orthanc.url}/system", auth=orthanc.auth, timeout=TIMEOUT).status_code == 200


def test_a_seg_cannot_be_deleted_or_orthanc_stopped_without_credentials(orthanc: OrthancSettings, seg: str) -> None:
    """Anyone on the host could ``DELETE`` a SEG (or stop Orthanc); now it is a 401 and the SEG stays."""
    for auth in (None, ("hope", "guess"), ("orthanc", "orthanc")):
        assert requests.delete(f"{orthanc.url}/series/{seg}", auth=auth, timeout=TIMEOUT).status_code == 401
        assert requests.post(f"{orthanc.url}/tools/shutdown", auth=auth, timeout=TIMEOUT).status_code == 401
    kept = requests.get(f"{orthanc.url}/series/{seg}", auth=orthanc.auth, timeout=TIMEOUT)
    assert kept.status_code == 200 and kept.json()["MainDicomTags"]["Modality"] == "SEG"


def test_secrets_are_readable_by_their_owner_only(orthanc: OrthancSettings, event_key: EventKey) -> None:
    """The credentials, the event key and Orthanc's rendered configuration (which holds the password)."""
    for path in (orthanc.credentials_file, orthanc.event_key_file, orthanc.data_dir / "orthanc.json"):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path
    assert orthanc.credentials.password in (orthanc.data_dir / "orthanc.json").read_text()


# --- addresses ------------------------------------------------------------------------------------------------------


def test_other_machines_are_refused_and_hope_listens_on_loopback_only(orthanc: OrthancSettings, hope_url: str) -> None:
    """Orthanc's HTTP port answered every interface; now a request from another address is refused even with the
    credentials. HOPE's port is not even open there."""
    address = _non_loopback_address()
    remote = requests.get(f"http://{address}:{orthanc.http_port}/system", auth=orthanc.auth, timeout=TIMEOUT)
    assert remote.status_code in (401, 403), remote.text
    hope_port = int(hope_url.rsplit(":", 1)[1])
    with pytest.raises(requests.ConnectionError):
        requests.get(f"http://{address}:{hope_port}/info/", timeout=TIMEOUT)
    listening = {c.laddr.ip for c in psutil.net_connections(kind="tcp")
                 if c.status == psutil.CONN_LISTEN and c.laddr.port == hope_port}
    assert listening == {"127.0.0.1"}


# --- DICOM --------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def dicom_orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancSettings]:
    """An Orthanc that accepts DICOM from the tests' AE title, from this machine (as ``configs/`` would list it)."""
    settings = OrthancSettings(data_dir=tmp_path_factory.mktemp("dicom-orthanc"), http_port=free_port(),
                               dicom_port=free_port(), access=C_STORE_ACCESS)
    process = orthanc_process(settings)
    process.start(timeout=60)
    yield settings
    process.stop()


def _instances(orthanc: OrthancSettings) -> int:
    return int(requests.get(f"{orthanc.url}/statistics", auth=orthanc.auth, timeout=TIMEOUT).json()["CountInstances"])


def _slice(spine_labels: dict[str, int], patient_id: str) -> Dataset:
    phantom = generate_neck_ct(333, spine_labels)
    return volume_to_datasets(phantom.image[:1], phantom.spacing, new_identity(patient_id))[0]


def _send(orthanc: OrthancSettings, dataset: Dataset, calling: str, called: str = "HOPE",
          host: str = "127.0.0.1") -> int | None:
    """C-STORE ``dataset``; its DIMSE status, or ``None`` when the association was refused."""
    ae = AE(ae_title=calling)
    ae.add_requested_context(dataset.SOPClassUID, ExplicitVRLittleEndian)
    ae.add_requested_context(Verification)
    assoc = ae.associate(host, orthanc.dicom_port, ae_title=called)
    if not assoc.is_established:
        return None
    try:
        status = assoc.send_c_store(dataset)
        return int(status.Status) if status else None
    finally:
        assoc.release()


def test_c_store_from_an_unknown_ae_title_is_refused(dicom_orthanc: OrthancSettings,
                                                     spine_labels: dict[str, int]) -> None:
    """Orthanc took C-STORE from any AE title; now only from the senders configured, calling Orthanc's own."""
    before = _instances(dicom_orthanc)
    for calling, called in (("INTRUDER", "HOPE"), ("STORESCU", "HOPE"), (TEST_SENDER.aet, "ANY-SCP")):
        assert _send(dicom_orthanc, _slice(spine_labels, "SEC-INTRUDER"), calling, called) is None, (calling, called)
    assert _instances(dicom_orthanc) == before


def test_c_store_from_a_configured_ae_title_is_accepted(dicom_orthanc: OrthancSettings,
                                                        spine_labels: dict[str, int]) -> None:
    before = _instances(dicom_orthanc)
    assert _send(dicom_orthanc, _slice(spine_labels, "SEC-SENDER"), TEST_SENDER.aet) == 0x0000
    assert _instances(dicom_orthanc) == before + 1


def test_a_configured_ae_title_from_another_machine_is_refused(dicom_orthanc: OrthancSettings,
                                                               spine_labels: dict[str, int]) -> None:
    """Orthanc's DICOM port listens on every interface; a sender is accepted only from its configured address."""
    address = _non_loopback_address()
    before = _instances(dicom_orthanc)
    assert _send(dicom_orthanc, _slice(spine_labels, "SEC-REMOTE"), TEST_SENDER.aet, host=address) is None
    assert _instances(dicom_orthanc) == before
