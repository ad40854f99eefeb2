"""A store of hundreds of series (``scripts/bench_store_scale.py``, scaled down): HOPE counts what Orthanc holds.

A module Orthanc is filled with 500 tiny series (studies of 3 CT series, about 20% with a SEG) through its REST API;
HOPE's ``GET /datastore/?output=stats`` must match Orthanc's own answer (QIDO-RS series counts, and the image
series the SEGs reference, read from each SEG's metadata), after a restart (SEG references read from the cache
file) too, and a SEG stored directly in Orthanc must be counted. No timing is asserted.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pydicom.dataset import Dataset

from hope.benchmarks.store_fill import StoreFiller, plan_store, upload
from hope.datastore.orthanc import SEG_REFERENCES_FILE
from hope.dicom.seg import seg_referenced_series_uid
from hope.processes.orthanc import OrthancSettings, orthanc_process
from hope.processes.process import free_port

from ..conftest import running_hope

pytestmark = pytest.mark.slow
SERIES = 500


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[OrthancSettings, list[str]]]:
    """An Orthanc holding :data:`SERIES` series; the unlabelled image series."""
    settings = OrthancSettings(data_dir=tmp_path_factory.mktemp("scale-orthanc"), http_port=free_port(),
                               dicom_port=free_port(), stable_age=1)
    process = orthanc_process(settings)
    process.start(timeout=60)
    plan = plan_store(SERIES, "SCALE-TEST", seed=1)
    upload(settings.url, settings.auth, plan, StoreFiller(seed=1), threads=4)
    yield settings, [p.identity.series_instance_uid for p in plan.images if not p.seg_uid]
    process.stop()


def _orthanc_counts(orthanc: OrthancSettings) -> tuple[int, int]:
    """(image series, image series with a SEG) as Orthanc itself answers them."""
    client = orthanc.dicomweb_client()
    images = {str(s["0020000E"]["Value"][0]) for s in client.search_for_series(search_filters={"Modality": "CT"},
                                                                               get_remaining=True)}
    labelled = set()
    for seg in client.search_for_series(search_filters={"Modality": "SEG"}, get_remaining=True):
        meta = client.retrieve_series_metadata(seg["0020000D"]["Value"][0], seg["0020000E"]["Value"][0])
        labelled.add(seg_referenced_series_uid(Dataset.from_json(meta[0])))
    return len(images), len(labelled & images)


def _stats(url: str) -> tuple[int, int]:
    answer = requests.get(f"{url}/datastore/?output=stats", timeout=120).json()
    return answer["total"], answer["completed"]


def test_hope_counts_what_orthanc_holds(filled: tuple[OrthancSettings, list[str]], tmp_path: Path) -> None:
    orthanc, unlabelled = filled
    expected = _orthanc_counts(orthanc)
    assert expected[0] > 300 and expected[1] > 50  # the mix of the plan, stored
    with running_hope(orthanc, tmp_path) as (url, _):
        assert _stats(url) == expected
        strategy = requests.post(f"{url}/activelearning/random", json={"client_id": "scale"}, timeout=120).json()
        assert strategy["id"] in set(unlabelled)
    assert (tmp_path / "cache" / SEG_REFERENCES_FILE).exists()

    filler = StoreFiller(seed=2)
    extra = plan_store(4, "SCALE-EXTRA", seed=3, seg_fraction=1.0)  # a new study whose series are labelled
    upload(orthanc.url, orthanc.auth, extra, filler, threads=1)
    expected = _orthanc_counts(orthanc)
    with running_hope(orthanc, tmp_path) as (url, _):  # restarted: SEG references come from the cache file
        deadline = time.monotonic() + 30
        while _stats(url) != expected and time.monotonic() < deadline:
            time.sleep(0.5)
        assert _stats(url) == expected
