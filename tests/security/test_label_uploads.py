"""Hostile, damaged and repeated label uploads (``PUT /datastore/label``) against a real HOPE server and Orthanc.

Each test is a regression test of a finding of issue 12. Before HOPE's own route and its checked label files, a
truncated label was stored as the final SEG with wrong voxels; a 352-byte header or a gzip bomb grew the server by
the volume it declared; an oversized upload was read whole; a retried save stored a second SEG; a store that could
not write was answered 200 (the label lost); and every failed upload left its file in the temp folder for good.

The module starts its own Orthanc, whose storage refuses writes while a flag file exists (a Python plugin,
``orthanc_refusing_storage.py``), and its own HOPE server, with ``http.max_upload_mb: 1`` and a temp folder
(``TMPDIR``) of its own. Every test asserts the answer, that Orthanc holds no new instance unless one was meant to
be stored, and that the server left no file in its temp folder and no work folder in its cache.
"""

from __future__ import annotations

import gzip
import threading
import time
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
import SimpleITK as sitk

from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.processes.orthanc import PLUGIN_DIR, PLUGINS, PYTHON_PLUGIN, OrthancSettings, orthanc_process
from hope.processes.process import ManagedProcess, free_port
from tests.conftest import running_hope
from tests.integration.helpers import nifti_bytes, nifti_header_only, orthanc_instances, seg_series, series_volume

pytestmark = pytest.mark.slow

STORAGE_SCRIPT = Path(__file__).with_name("orthanc_refusing_storage.py")
TIMEOUT = 120
MiB = 1 << 20
#: The most the server's memory may grow while it refuses a bomb (it grew by the declared volume, 512 MB-1 GB).
BOMB_GROWTH_MIB = 150


@dataclass
class Stack:
    """The module's Orthanc and HOPE server, and where to look for what they wrote."""

    url: str
    orthanc: OrthancSettings
    server: ManagedProcess
    temp: Path
    cache: Path
    refuse_flag: Path

    def instances(self) -> int:
        """How many instances Orthanc holds."""
        return orthanc_instances(self.orthanc)

    def segs(self) -> set[str]:
        """The SEG series in Orthanc."""
        return {str(ds.SeriesInstanceUID) for ds in seg_series(self.orthanc.dicomweb_client())}

    def leftovers(self) -> set[str]:
        """Files in the server's temp folder, and work folders in its cache."""
        return {p.name for p in self.temp.iterdir()} | {str(p) for p in self.cache.rglob(".saving-*")}

    def rss_kib(self) -> int:
        """The server's resident memory."""
        assert self.server.process is not None
        status = Path(f"/proc/{self.server.process.pid}/status").read_text()
        return next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """Orthanc with a storage that can be made to refuse writes, and HOPE with its own temp folder."""
    if not PYTHON_PLUGIN.exists():
        pytest.skip(f"{PYTHON_PLUGIN} is missing (apt-get install orthanc-python)")
    root = tmp_path_factory.mktemp("label-uploads")
    (root / "files").mkdir()
    plugins = [str(PLUGIN_DIR / p) for p in PLUGINS if (PLUGIN_DIR / p).exists()] + [str(PYTHON_PLUGIN)]
    refuse_flag = root / "refuse-writes"
    orthanc = OrthancSettings(
        data_dir=root / "orthanc", http_port=free_port(), dicom_port=free_port(), stable_age=1,
        overrides={"Plugins": plugins, "PythonScript": str(STORAGE_SCRIPT),
                   "HopeTestStorage": {"Root": str(root / "files"), "RefuseFlag": str(refuse_flag)}},
    )
    orthanc_service = orthanc_process(orthanc)
    orthanc_service.start(timeout=60)
    temp = root / "server-tmp"
    temp.mkdir()
    data = root / "hope"
    try:
        with running_hope(orthanc, data, {"TMPDIR": str(temp)}, http={"max_upload_mb": 1}) as (url, server):
            yield Stack(url, orthanc, server, temp, data / "cache", refuse_flag)
    finally:
        orthanc_service.stop()


