"""Pseudonymisation on ingest: only pseudonymised studies reach the annotation pool (real Orthanc, real HOPE)."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.orthanc_plugin.pseudonymize import pseudonym
from hope.phantoms import generate_neck_ct
from hope.processes.hope_server import hope_server_process
from hope.processes.orthanc import OrthancSettings, orthanc_process
from hope.processes.process import free_port

from .helpers import C_STORE_ACCESS, c_store, poll

pytestmark = pytest.mark.slow
SALT = "test-salt-0123456789"


@dataclass
class Stack:
    orthanc: OrthancSettings
    hope_url: str
    map_file: Path


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("pseudo")
    port = free_port()
    hope_url = f"http://127.0.0.1:{port}"
    settings = OrthancSettings(
        data_dir=tmp / "orthanc",
        http_port=free_port(),
        dicom_port=free_port(),
        stable_age=1,
        hope_url=hope_url,
        hope_retry_seconds=0.5,
        access=C_STORE_ACCESS,
    )
    map_file = tmp / "private" / "pseudonyms.sqlite"
    settings.overrides = {
        "Hope": {
            "Url": hope_url,
            "StateDirectory": str(settings.hope_plugin_dir),
            "SecretFile": str(settings.event_key_file),
            "RetrySeconds": 0.5,
            "Pseudonymize": {"Enabled": True, "Salt": SALT, "MapFile": str(map_file)},
        }
    }
    orthanc = orthanc_process(settings)
    orthanc.start(timeout=60)
    server = hope_server_process(settings, port, tmp / "hope")
    server.start(timeout=300)
    yield Stack(settings, hope_url, map_file)
    server.stop()
    orthanc.stop()


def _patient_ids(stack: Stack) -> set[str]:
    patients = requests.get(f"{stack.orthanc.url}/patients?expand", auth=stack.orthanc.auth, timeout=30).json()
    return {p["MainDicomTags"]["PatientID"] for p in patients}


def test_stored_study_is_replaced_by_its_pseudonymised_copy(stack: Stack, spine_labels: dict[str, int]) -> None:
    phantom = generate_neck_ct(131, spine_labels)
    identity = new_identity("REAL-PATIENT-131")
    datasets = volume_to_datasets(phantom.image, phantom.spacing, identity)
    c_store(stack.orthanc.dicom_port, datasets)
    alias = pseudonym("REAL-PATIENT-131", SALT)

    poll(lambda: _patient_ids(stack) == {alias}, 60, "the original to be replaced by its pseudonymised copy")
    listed = poll(
        lambda: (
            (
                objs := requests.get(f"{stack.hope_url}/datastore/", params={"output": "all"}, timeout=30).json()[
                    "objects"
                ]
            )
            and objs
        ),
        60,
        "HOPE to list the pseudonymised series",
    )
    assert identity.series_instance_uid not in listed, "the original series must never enter the pool"
    (pseudo_uid,) = listed
    poll(
        lambda: (
            requests.get(f"{stack.hope_url}/hope/state", timeout=30)
            .json()["series"]
            .get(pseudo_uid, {})
            .get("suggestion_model_version")
        ),
        300,
        "a suggestion for the pseudonymised series",
    )
    with sqlite3.connect(stack.map_file) as db:
        rows = db.execute("SELECT original_patient_id, pseudonym, original_study_uid FROM pseudonyms").fetchall()
    assert rows == [("REAL-PATIENT-131", alias, identity.study_instance_uid)]
