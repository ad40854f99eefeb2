"""Admins steer model versions through the API: every finished run is kept with the decision on whether it serves
(shown by ``GET /train/`` and the versions list); pin, roll back, plot. A decision never overrides a pin."""

from __future__ import annotations

import json

import pytest
import requests

from hope.config import REPO_ROOT, load_task
from hope.demo import store_phantom, store_volume
from hope.dicom.series_writer import new_identity
from hope.models.validation_set import picked
from hope.phantoms import generate_neck_ct
from hope.processes.orthanc import OrthancSettings

from .helpers import model_checksum, nifti_bytes, poll, put_label, series_volume, wait_for_training

pytestmark = pytest.mark.slow


def _versions(hope_url: str) -> dict:
    response = requests.get(f"{hope_url}/hope/models/spine_ct/versions", timeout=30)
    response.raise_for_status()
    return response.json()


def _train_one_epoch(hope_url: str) -> dict:
    """Start a one-epoch run as dr.admin and wait for it; ``GET /train/``'s answer once it is done."""
    response = requests.post(
        f"{hope_url}/train/spine_ct",
        json={"max_epochs": 1, "val_split": 0.0},
        headers={"X-HOPE-User": "dr.admin"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    status = wait_for_training(hope_url, timeout=900)
    assert status["status"] == "DONE" and status["id"] == response.json()["id"], list(status.get("details", []))
    return status


@pytest.fixture(scope="module")
def trained(hope_url: str, orthanc: OrthancSettings, spine_labels: dict[str, int]) -> dict:
    """A final label in the store and one finished training run on top of the initial version."""
    stored = store_phantom(orthanc.url, generate_neck_ct(51, spine_labels), patient_id="VERSIONS-51", auth=orthanc.auth)
    image = series_volume(orthanc.dicomweb_client(), stored.study_uid, stored.series_uid)
    assert put_label(hope_url, stored.series_uid, nifti_bytes(stored.phantom.label, image)).status_code == 200
    serving_before = _versions(hope_url)["serving"]
    return {"series_uid": stored.series_uid, "status": _train_one_epoch(hope_url), "serving_before": serving_before}


def test_every_finished_run_is_kept_with_metrics_data_and_author(hope_url: str, trained: dict) -> None:
    """The newest version records who started it, its Dice per label and the SEGs it learned from."""
    listing = _versions(hope_url)
    assert len(listing["versions"]) >= 2
    newest = listing["versions"][-1]
    assert newest["started_by"] == "dr.admin"
    assert "train_mean_dice" in newest["metrics"]
    assert any(key.startswith("train_C") for key in newest["metrics"])
    assert newest["training_data"], "the SEG series the version was trained on are recorded"
    first = listing["versions"][0]  # the shipped phantom-pretrained network (apps/hope/pretrained/spine_ct.pt)
    assert first["started_by"] == "scripts/pretrain_synthesis.py"
    shipped = json.loads((REPO_ROOT / "apps" / "hope" / "pretrained" / "spine_ct.json").read_text())
    assert first["note"] == f"pretrained by synthesis (shipped): {shipped['training_data']}"
    assert listing["serving"] == [v for v in listing["versions"] if v["promoted"] and v["servable"]][-1]["version"]


def test_the_run_status_and_the_versions_list_show_whether_the_new_version_serves_and_why(
        hope_url: str, trained: dict) -> None:
    """The decision compares versions on the frozen validation set (or says it is too small to) and is shown with
    the run in ``GET /train/`` and with the version in the versions list."""
    rule = load_task("spine_ct").training.validation
    listing = _versions(hope_url)
    newest = listing["versions"][-1]
    kept = trained["status"]["model_version"]
    assert kept["version"] == newest["version"]
    decision = kept["promotion"]
    assert decision == newest["promotion"] and newest["promoted"] == decision["promoted"]
    assert decision["margin"] == rule.margin and len(decision["frozen_set"]["fingerprint"]) == 16
    cases, before = decision["frozen_set"]["cases"], trained["serving_before"]
    if cases < rule.min_cases:
        assert decision["promoted"] and decision["scores"] == {}
        assert decision["reason"].startswith(f"no frozen validation set yet ({cases} of {rule.min_cases} cases)")
    else:
        new, old = decision["scores"][newest["version"]], decision["scores"][before]
        assert decision["promoted"] == (new >= old - rule.margin)
        assert f"{new:.3f}" in decision["reason"] and f"{old:.3f}" in decision["reason"]
        assert newest["score"] == new
    assert kept["serving"] == decision["promoted"] == (listing["serving"] == newest["version"])
    if not decision["promoted"]:
        assert listing["serving"] == before and f"Pin {newest['version']}" in decision["reason"]
    every_run = requests.get(f"{hope_url}/train/", params={"all": "true"}, timeout=30).json()
    assert [run["model_version"] for run in every_run if run["id"] == trained["status"]["id"]] == [kept]


def test_a_decision_never_overrides_a_pin(hope_url: str, trained: dict) -> None:
    """With v0001 pinned, a new run's version is kept with its decision while v0001 goes on serving."""
    assert requests.put(f"{hope_url}/hope/models/spine_ct/pin", json={"version": "v0001"}, timeout=30).ok
    try:
        kept = _train_one_epoch(hope_url)["model_version"]
        listing = _versions(hope_url)
        assert kept["version"] == listing["versions"][-1]["version"] and kept["promotion"] is not None
        assert listing["serving"] == listing["pinned"] == "v0001" and not kept["serving"]
        reason = kept["promotion"]["reason"]
        if kept["promotion"]["promoted"]:
            assert reason.endswith(f"v0001 stays pinned; {kept['version']} serves once it is unpinned.")
        else:
            assert reason.endswith(f"v0001 keeps serving. Pin {kept['version']} to serve it anyway.")
    finally:
        assert requests.delete(f"{hope_url}/hope/models/spine_ct/pin", timeout=30).ok


def _store_labelled_member(hope_url: str, orthanc: OrthancSettings, labels: dict[str, int], seed: int,
                           share: float) -> str:
    """A phantom series whose UID the frozen set's hash rule picks, stored with its final label; its UID."""
    identity = new_identity(f"VERSIONS-{seed}")
    while not picked(identity.series_instance_uid, share):
        identity = new_identity(f"VERSIONS-{seed}")
    phantom = generate_neck_ct(seed, labels)
    store_volume(orthanc.url, phantom.image, phantom.spacing, identity, auth=orthanc.auth)
    image = series_volume(orthanc.dicomweb_client(), identity.study_instance_uid, identity.series_instance_uid)
    assert put_label(hope_url, identity.series_instance_uid, nifti_bytes(phantom.label, image)).status_code == 200
    return identity.series_instance_uid


def test_a_new_version_is_scored_with_the_serving_one_on_the_frozen_validation_set(
        hope_url: str, orthanc: OrthancSettings, spine_labels: dict[str, int], trained: dict) -> None:
    """Two new final labels the hash rule picks join the frozen set at the next run and are not trained on; the
    run's version and the serving one are scored on the set, and the new one serves only if not worse beyond the
    margin."""
    rule = load_task("spine_ct").training.validation
    for seed in (52, 53):
        _store_labelled_member(hope_url, orthanc, spine_labels, seed, rule.share)
    before = _versions(hope_url)
    kept = _train_one_epoch(hope_url)["model_version"]
    after = _versions(hope_url)
    decision = kept["promotion"]
    assert decision["frozen_set"]["cases"] >= 2
    new, old = decision["scores"][kept["version"]], decision["scores"][before["serving"]]
    assert 0.0 <= new <= 1.0 and 0.0 <= old <= 1.0
    assert decision["promoted"] == (new >= old - rule.margin) == kept["serving"]
    assert after["serving"] == (kept["version"] if decision["promoted"] else before["serving"])
    assert {"C1", "spinal_canal"} <= set(decision["dice"][kept["version"]])
    assert after["versions"][-1]["score"] == new
    # The two members were not trained on: the run learned from as many labels as the one before.
    assert len(after["versions"][-1]["training_data"]) == len(before["versions"][-1]["training_data"])


def test_pin_and_roll_back_switch_the_served_model_without_restart(hope_url: str, trained: dict) -> None:
    """Pinning another version (the initial one, unless it is the best) serves it at once; unpinning serves the best
    again."""
    best = _versions(hope_url)["serving"]
    other = "v0001" if best != "v0001" else _versions(hope_url)["versions"][-1]["version"]
    checksum_best = model_checksum(hope_url, "spine_ct")

    response = requests.put(f"{hope_url}/hope/models/spine_ct/pin", json={"version": other}, timeout=30)
    assert response.status_code == 200, response.text
    assert response.json() == {"task": "spine_ct", "serving": other, "pinned": other}
    assert model_checksum(hope_url, "spine_ct") != checksum_best
    infer = requests.post(
        f"{hope_url}/infer/spine_ct", params={"image": trained["series_uid"], "output": "json"}, timeout=600
    )
    assert infer.status_code == 200, infer.text
    assert infer.json()["model_version"] == other

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