@dataclass(frozen=True)
class Series:
    """A CT series stored for one test, and a label on its grid."""

    uid: str
    reference: sitk.Image
    label: np.ndarray

    def nifti(self, label: np.ndarray | None = None) -> bytes:
        """The label (or ``label``) as ``.nii.gz`` bytes on the series' grid."""
        return nifti_bytes(self.label if label is None else label, self.reference)


@pytest.fixture
def series(stack: Stack, spine_labels: dict[str, int]) -> Series:
    """A new 16-slice CT in Orthanc (nothing else about it is stored) and a label of one structure on its grid."""
    volume = np.full((16, 64, 64), -500, dtype=np.int16)
    datasets = volume_to_datasets(volume, (0.7, 0.7, 2.0), new_identity("SEC-LABEL"))
    client = stack.orthanc.dicomweb_client()
    client.store_instances(datasets)
    ds = datasets[0]
    label = np.zeros(volume.shape, dtype=np.uint8)
    label[4:9, 20:40, 24:44] = next(iter(spine_labels.values()))
    return Series(str(ds.SeriesInstanceUID), series_volume(client, ds.StudyInstanceUID, ds.SeriesInstanceUID), label)


@pytest.fixture
def untouched(stack: Stack, series: Series) -> Iterator[None]:
    """Asserts, after the test, that Orthanc holds no new instance and the server left no file behind."""
    instances, leftovers = stack.instances(), stack.leftovers()
    yield
    assert stack.instances() == instances, "something was written in Orthanc"
    assert stack.leftovers() == leftovers, f"left behind: {sorted(stack.leftovers() - leftovers)}"


def _put(stack: Stack, uid: str, data: bytes, filename: str = "label.nii.gz", params: str = "{}"
         ) -> requests.Response:
    return requests.put(f"{stack.url}/datastore/label", params={"image": uid, "tag": "final"},
                        files={"label": (filename, data, "application/octet-stream")}, data={"params": params},
                        timeout=TIMEOUT)


def _gzip(head: bytes, zeros: int) -> bytes:
    """``head`` then ``zeros`` zero bytes, gzip-compressed without holding them in memory."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 31)
    parts = [compressor.compress(head)]
    block = bytes(16 * MiB)
    parts += [compressor.compress(block) for _ in range(zeros // len(block))]
    return b"".join(parts) + compressor.flush()


def _growth_during(stack: Stack, request: Callable[[], requests.Response]) -> tuple[requests.Response, float]:
    """The answer to ``request`` and how much the server's resident memory grew meanwhile (MiB, sampled)."""
    baseline = peak = stack.rss_kib()
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, stack.rss_kib())
            time.sleep(0.005)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        response = request()
    finally:
        done.set()
        sampler.join()
    return response, (peak - baseline) / 1024


