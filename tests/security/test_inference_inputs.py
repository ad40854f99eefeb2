"""Inference on a series a task was not made for is refused with a reason, not answered with the wrong model."""

from __future__ import annotations

import pytest
import requests

from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.phantoms import generate_neck_ct
from hope.processes.orthanc import OrthancSettings
from tests.integration.helpers import poll

pytestmark = pytest.mark.slow


def test_task_refuses_a_modality_it_was_not_trained_for(
    hope_url: str, orthanc: OrthancSettings, spine_labels: dict[str, int]
) -> None:
    """``/infer/spine_ct`` on an MR series answered 200 with the CT model's output."""
    phantom = generate_neck_ct(321, spine_labels)
    mr = volume_to_datasets(phantom.image[:8], phantom.spacing, new_identity("SEC-MR", modality="MR"))
    orthanc.dicomweb_client().store_instances(mr)
    uid = mr[0].SeriesInstanceUID

    def listed() -> bool | None:
        listing = requests.get(f"{hope_url}/datastore/", params={"output": "all"}, timeout=30).json()
        return True if uid in listing.get("objects", {}) else None

    poll(listed, timeout=30, what="the MR series to be listed")
    for model in ("spine_ct", "spine_ct_scribbles", "fewshot_tumor"):
        response = requests.post(f"{hope_url}/infer/{model}", params={"image": uid, "output": "json"}, timeout=60)
        assert response.status_code == 422, (model, response.status_code, response.text[:300])
        detail = response.json()["detail"]
        assert f"series {uid} is MR" in detail and "annotates CT" in detail, detail
