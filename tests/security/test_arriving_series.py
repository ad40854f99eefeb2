"""A series still arriving in Orthanc is never served truncated (issue 12, data integrity).

A 112-slice CT sent one instance at a time was fetched mid-transfer (by the background scorer, or an inference) and
cached with 45 slices for good: inference ran on 45, and saving a label on the real grid failed with a 422. Here a
phantom CT is sent by STOW-RS one instance at a time, faster than the test Orthanc's StableAge (1 s) lets it settle,
while the listing and inference are requested; once the series is whole, inference must run on all of it.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.phantoms import generate_neck_ct
from hope.processes.orthanc import OrthancSettings
from tests.integration.helpers import poll, read_nifti_bytes

pytestmark = pytest.mark.slow

#: Seconds between two instances: less than the test Orthanc's StableAge, so the series is not stable meanwhile.
DELAY_S = 0.4
TIMEOUT = 300


def test_a_series_still_arriving_is_refused_then_served_whole(
    orthanc: OrthancSettings, hope_url: str, spine_labels: dict[str, int]
) -> None:
    phantom = generate_neck_ct(733, spine_labels)
    datasets = volume_to_datasets(phantom.image, phantom.spacing, new_identity("SEC-ARRIVING"))
    uid = str(datasets[0].SeriesInstanceUID)
    orthanc.dicomweb_client().store_instances(datasets[:1])

    def send_the_rest() -> None:
        client = orthanc.dicomweb_client()
        for ds in datasets[1:]:
            time.sleep(DELAY_S)
            client.store_instances([ds])

    answers: list[tuple[int, str]] = []
    with ThreadPoolExecutor(max_workers=1) as pool:
        sending = pool.submit(send_the_rest)
        while not sending.done():
            listing = requests.get(f"{hope_url}/datastore/", params={"output": "all"}, timeout=TIMEOUT)
            assert listing.status_code == 200, listing.text[:300]
            response = requests.post(f"{hope_url}/infer/spine_ct", params={"image": uid, "output": "json"},
                                     timeout=TIMEOUT)
            answers.append((response.status_code, response.text[:300]))
        sending.result()

    def inferred() -> requests.Response | None:
        response = requests.post(f"{hope_url}/infer/spine_ct", params={"image": uid, "output": "image"},
                                 timeout=TIMEOUT)
        return None if response.status_code == 409 else response

    response = poll(inferred, timeout=120, what=f"inference on the whole series {uid}", interval=1.0)
    assert response.status_code == 200, response.text[:300]
    slices = read_nifti_bytes(response.content).GetSize()[2]
    assert slices == len(datasets), f"inference ran on {slices} of the series' {len(datasets)} slices"

    assert {status for status, _ in answers} <= {200, 409}, answers
    refused = [text for status, text in answers if status == 409]
    assert refused, f"no inference was refused while the series arrived: {answers}"
    assert all("still arriving" in text and "try again in a few seconds" in text for text in refused), refused