# --------------------------------------------------------------------------------------------- damaged uploads
@pytest.mark.usefixtures("untouched")
def test_a_truncated_label_is_refused(stack: Stack, series: Series) -> None:
    """A truncated .nii.gz was stored as the final SEG, with the missing voxels read as background."""
    data = series.nifti()
    response = _put(stack, series.uid, data[: len(data) * 2 // 3])
    assert response.status_code == 422, response.text
    assert "truncated" in response.json()["detail"]


@pytest.mark.usefixtures("untouched")
def test_a_label_with_data_after_its_voxels_is_refused(stack: Stack, series: Series) -> None:
    """A label on the grid followed by 64 MB of zeros (a bomb SimpleITK never noticed) was stored."""
    response = _put(stack, series.uid, _gzip(gzip.decompress(series.nifti()), 64 * MiB))
    assert response.status_code == 422, response.text
    assert "holds more data than" in response.json()["detail"]


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize(
    ("filename", "params", "reason"),
    [("label.bin", "{}", "the .bin label has 100 bytes"), ("label.nii.gz", "{not json", "params must be a JSON")],
    ids=["bin-of-the-wrong-size", "invalid-params"],
)
def test_malformed_saves_are_refused_with_a_reason(stack: Stack, series: Series, filename: str, params: str,
                                                   reason: str) -> None:
    """Both answered 500, and left the upload in the temp folder."""
    response = _put(stack, series.uid, bytes(100), filename=filename, params=params)
    assert response.status_code == 422, response.text
    assert reason in response.json()["detail"]


# ----------------------------------------------------------------------------------------------- bombs, sizes
@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("kind", ["header-only", "gzip-bomb"])
def test_a_bomb_is_refused_quickly_without_memory_growth(stack: Stack, series: Series, kind: str) -> None:
    """352 bytes declaring 1 GB, or 0.5 MB of gzip holding 512 MB: the server grew by the declared volume."""
    if kind == "header-only":
        filename, data = "label.nii", nifti_header_only((1024, 1024, 512), np.int16)
    else:
        filename, data = "label.nii.gz", _gzip(nifti_header_only((1024, 1024, 512), np.uint8), 512 * MiB)
    assert len(data) < MiB
    started = time.monotonic()
    response, growth = _growth_during(stack, lambda: _put(stack, series.uid, data, filename=filename))
    assert response.status_code == 422, response.text
    assert "does not lie on the grid" in response.json()["detail"]
    assert time.monotonic() - started < 10
    assert growth < BOMB_GROWTH_MIB, f"the server grew by {growth:.0f} MiB"


@pytest.mark.usefixtures("untouched")
@pytest.mark.parametrize("size_mib", [1.5, 3], ids=["label-over-the-limit", "body-over-the-limit"])
def test_an_oversized_upload_is_refused_with_413(stack: Stack, series: Series, size_mib: float) -> None:
    """``max_upload_mb: 1``: the upload was read whole, whatever its size."""
    data = np.random.default_rng(0).integers(0, 256, int(size_mib * MiB), dtype=np.uint8).tobytes()
    response = _put(stack, series.uid, data)
    assert response.status_code == 413, response.text
    assert "max_upload_mb" in response.json()["detail"]


# --------------------------------------------------------------------------------- verified, idempotent saves
def test_a_repeated_save_stores_one_seg(stack: Stack, series: Series) -> None:
    """A retried save (after a 500 or a timeout) stored a second SEG; so did two identical saves at once."""
    segs, leftovers = stack.segs(), stack.leftovers()
    for _ in range(2):
        response = _put(stack, series.uid, series.nifti())
        assert response.status_code == 200, response.text
    first = stack.segs() - segs
    assert len(first) == 1

    other = series.label.copy()
    other[10:12] = other[4:6]
    results: list[requests.Response] = []
    threads = [threading.Thread(target=lambda: results.append(_put(stack, series.uid, series.nifti(other))))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert [r.status_code for r in results] == [200, 200], [r.text for r in results]
    assert len(stack.segs() - segs - first) == 1
    assert stack.leftovers() == leftovers


def test_a_store_that_cannot_write_is_a_502_not_a_lost_label(stack: Stack, series: Series) -> None:
    """Orthanc whose storage cannot write answers 200 with empty sequences; HOPE answered 200 and lost the label."""
    instances, leftovers = stack.instances(), stack.leftovers()
    stack.refuse_flag.touch()
    try:
        response = _put(stack, series.uid, series.nifti())
    finally:
        stack.refuse_flag.unlink()
    assert response.status_code == 502, response.text
    assert "did not store the SEG" in response.json()["detail"]
    assert stack.instances() == instances and stack.leftovers() == leftovers
    final = requests.get(f"{stack.url}/datastore/label", params={"label": series.uid, "tag": "final"},
                         timeout=TIMEOUT)
    assert final.status_code == 404, final.text

    response = _put(stack, series.uid, series.nifti())  # the same save, once the store can write again
    assert response.status_code == 200, response.text
    assert stack.instances() == instances + 1
