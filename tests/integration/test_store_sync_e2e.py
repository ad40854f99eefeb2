"""The store and HOPE in step, end to end: Orthanc with HOPE's plugin, and a real HOPE server.

Nothing here calls ``/infer`` to make a suggestion or posts events by hand: everything flows from what is stored.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from hope.dicom.seg import label_to_seg
from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.phantoms import generate_neck_ct
from hope.processes.hope_server import hope_server_process
from hope.processes.orthanc import OrthancSettings, orthanc_process
from hope.processes.process import ManagedProcess, free_port

from ..conftest import config_dir_with
from .helpers import C_STORE_ACCESS, c_store, poll

pytestmark = pytest.mark.slow
RETRAIN_AFTER = 2


@dataclass
class Stack:
    """Orthanc with the plugin and the HOPE server it notifies."""

    orthanc: OrthancSettings
    hope_url: str
    server: ManagedProcess
    data_dir: Path
    config_dir: Path

    def restart_hope(self) -> None:
        """Start the HOPE server again on the same port and data folder."""
        port = int(self.hope_url.rsplit(":", 1)[1])
        self.server = hope_server_process(
            self.orthanc, port, self.data_dir, {"HOPE_CONFIG_DIR": str(self.config_dir)}
        )
        self.server.start(timeout=300)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    tmp = tmp_path_factory.mktemp("e2e")
    port = free_port()
    hope_url = f"http://127.0.0.1:{port}"
    orthanc = OrthancSettings(
        data_dir=tmp / "orthanc", http_port=free_port(), dicom_port=free_port(), stable_age=1,
        hope_url=hope_url, hope_retry_seconds=0.5, access=C_STORE_ACCESS,
    )
    config_dir = config_dir_with(tmp, retrain={"enabled": True, "after_new_final_labels": RETRAIN_AFTER})
    orthanc_proc = orthanc_process(orthanc)
    orthanc_proc.start(timeout=60)
    server = hope_server_process(orthanc, port, tmp / "hope", {"HOPE_CONFIG_DIR": str(config_dir)})
    server.start(timeout=300)
    s = Stack(orthanc, hope_url, server, tmp / "hope", config_dir)
    yield s
    s.server.stop()
    orthanc_proc.stop()


def _ct(seed: int, labels: dict[str, int]) -> tuple:
    phantom = generate_neck_ct(seed, labels)
    datasets = volume_to_datasets(phantom.image, phantom.spacing, new_identity(f"E2E-{seed}"))
    return phantom, datasets


def _state(stack: Stack, uid: str) -> dict:
    return requests.get(f"{stack.hope_url}/hope/state", timeout=30).json()["series"].get(uid, {})


def _orthanc_view(stack: Stack, uid: str) -> dict:
    return requests.get(f"{stack.orthanc.url}/hope/series/{uid}", auth=stack.orthanc.auth, timeout=30).json()


def test_c_stored_series_has_its_suggestion_ready_before_anyone_asks(
    stack: Stack, spine_labels: dict[str, int]
) -> None:
    """C-STORE a CT; without any infer call, HOPE computes a suggestion, and opening it is answered from it."""
    _, datasets = _ct(61, spine_labels)
    uid = datasets[0].SeriesInstanceUID
    c_store(stack.orthanc.dicom_port, datasets)

    version = poll(lambda: _state(stack, uid).get("suggestion_model_version"), 300, "a precomputed suggestion")
    response = requests.post(f"{stack.hope_url}/infer/spine_ct", params={"image": uid, "output": "json"}, timeout=60)
    assert response.json()["precomputed"] is True
    assert response.json()["model_version"] == version
    view = poll(lambda: _orthanc_view(stack, uid).get("state") == "suggested" and _orthanc_view(stack, uid), 30,
                "Orthanc's /hope/series to show the suggestion")
    assert view["suggestion_model_version"] == version
    assert view["validation"] == {"valid": True, "reasons": []}


def test_seg_stored_in_orthanc_counts_within_seconds_and_triggers_retraining(
    stack: Stack, spine_labels: dict[str, int]
) -> None:
    """SEGs stored straight into Orthanc (as OHIF or Slicer do) are final labels within seconds; the N-th retrains."""
    client = stack.orthanc.dicomweb_client()
    for seed in range(70, 70 + RETRAIN_AFTER):
        phantom, datasets = _ct(seed, spine_labels)
        client.store_instances(datasets)
        seg = label_to_seg(phantom.label, datasets, spine_labels)
        client.store_instances([seg])
        uid = datasets[0].SeriesInstanceUID
        poll(lambda uid=uid: _state(stack, uid).get("final"), 15, f"HOPE to count series {uid} as final")
        poll(lambda uid=uid: _orthanc_view(stack, uid).get("state") == "final", 15, f"Orthanc to show {uid} final")

    task = poll(
        lambda: (t := requests.get(f"{stack.hope_url}/train/", timeout=30).json()).get("request") and t,
        30,
        "the automatic training run",
    )
    assert task["request"]["model"] == "spine_ct"
    assert requests.get(f"{stack.hope_url}/hope/state", timeout=30).json()["retrain"]["counted"]["spine_ct"] == 0
    requests.delete(f"{stack.hope_url}/train/", timeout=60)


def test_events_sent_while_hope_is_down_arrive_after_it_restarts(
    stack: Stack, spine_labels: dict[str, int]
) -> None:
    """Stop HOPE, store a series, start HOPE again: the queued event arrives and the suggestion is made."""
    stack.server.stop()
    _, datasets = _ct(81, spine_labels)
    uid = datasets[0].SeriesInstanceUID
    stack.orthanc.dicomweb_client().store_instances(datasets)
    outbox = f"{stack.orthanc.url}/hope/outbox"
    poll(lambda: requests.get(outbox, auth=stack.orthanc.auth, timeout=30).json()["pending"] > 0, 30,
         "the event to wait in Orthanc's outbox")
    stack.restart_hope()
    poll(lambda: _state(stack, uid).get("suggestion_model_version"), 300, "the suggestion after the restart")
    assert requests.get(outbox, auth=stack.orthanc.auth, timeout=30).json()["pending"] == 0
