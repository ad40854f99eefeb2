"""The few-shot flow through a real Orthanc and a real HOPE server.

Cases of a tumour type the served model never saw in training (phantom chordoma) and of two other types are
stored as CT series, labelled through ``PUT /datastore/label`` (a SEG in Orthanc) and recorded through
``PUT /cases``. A new chordoma case is then segmented and graded through ``/infer``, and the results are found
with the study in Orthanc.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
import SimpleITK as sitk
from dicomweb_client import DICOMwebClient

from hope.config.server import DemoFewShotType
from hope.datastore.attachments import SeriesAttachments, attachment_name
from hope.datastore.gateway import OrthancGateway
from hope.fewshot.config import load_fewshot_task
from hope.fewshot_demo import StoredStack, label_and_record, load_fewshot_demo, store_stack
from hope.processes.orthanc import OrthancSettings
from tests.integration.helpers import nifti_bytes, poll, read_nifti_bytes, series_volume, wait_for_training

pytestmark = pytest.mark.slow

SPEC = load_fewshot_task("fewshot_tumor").slices
NEW_TYPE = "chordoma"  # held out of the shipped model's meta-training: new to the server
TYPES = [
    DemoFewShotType("chordoma", "chordoma", "malignant", labelled=3),
    DemoFewShotType("aneurysmal_bone_cyst", "aneurysmal_bone_cyst", "borderline", labelled=2),
    DemoFewShotType("haemangioma", "hemangioma", "benign", labelled=2),
]


@pytest.fixture(scope="module")
def client(orthanc: OrthancSettings) -> DICOMwebClient:
    """A dicomweb-client on the test Orthanc, logged in."""
    return orthanc.dicomweb_client()


@pytest.fixture(scope="module")
def demo(orthanc: OrthancSettings, hope_url: str, spine_labels: dict[str, int]
         ) -> dict[str, tuple[list[StoredStack], StoredStack]]:
    """Steps 1 and 2: k cases per type stored, labelled (a SEG, through HOPE) and recorded (``PUT /cases``);
    plus one unlabelled case per type."""
    return load_fewshot_demo(orthanc.url, hope_url, TYPES, spine_labels["tumor"], SPEC, first_seed=100,
                             progress=False, auth=orthanc.auth)


@pytest.fixture(scope="module")
def labelled(demo: dict[str, tuple[list[StoredStack], StoredStack]]) -> list[StoredStack]:
    """Every labelled, recorded case."""
    return [case for cases, _ in demo.values() for case in cases]


@pytest.fixture(scope="module")
def query(demo: dict[str, tuple[list[StoredStack], StoredStack]]) -> StoredStack:
    """A new, unlabelled, unrecorded case of the new type."""
    return demo[NEW_TYPE][1]


@pytest.fixture(scope="module")
def attachments(orthanc: OrthancSettings) -> SeriesAttachments:
    """Orthanc's REST API, for the results kept with the series."""
    return SeriesAttachments(OrthancGateway(orthanc.dicomweb_url, 30, *orthanc.auth))


def _infer(hope_url: str, model: str, series_uid: str, output: str, params: dict[str, Any],
           label: bytes | None = None) -> requests.Response:
    files = {"label": ("lesion.nii.gz", io.BytesIO(label), "application/octet-stream")} if label else None
    return requests.post(f"{hope_url}/infer/{model}", params={"image": series_uid, "output": output},
                         data={"params": json.dumps(params)}, files=files, timeout=600)


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a > 0, b > 0
    return float(2 * (a & b).sum() / max(1, a.sum() + b.sum()))


def test_fewshot_tasks_are_served(hope_url: str) -> None:
    """Both tasks appear in ``/info`` with their types."""
    models = requests.get(f"{hope_url}/info/", timeout=30).json()["models"]
    assert models["fewshot_tumor"]["type"] == "segmentation"
    assert models["tumor_grade"]["type"] == "classification"


