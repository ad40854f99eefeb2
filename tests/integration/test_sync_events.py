"""HOPE's side of the store sync: events in, precomputed suggestions out, idempotently.

Events are posted over HTTP exactly as the Orthanc plugin posts them, signed with the shared key.
"""

from __future__ import annotations

import pytest
import requests

from hope.demo import StoredPhantom, store_phantom
from hope.phantoms import generate_neck_ct
from hope.processes.orthanc import OrthancSettings
from hope.sync.signing import EventKey

from .helpers import poll, post_event

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def phantom(orthanc: OrthancSettings, spine_labels: dict[str, int]) -> StoredPhantom:
    """One phantom CT series stored in Orthanc."""
    return store_phantom(orthanc.url, generate_neck_ct(31, spine_labels), patient_id="SYNC-31", auth=orthanc.auth)


def _stable(stored: StoredPhantom, **extra: object) -> dict:
    return {
        "id": f"series_stable:{stored.series_uid}",
        "type": "series_stable",
        "series_uid": stored.series_uid,
        "study_uid": stored.study_uid,
        "modality": "CT",
        **extra,
    }


def _series_state(hope_url: str, uid: str) -> dict:
    return requests.get(f"{hope_url}/hope/state", timeout=30).json()["series"].get(uid, {})


def test_stable_series_gets_a_suggestion_before_anyone_asks(
    hope_url: str, event_key: EventKey, phantom: StoredPhantom
) -> None:
    """After a series_stable event the suggestion is computed in the background and served as precomputed."""
    answer = post_event(hope_url, _stable(phantom), event_key).json()
    assert answer == {"accepted": True, "duplicate": False, "actions": ["suggestion queued for spine_ct"]}

    state = poll(
        lambda: _series_state(hope_url, phantom.series_uid).get("suggestion_model_version"),
        timeout=300,
        what="the precomputed suggestion",
    )
    versions = requests.get(f"{hope_url}/hope/state", timeout=30).json()["model_versions"]
    assert state == versions["spine_ct"]

    response = requests.post(
        f"{hope_url}/infer/spine_ct", params={"image": phantom.series_uid, "output": "json"}, timeout=300
    )
    assert response.status_code == 200, response.text
    assert response.json()["precomputed"] is True
    assert response.json()["model_version"] == state


def test_repeated_event_changes_nothing(hope_url: str, event_key: EventKey, phantom: StoredPhantom) -> None:
    """The same event id twice is acknowledged as a duplicate and triggers no work."""
    event = _stable(phantom, id=f"series_stable:{phantom.series_uid}:repeat")
    first = post_event(hope_url, event, event_key).json()
    again = post_event(hope_url, event, event_key).json()
    assert first["duplicate"] is False
    assert again == {"accepted": True, "duplicate": True}


def test_invalid_series_is_flagged_and_kept_out_of_the_pool(
    hope_url: str, event_key: EventKey, orthanc: OrthancSettings, spine_labels: dict[str, int]
) -> None:
    """A series the plugin found invalid is listed in /hope/state with its reason and not offered to annotate."""
    stored = store_phantom(orthanc.url, generate_neck_ct(32, spine_labels), patient_id="SYNC-32", auth=orthanc.auth)
    reason = "duplicate ImagePositionPatient at slices 3 and 4"
    event = _stable(stored, valid=False, reasons=[reason])
    assert post_event(hope_url, event, event_key).status_code == 200
    assert _series_state(hope_url, stored.series_uid)["flags"] == [reason]
    listed = requests.get(f"{hope_url}/datastore/", params={"output": "all"}, timeout=30).json()["objects"]
    assert stored.series_uid not in listed


def test_malformed_event_is_422(hope_url: str, event_key: EventKey) -> None:
    """A signed event without an id or with an unknown type is refused with the reason."""
    response = post_event(hope_url, {"type": "nonsense", "series_uid": "1.2"}, event_key)
    assert response.status_code == 422
    assert "id" in response.text


def test_lesion_only_seg_does_not_count_towards_spine_ct_retraining(
    hope_url: str, event_key: EventKey, phantom: StoredPhantom
) -> None:
    """A SEG with only a tumour (drawn for the few-shot tasks) is not a spine_ct training case; one with vertebrae
    is."""
    def counted() -> int:
        return requests.get(f"{hope_url}/hope/state", timeout=30).json()["retrain"]["counted"].get("spine_ct", 0)

    def seg_event(uid: str, labels: list[str]) -> dict:
        event = {"id": f"seg_stored:{uid}", "type": "seg_stored", "series_uid": uid, "modality": "SEG",
                 "referenced_series_uid": phantom.series_uid, "segment_labels": labels}
        response = post_event(hope_url, event, event_key)
        assert response.status_code == 200, response.text
        return response.json()

    before = counted()
    lesion_only = seg_event("1.2.826.0.1.3680043.8.498.901", ["tumor"])
    assert counted() == before and "not counted for spine_ct" in lesion_only["actions"][0]
    seg_event("1.2.826.0.1.3680043.8.498.902", ["C2", "tumor"])
    assert counted() == before + 1
