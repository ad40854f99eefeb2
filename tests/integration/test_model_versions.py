"""Admins steer model versions through the API: every finished run is kept; pin, roll back, plot."""

from __future__ import annotations

import pytest
import requests

from hope.demo import store_phantom
from hope.phantoms import generate_neck_ct
from hope.processes.orthanc import OrthancSettings

from .helpers import model_checksum, nifti_bytes, poll, put_label, series_volume, wait_for_training

pytestmark = pytest.mark.slow


def _versions(hope_url: str) -> dict:
    response = requests.get(f"{hope_url}/hope/models/spine_ct/versions", timeout=30)
    response.raise_for_status()
    return response.json()


@pytest.fixture(scope="module")
def trained(hope_url: str, orthanc: OrthancSettings, spine_labels: dict[str, int]) -> dict:
    """A final label in the store and one finished training run on top of the initial version."""
    stored = store_phantom(orthanc.url, generate_neck_ct(51, spine_labels), patient_id="VERSIONS-51", auth=orthanc.auth)
    image = series_volume(orthanc.dicomweb_client(), stored.study_uid, stored.series_uid)
    assert put_label(hope_url, stored.series_uid, nifti_bytes(stored.phantom.label, image)).status_code == 200
    response = requests.post(
        f"{hope_url}/train/spine_ct",
        json={"max_epochs": 1, "val_split": 0.0},
        headers={"X-HOPE-User": "dr.admin"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    assert wait_for_training(hope_url, timeout=900)["status"] == "DONE"
    return {"series_uid": stored.series_uid}


def test_every_finished_run_is_kept_with_metrics_data_and_author(hope_url: str, trained: dict) -> None:
    """The newest version records who started it, its Dice per label and the SEGs it learned from."""
    listing = _versions(hope_url)
    assert len(listing["versions"]) >= 2
    newest = listing["versions"][-1]
    assert newest["started_by"] == "dr.admin"
    assert "train_mean_dice" in newest["metrics"]
    assert any(key.startswith("train_C") for key in newest["metrics"])
    assert newest["training_data"], "the SEG series the version was trained on are recorded"
    assert listing["versions"][0]["note"].startswith(("seeded initial model", "pretrained on synthetic phantoms"))
    assert listing["serving"] == max(listing["versions"], key=lambda v: v["score"])["version"]


def test_pin_and_roll_back_switch_the_served_model_without_restart(hope_url: str, trained: dict) -> None:
    """Pinning the initial version serves it at once; unpinning serves the best again."""
    best = _versions(hope_url)["serving"]
    checksum_best = model_checksum(hope_url, "spine_ct")

    response = requests.put(f"{hope_url}/hope/models/spine_ct/pin", json={"version": "v0001"}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"task": "spine_ct", "serving": "v0001", "pinned": "v0001"}
    assert model_checksum(hope_url, "spine_ct") != checksum_best
    infer = requests.post(
        f"{hope_url}/infer/spine_ct", params={"image": trained["series_uid"], "output": "json"}, timeout=600
    )
    assert infer.status_code == 200, infer.text
    assert infer.json()["model_version"] == "v0001"

    response = requests.delete(f"{hope_url}/hope/models/spine_ct/pin", timeout=30)
    assert response.json()["serving"] == best
    assert model_checksum(hope_url, "spine_ct") == checksum_best


def test_pinning_an_unknown_version_is_404(hope_url: str) -> None:
    response = requests.put(f"{hope_url}/hope/models/spine_ct/pin", json={"version": "v9999"}, timeout=30)
    assert response.status_code == 404
    assert "v0001" in response.json()["detail"]


def test_training_plot_is_a_png(hope_url: str, trained: dict) -> None:
    response = requests.get(f"{hope_url}/hope/models/spine_ct/plot.png", timeout=60)
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content[:8] == b"\x89PNG\r\n\x1a\n"


def test_second_training_request_is_refused_with_a_reason(hope_url: str, trained: dict) -> None:
    """Only one training at a time: a second request is a 429 that says what to do."""
    first = requests.post(f"{hope_url}/train/spine_ct", json={"max_epochs": 50, "val_split": 0.0}, timeout=60)
    assert first.status_code == 200, first.text
    second = requests.post(f"{hope_url}/train/spine_ct", json={"max_epochs": 1}, timeout=60)
    # Stop the first run once its process exists (a queued task has nothing to stop yet).
    poll(
        lambda: requests.get(f"{hope_url}/train/", timeout=30).json().get("status") == "RUNNING",
        120,
        "the first run to start",
    )
    requests.delete(f"{hope_url}/train/", timeout=60)
    assert second.status_code == 429
    assert "enqueue=true" in second.json()["detail"]
    assert wait_for_training(hope_url, timeout=120)["status"] == "STOPPED"