def test_new_type_is_segmented_from_its_labelled_cases(
    hope_url: str, labelled: list[StoredStack], query: StoredStack, client: DICOMwebClient,
    attachments: SeriesAttachments, spine_labels: dict[str, int],
) -> None:
    """Step 3: the new case, segmented against the named type, matches its truth; the result is kept with it."""
    response = _infer(hope_url, "fewshot_tumor", query.series_uid, "image", {"tumor_type": NEW_TYPE})
    assert response.status_code == 200, response.text
    label = read_nifti_bytes(response.content)
    image = series_volume(client, query.study_uid, query.series_uid)
    assert label.GetSize() == image.GetSize()
    predicted = sitk.GetArrayFromImage(label)
    assert set(np.unique(predicted).tolist()) <= {0, spine_labels["tumor"]}
    dice = _dice(predicted, query.stack.mask)
    # shipped weights: 0.60 with self-support, 0.65 without (0.73 before the anatomy features); one query of one
    # type: the held-out phantom types' 30-episode figure (0.73 with it, 0.67 without) is the measure
    assert dice >= 0.55, f"few-shot Dice {dice:.2f} on the new type"

    kept = attachments.get(query.series_uid, attachment_name("fewshot_tumor"))
    assert kept is not None and kept["series_uid"] == query.series_uid
    result = kept["result"]
    assert result["tumor_type"] == NEW_TYPE
    assert list(result["per_type"]) == [NEW_TYPE] and result["per_type"][NEW_TYPE]["support_cases"] == 3
    chordoma_series = {c.series_uid for c in labelled if c.stack.tumor_type == NEW_TYPE}
    assert {s["series_uid"] for s in result["support"]} == chordoma_series
    assert result["lesion"]["voxels"] == int(np.count_nonzero(predicted))
    serving = requests.get(f"{hope_url}/hope/models/fewshot_tumor/versions", timeout=30).json()["serving"]
    assert result["model_version"] == serving  # v0001, unless the admin refresh below has published one


def test_every_known_type_is_tried_without_a_named_type(
    hope_url: str, labelled: list[StoredStack], query: StoredStack
) -> None:
    """Without ``tumor_type`` the case is matched against every type with labelled cases."""
    response = _infer(hope_url, "fewshot_tumor", query.series_uid, "json", {})
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result["per_type"]) == {t.tumor_type for t in TYPES}
    assert result["tumor_type"] == "all"
    assert result["best_match"] == max(result["per_type"], key=lambda t: result["per_type"][t]["match"])
    assert result["lesion"]["voxels"] > 0


