"""Case records through the real server, checked against the real store."""

from __future__ import annotations

import io

import pytest
import requests
from pydicom.uid import generate_uid

from hope.demo import StoredPhantom, store_phantom
from hope.phantoms import generate_neck_ct
from hope.processes.orthanc import OrthancSettings

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def study(orthanc: OrthancSettings, spine_labels: dict[str, int]) -> StoredPhantom:
    return store_phantom(orthanc.url, generate_neck_ct(91, spine_labels), patient_id="CASES-91", auth=orthanc.auth)


@pytest.fixture(scope="module")
def recorded_study(orthanc: OrthancSettings, hope_url: str, spine_labels: dict[str, int]) -> StoredPhantom:
    """A second study, stored and recorded as a chordoma."""
    stored = store_phantom(orthanc.url, generate_neck_ct(92, spine_labels), patient_id="CASES-92", auth=orthanc.auth)
    created = _put(
        hope_url, stored.study_uid, tumor_type="chordoma", verdict="malignant", confirmation="pathology", reason="r"
    )
    assert created.status_code == 201, created.text
    return stored


def _put(hope_url: str, uid: str, **body: str) -> requests.Response:
    return requests.put(f"{hope_url}/cases/{uid}", json=body, headers={"X-HOPE-User": "dr.path"}, timeout=30)


def test_case_record_is_validated_against_the_store_and_audited(hope_url: str, study: StoredPhantom) -> None:
    created = _put(
        hope_url,
        study.study_uid,
        tumor_type="chordoma",
        verdict="malignant",
        confirmation="pathology",
        reason="pathology report 2026-113",
    )
    assert created.status_code == 201, created.text
    updated = _put(
        hope_url,
        study.study_uid,
        tumor_type="chordoma",
        verdict="malignant",
        confirmation="follow_up",
        reason="confirmed again at 12-month follow-up",
    )
    assert updated.json()["change"] == "updated"
    audit = requests.get(f"{hope_url}/cases/{study.study_uid}/audit", timeout=30).json()
    assert [a["action"] for a in audit] == ["create", "update"]
    assert audit[1]["old_values"] == {"confirmation": "pathology"}
    assert audit[1]["new_values"] == {"confirmation": "follow_up"}
    assert {a["who"] for a in audit} == {"dr.path"}


def test_unknown_study_and_bad_values_are_refused_with_reasons(hope_url: str, study: StoredPhantom) -> None:
    unknown = _put(
        hope_url, generate_uid(), tumor_type="chordoma", verdict="malignant", confirmation="pathology", reason="r"
    )
    assert unknown.status_code == 422
    assert "not in" in unknown.text or "unknown" in unknown.text.lower()
    bad = _put(hope_url, study.study_uid, tumor_type="dragon", verdict="terrible", confirmation="pathology", reason="r")
    assert bad.status_code == 422
    assert "dragon" in bad.text and "terrible" in bad.text


def test_csv_import_is_all_or_nothing(hope_url: str, recorded_study: StoredPhantom) -> None:
    csv = (
        f"study_uid,tumor_type,verdict,confirmation\n{recorded_study.study_uid},schwannoma,benign,pathology\n"
        f"{generate_uid()},schwannoma,benign,pathology\n"
    )
    response = requests.post(
        f"{hope_url}/cases/import",
        files={"file": ("cases.csv", io.BytesIO(csv.encode()), "text/csv")},
        data={"reason": "batch from the registry", "who": "importer"},
        timeout=60,
    )
    assert response.status_code == 422
    assert "line 3" in response.text
    assert requests.get(f"{hope_url}/cases/{recorded_study.study_uid}", timeout=30).json()["tumor_type"] == "chordoma"
