"""spine_mr end to end on real MR: real cervical-spine scans written as DICOM MR series, stored in a real Orthanc,
segmented and measured by a real HOPE server, and a final label's measurements stored as a DICOM SR in the study.

The scans are ``../shared/data/mr-cervical-spine-tptbox`` (a sagittal T2, stored as sagittal slices, with vertebrae,
discs and thecal sac labels) and ``mr-cervical-cord`` (an axial-stacked T2 of another subject, with a manual cord
mask). The Dice of the served model against their labels is written to ``test-artifacts/spine_mr_real_dice.json``
(the README quotes it); no threshold is asserted here (see ``scripts/bench_real.py`` for the floors).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import requests
import SimpleITK as sitk
from dicomweb_client import DICOMwebClient
from pydicom.dataset import Dataset

from hope.benchmarks.real_cases import THECAL_SAC, load_scans, read_labels
from hope.benchmarks.real_supervised import task_values
from hope.config import REPO_ROOT, load_task
from hope.demo import store_phantom, store_volume
from hope.dicom.series_writer import new_identity
from hope.dicom.sr import sr_to_measurements
from hope.measure import measure_spine
from hope.phantoms import generate_neck_ct
from hope.processes.orthanc import OrthancSettings

from .helpers import assert_on_grid, nifti_bytes, poll, put_label, read_nifti_bytes, series_volume

pytestmark = pytest.mark.slow

ARTIFACT = REPO_ROOT / "test-artifacts" / "spine_mr_real_dice.json"
TPTBOX_CORD = 60  # TPTBox's cord value in its sub-region label file


@dataclass(frozen=True)
class RealMr:
    """A real MR stored in Orthanc, and its reference structures on the stored series' grid.

    ``reference`` holds structure ``i`` of ``structures`` as value ``i + 1``; ``label`` is an annotator's spine_mr
    label of the scan (the reference's levels, discs, cord and CSF as spine_mr values).
    """

    name: str
    study_uid: str
    series_uid: str
    structures: tuple[str, ...]
    reference: sitk.Image
    label: sitk.Image

    def on(self, image: sitk.Image, grid: sitk.Image) -> np.ndarray:
        """``image`` (``reference`` or ``label``) resampled (nearest neighbour) onto ``grid``, e.g. the stored
        series as read back."""
        return sitk.GetArrayFromImage(sitk.Resample(image, grid, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                    sitk.sitkUInt8))


def _real(shared: Path, name: str) -> tuple[sitk.Image, tuple[str, ...], sitk.Image, sitk.Image]:
    """A real scan of :mod:`hope.benchmarks.real_cases`: its image, structure names, reference and spine_mr label.

    The label takes each structure's spine_mr value; a thecal sac is the ``canal`` with the cord of the scan's own
    cord label inside (TPTBox's value 60, a third of the cord: the benchmark scores the sac, but an annotator's
    label may hold any cord; the SR test checks that the report holds the label's measurements).
    """
    (loaded,) = load_scans(shared, {name})
    labels = load_task("spine_mr").labels
    shape = sitk.GetArrayFromImage(loaded.image).shape
    reference, label = np.zeros(shape, np.uint8), np.zeros(shape, np.uint8)
    for index, (structure, mask) in enumerate(loaded.masks.items()):
        reference[mask] = index + 1
        label[mask] = labels["canal" if structure == THECAL_SAC else structure]
    if THECAL_SAC in loaded.masks:
        for array in read_labels(loaded.scan, shared, loaded.image).values():
            label[loaded.masks[THECAL_SAC] & (array == TPTBOX_CORD)] = labels["cord"]
    images = []
    for array in (reference, label):
        images.append(sitk.GetImageFromArray(array))
        images[-1].CopyInformation(loaded.image)
    return loaded.image, tuple(loaded.masks), *images


def _store(orthanc: OrthancSettings, name: str, image: sitk.Image, structures: tuple[str, ...],
           reference: sitk.Image, label: sitk.Image, orientation: str) -> RealMr:
    """The scan in LPS index order (so its grid is the stored series'), stored as ``orientation`` MR slices."""
    image, reference, label = (sitk.DICOMOrient(i, "LPS") for i in (image, reference, label))
    identity = new_identity(f"REAL-MR-{name}", modality="MR", study_description="HOPE real MR test",
                            series_description=f"{name} T2")
    store_volume(orthanc.url, sitk.GetArrayFromImage(image).astype(np.int16), image.GetSpacing(), identity,
                 auth=orthanc.auth, orientation=orientation, origin=image.GetOrigin())
    return RealMr(name, identity.study_instance_uid, identity.series_instance_uid, structures, reference, label)


@pytest.fixture(scope="module")
def real_mr(orthanc: OrthancSettings, shared_data: Path) -> dict[str, RealMr]:
    """Both real MR scans in Orthanc: TPTBox as sagittal slices (as acquired), the cord case as axial slices."""
    return {
        "tptbox": _store(orthanc, "tptbox", *_real(shared_data, "mr-t2-tptbox"), orientation="sagittal"),
        "cervical-cord": _store(orthanc, "cervical-cord", *_real(shared_data, "mr-t2-cord"), orientation="axial"),
    }


@pytest.fixture(scope="module")
def client(orthanc: OrthancSettings) -> DICOMwebClient:
    return orthanc.dicomweb_client()


def _dice(a: np.ndarray, b: np.ndarray) -> float:
    total = int(a.sum() + b.sum())
    return 2.0 * float(np.logical_and(a, b).sum()) / total if total else 1.0


def test_spine_mr_is_served_for_mr_only(hope_url: str, orthanc: OrthancSettings, spine_labels: dict[str, int],
                                        real_mr: dict[str, RealMr]) -> None:
    """/info/ lists spine_mr with its labels; each task refuses the other's modality with a 422 naming the right one."""
    info = requests.get(f"{hope_url}/info/", timeout=60).json()
    assert info["models"]["spine_mr"]["labels"] == load_task("spine_mr").labels
    mr = real_mr["tptbox"].series_uid
    wrong = requests.post(f"{hope_url}/infer/spine_ct", params={"image": mr}, timeout=120)
    assert wrong.status_code == 422 and re.search(r"is MR: use .*\bspine_mr\b", wrong.json()["detail"]), wrong.text
    ct = store_phantom(orthanc.url, generate_neck_ct(61, spine_labels), "SPINE-MR-CT", auth=orthanc.auth)
    wrong = requests.post(f"{hope_url}/infer/spine_mr", params={"image": ct.series_uid}, timeout=120)
    assert wrong.status_code == 422 and re.search(r"is CT: use .*\bspine_ct\b", wrong.json()["detail"]), wrong.text


def test_real_mr_suggestions_are_on_the_series_grid_and_measured(
    hope_url: str, client: DICOMwebClient, real_mr: dict[str, RealMr]
) -> None:
    """Inference on both real MR series, sagittal and axial: the label lies on the series' grid, the JSON answer
    carries the measurements, and the Dice per reference structure is recorded."""
    labels = load_task("spine_mr").labels
    report: dict[str, dict[str, float]] = {}
    for case in real_mr.values():
        answer = requests.post(f"{hope_url}/infer/spine_mr", params={"image": case.series_uid, "output": "image"},
                               timeout=900)
        assert answer.status_code == 200, answer.text
        label = read_nifti_bytes(answer.content)
        image = series_volume(client, case.study_uid, case.series_uid)
        assert_on_grid(label, image)
        predicted, reference = sitk.GetArrayFromImage(label), case.on(case.reference, image)
        report[case.name] = {name: _dice(np.isin(predicted, task_values(name, labels)), reference == index + 1)
                             for index, name in enumerate(case.structures) if (reference == index + 1).any()}
        assert set(report[case.name]) and all(0.0 <= d <= 1.0 for d in report[case.name].values())
        measured = requests.post(f"{hope_url}/infer/spine_mr", params={"image": case.series_uid, "output": "json"},
                                 timeout=900)
        assert measured.status_code == 200, measured.text
        assert {"levels", "discs", "cobb_c2_c7_deg", "skipped"} <= set(measured.json()["measurements"])
    served = requests.get(f"{hope_url}/hope/models/spine_mr/versions", timeout=60).json()
    ARTIFACT.parent.mkdir(exist_ok=True)
    ARTIFACT.write_text(json.dumps({"dice": report, "model": served}, indent=1, default=str))


def test_a_final_mr_label_is_stored_with_its_measurement_report(
    hope_url: str, client: DICOMwebClient, real_mr: dict[str, RealMr]
) -> None:
    """The annotator's final label of the sagittal scan becomes a SEG, then an SR in the same study that references
    the SEG and holds the label's measurements."""
    case = real_mr["tptbox"]
    image = series_volume(client, case.study_uid, case.series_uid)
    final = case.on(case.label, image)
    labels = load_task("spine_mr").labels
    assert {"cord", "canal"} <= {name for name, value in labels.items() if (final == value).any()}
    saved = put_label(hope_url, case.series_uid, nifti_bytes(final, image))
    assert saved.status_code == 200, saved.text

    def reports() -> list[Dataset]:
        found = client.search_for_series(case.study_uid, search_filters={"Modality": "SR"})
        return [Dataset.from_json(item) for item in found]

    (sr_series,) = poll(reports, timeout=120, what="the measurement SR in the study")
    (sr,) = client.retrieve_series(case.study_uid, str(sr_series.SeriesInstanceUID))
    (seg_series,) = [Dataset.from_json(item) for item in
                     client.search_for_series(case.study_uid, search_filters={"Modality": "SEG"})]
    evidence = {str(series.SeriesInstanceUID) for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence}
    assert evidence == {case.series_uid, str(seg_series.SeriesInstanceUID)}
    stored = sr_to_measurements(sr)
    expected = measure_spine(final, labels, image.GetSpacing(), image.GetDirection()).as_dict()
    assert [level["level"] for level in stored["levels"]] == [level["level"] for level in expected["levels"]]
    for got, want in zip(stored["levels"], expected["levels"], strict=True):
        assert got["canal_area_mm2"] == pytest.approx(want["canal_area_mm2"], rel=1e-3)
        assert got["cord_area_mm2"] == pytest.approx(want["cord_area_mm2"], rel=1e-3)