def test_new_case_is_graded_and_the_grade_kept_with_the_study(
    hope_url: str, labelled: list[StoredStack], query: StoredStack, attachments: SeriesAttachments, hope_tmp: Path
) -> None:
    """Step 3 and 4: grade probabilities and nearest types in the infer JSON, and the same kept in Orthanc; the
    lesion labels the server wrote on the way (the few-shot segmentation and the answer) do not stay behind."""
    response = _infer(hope_url, "tumor_grade", query.series_uid, "json", {"tumor_type": NEW_TYPE})
    assert response.status_code == 200, response.text
    result = response.json()
    assert set(result["probabilities"]) == {"benign", "borderline", "malignant"}
    assert sum(result["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    assert result["grade"] == max(result["probabilities"], key=result["probabilities"].get) == "malignant"
    assert [t["tumor_type"] for t in result["nearest_types"]][0] == NEW_TYPE
    assert {t["tumor_type"] for t in result["nearest_types"]} == {t.tumor_type for t in TYPES}
    assert result["lesion"]["source"] == "fewshot_tumor"
    assert result["support"]["by_verdict"] == {"malignant": 3, "borderline": 2, "benign": 2}
    kept = attachments.get(query.series_uid, attachment_name("tumor_grade"))
    assert kept is not None
    assert kept["result"]["probabilities"] == result["probabilities"]
    poll(lambda: not list(hope_tmp.glob("hope-lesion-*")), 30, "the server to remove its lesion label files")


def test_an_uploaded_lesion_is_graded(
    hope_url: str, labelled: list[StoredStack], query: StoredStack, client: DICOMwebClient,
    spine_labels: dict[str, int],
) -> None:
    """A lesion the annotator drew is graded as sent."""
    image = series_volume(client, query.study_uid, query.series_uid)
    upload = nifti_bytes(query.stack.mask * spine_labels["tumor"], image)
    response = _infer(hope_url, "tumor_grade", query.series_uid, "json", {}, label=upload)
    assert response.status_code == 200, response.text
    result = response.json()
    assert result["lesion"]["source"] == "request"
    assert result["lesion"]["voxels"] == int(query.stack.mask.sum())


def test_a_new_support_case_counts_on_the_next_request(
    orthanc: OrthancSettings, hope_url: str, client: DICOMwebClient, labelled: list[StoredStack],
    query: StoredStack, spine_labels: dict[str, int],
) -> None:
    """Labelling and recording one more case of the type changes the very next answer, without retraining."""
    def chordoma_cases() -> int:
        response = _infer(hope_url, "fewshot_tumor", query.series_uid, "json", {"tumor_type": NEW_TYPE})
        assert response.status_code == 200, response.text
        return response.json()["per_type"][NEW_TYPE]["support_cases"]

    before = chordoma_cases()
    extra = store_stack(orthanc.url, NEW_TYPE, 1000, SPEC, auth=orthanc.auth)
    try:
        label_and_record(hope_url, extra, spine_labels["tumor"], NEW_TYPE, "malignant")
        assert chordoma_cases() == before + 1
    finally:  # the other tests count the demo's support cases: the extra case leaves the support set again
        deleted = requests.delete(f"{hope_url}/cases/{extra.study_uid}", params={"reason": "test case, removed"},
                                  headers={"X-HOPE-User": "demo"}, timeout=60)
    assert deleted.status_code == 200, deleted.text
    assert chordoma_cases() == before


def test_adaptation_steps_are_bounded(hope_url: str, labelled: list[StoredStack], query: StoredStack) -> None:
    """Fast adaptation runs when asked for with a type, and out-of-range requests are refused with a reason."""
    adapted = _infer(hope_url, "fewshot_tumor", query.series_uid, "json", {"tumor_type": NEW_TYPE, "adapt_steps": 2})
    assert adapted.status_code == 200, adapted.text
    assert adapted.json()["adapt_steps"] == 2
    too_many = _infer(hope_url, "fewshot_tumor", query.series_uid, "json", {"tumor_type": NEW_TYPE,
                                                                            "adapt_steps": 999})
    assert too_many.status_code == 422 and "adapt_steps" in too_many.text
    untyped = _infer(hope_url, "fewshot_tumor", query.series_uid, "json", {"adapt_steps": 1})
    assert untyped.status_code == 422 and "tumor_type" in untyped.text


def test_unknown_type_and_type_without_cases_are_refused(
    hope_url: str, labelled: list[StoredStack], query: StoredStack
) -> None:
    """An unknown type is a 422 listing the known ones; a known type without labelled cases is a 409."""
    unknown = _infer(hope_url, "fewshot_tumor", query.series_uid, "json", {"tumor_type": "dragon"})
    assert unknown.status_code == 422 and "dragon" in unknown.text and "chordoma" in unknown.text
    missing = _infer(hope_url, "fewshot_tumor", query.series_uid, "json", {"tumor_type": "schwannoma"})
    assert missing.status_code == 409 and "schwannoma" in missing.text and "/cases" in missing.text


def test_admin_refresh_trains_on_the_store_and_publishes_a_version(
    hope_url: str, labelled: list[StoredStack]
) -> None:
    """``POST /train/fewshot_tumor`` runs SSL on stored slices and meta-training on recorded types, shows its
    progress, and publishes a new version that then serves; out-of-bounds parameters are refused."""
    refused = requests.post(f"{hope_url}/train/fewshot_tumor", json={"ssl_steps": 10**9}, timeout=30)
    assert refused.status_code == 422 and "ssl_steps" in refused.text
    before = requests.get(f"{hope_url}/hope/models/fewshot_tumor/versions", timeout=30).json()
    started = requests.post(f"{hope_url}/train/fewshot_tumor", params={"enqueue": "true"},
                            json={"ssl_steps": 4, "meta_steps": 4, "slices_per_series": 2}, timeout=30)
    assert started.status_code == 200, started.text
    task = wait_for_training(hope_url, timeout=600)
    assert task["status"] == "DONE", task
    after = requests.get(f"{hope_url}/hope/models/fewshot_tumor/versions", timeout=30).json()
    assert len(after["versions"]) == len(before["versions"]) + 1
    newest = after["versions"][-1]
    assert after["serving"] == newest["version"]
    assert {"ssl_loss", "meta_loss"} <= set(newest["metrics"])
    assert newest["params"]["ssl_steps"] == 4
    stats = requests.get(f"{hope_url}/info/", timeout=30).json()["train_stats"]["fewshot_tumor"]
    assert stats["status"] == "COMPLETED" and stats["meta_types"] == sorted(t.tumor_type for t in TYPES)


def test_slicer_client_segments_and_grades(
    slicer: Any, labelled: list[StoredStack], query: StoredStack, attachments: SeriesAttachments
) -> None:
    """3D Slicer's MONAI Label client gets the lesion label and the grade, and the grade records who asked."""
    label_file, params = slicer.infer("fewshot_tumor", query.series_uid, {"tumor_type": NEW_TYPE})
    assert label_file and sitk.GetArrayFromImage(sitk.ReadImage(label_file)).any()
    assert params["tumor_type"] == NEW_TYPE
    grade_file, grade = slicer.infer("tumor_grade", query.series_uid, {})
    assert grade_file and set(grade["probabilities"]) == {"benign", "borderline", "malignant"}
    assert attachments.get(query.series_uid, attachment_name("tumor_grade"))["user"] == "slicer"
