"""The spine_mr task: its configuration, MR intensity normalisation, the store's per-modality label maps, modality
routing of training data, measurements in the infer answer and the SR written beside each stored SEG."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
import SimpleITK as sitk
import yaml
from pydicom.dataset import Dataset

from hope.config import REPO_ROOT, ConfigError, load_task
from hope.config.task import parse_task
from hope.datastore.label_maps import LabelMaps
from hope.datastore.measurement_reports import MeasurementReports
from hope.dicom.seg import SEGMENT_CODES, label_to_seg
from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.dicom.sr import sr_to_measurements
from hope.measure import measure_label_file
from hope.trainers.segmentation import training_cases
from hope.transforms import normalise_intensity
from tests.unit.test_spine_measurements import LABELS
from tests.unit.test_sr import SPACING, spine_label


@pytest.fixture(scope="module")
def spine_mr():
    return load_task("spine_mr")


def test_spine_mr_shares_spine_ct_names_and_values(spine_mr) -> None:
    spine_ct = load_task("spine_ct")
    assert spine_mr.modalities == ("MR",) and spine_ct.modalities == ("CT",)
    for name in (*(f"C{i}" for i in range(1, 8)), "tumor"):
        assert spine_mr.labels[name] == spine_ct.labels[name]
    assert {"cord", "canal", "disc_C2_C3", "disc_C7_T1"} <= set(spine_mr.labels)
    assert spine_mr.measurements == "spine" and spine_ct.measurements is None
    assert spine_mr.preprocessing.normalisation == "percentile" and spine_mr.preprocessing.intensity_range is None


def test_every_spine_mr_label_has_a_snomed_code(spine_mr) -> None:
    for name in spine_mr.labels:
        assert name in SEGMENT_CODES, name
        assert SEGMENT_CODES[name][1].scheme_designator == "SCT"


def test_percentile_normalisation_ignores_a_coil_gain_and_offset(spine_mr) -> None:
    rng = np.random.default_rng(0)
    volume = rng.gamma(2.0, 100.0, size=(1, 20, 20, 20)).astype(np.float32)
    normalise = normalise_intensity(spine_mr)
    plain = np.asarray(normalise({"image": volume.copy()})["image"])
    scaled = np.asarray(normalise({"image": volume * 3.7 + 250.0})["image"])
    np.testing.assert_allclose(plain, scaled, atol=1e-5)
    assert plain.min() == 0.0 and plain.max() == 1.0


def test_window_normalisation_keeps_hounsfield_units_fixed() -> None:
    data = yaml.safe_load((REPO_ROOT / "configs/tasks/spine_ct.yaml").read_text())
    data["preprocessing"] = {**data["preprocessing"], "normalisation": "window", "intensity_range": [-1000, 1500]}
    window = parse_task(data, "spine_ct.yaml")
    out = np.asarray(normalise_intensity(window)({"image": np.array([[[[-1000.0, 250.0, 1500.0, 3000.0]]]],
                                                                     np.float32)})["image"])
    np.testing.assert_allclose(out.ravel(), [0.0, 0.5, 1.0, 1.0], atol=1e-6)


@pytest.mark.parametrize(("preprocessing", "message"), [
    ({"normalisation": "zscore"}, "normalisation: expected one of window, percentile"),
    ({"normalisation": "percentile", "percentiles": [99, 1]}, "percentiles: upper bound must exceed"),
    ({"normalisation": "percentile", "percentiles": [-1, 99]}, r"expected 0 <= low < high <= 100"),
    ({"normalisation": "window"}, "intensity_range"),
])
def test_bad_normalisation_settings_are_refused(spine_mr, preprocessing: dict[str, Any], message: str) -> None:
    data = yaml.safe_load((REPO_ROOT / "configs/tasks/spine_mr.yaml").read_text())
    data["preprocessing"] = {k: v for k, v in data["preprocessing"].items()
                             if k not in ("normalisation", "percentiles")} | preprocessing
    with pytest.raises(ConfigError, match=message):
        parse_task(data, "spine_mr.yaml")


def test_unknown_measurements_are_refused() -> None:
    data = yaml.safe_load((REPO_ROOT / "configs/tasks/spine_mr.yaml").read_text()) | {"measurements": "liver"}
    with pytest.raises(ConfigError, match="measurements: expected one of spine"):
        parse_task(data, "spine_mr.yaml")


def test_the_store_reads_each_modality_with_its_task_labels(spine_mr) -> None:
    spine_ct = load_task("spine_ct")
    maps = LabelMaps.of_tasks([(t.name, t.modalities, t.labels) for t in (spine_ct, spine_mr)])
    assert maps.of("CT") == spine_ct.labels and maps.of("MR") == spine_mr.labels
    assert maps.of("DX") == spine_ct.labels and maps.of(None) == spine_ct.labels  # the first task's by default
    assert maps.value_of("tumor", ["CT", "MR"]) == 9
    with pytest.raises(ValueError, match="'cord' is not a label of the store's CT SEGs"):
        maps.value_of("cord", ["CT", "MR"])
    with pytest.raises(ValueError, match="different values"):
        LabelMaps({"a": 1}, {"CT": {"a": 1}, "MR": {"a": 2}}).value_of("a", ["CT", "MR"])


def test_two_tasks_with_different_labels_for_one_modality_are_refused(spine_mr) -> None:
    with pytest.raises(ValueError, match="both annotate MR with different labels"):
        LabelMaps.of_tasks([("spine_mr", ("MR",), spine_mr.labels), ("other", ("MR",), {"cord": 1})])


def test_a_task_trains_only_on_labels_of_its_modalities(tmp_path: Path, spine_mr) -> None:
    label = sitk.GetImageFromArray(np.full((4, 4, 4), spine_mr.labels["C3"], np.uint8))
    path = str(tmp_path / "label.nii.gz")
    sitk.WriteImage(label, path)
    items = [{"image": "ct", "label": path, "modality": "CT"}, {"image": "mr", "label": path, "modality": "MR"},
             {"image": "local", "label": path}]
    kept, skipped = training_cases(items, spine_mr)
    assert [item["image"] for item in kept] == ["mr", "local"] and skipped == []


def test_a_label_file_is_measured_in_its_own_frame(tmp_path: Path) -> None:
    label = sitk.GetImageFromArray(spine_label())
    label.SetSpacing(SPACING)
    path = tmp_path / "pred.nii.gz"
    sitk.WriteImage(label, str(path))
    measured = measure_label_file(path, LABELS).as_dict()
    assert [level["level"] for level in measured["levels"]] and measured["cobb_c2_c7_deg"] is not None


class Store:
    """Stores what it is given, or refuses with an answer like a DICOMweb STOW-RS failure."""

    def __init__(self, refuse: bool = False) -> None:
        self.stored: list[Dataset] = []
        self.refuse = refuse

    def __call__(self, datasets: list[Dataset]) -> dict[str, Any]:
        if self.refuse:
            return {"FailedSOPSequence": [{"FailureReason": 272}]}
        self.stored.extend(datasets)
        return {}


def _seg_and_sources() -> tuple[sitk.Image, Dataset, list[Dataset]]:
    array = spine_label()
    sources = volume_to_datasets(np.zeros(array.shape, np.int16), SPACING, new_identity("SR-REPORTS"))
    seg = label_to_seg(array, sources, LABELS, content_creator="anna")
    seg.OperatorsName = "anna"
    image = sitk.GetImageFromArray(array)
    image.SetSpacing(SPACING)
    return image, seg, sources


def test_a_stored_seg_gets_its_measurement_report() -> None:
    store = Store()
    reports = MeasurementReports(store, {"MR"})
    label, seg, sources = _seg_and_sources()
    future = reports.seg_stored("1.2.3", "MR", seg, label, LABELS, sources)
    assert future is not None and future.result(timeout=60).startswith("stored ")
    (sr,) = store.stored
    assert reports.outcome(str(seg.SeriesInstanceUID)) == f"stored {sr.SeriesInstanceUID}"
    assert sr.StudyInstanceUID == seg.StudyInstanceUID and sr.OperatorsName == "anna"
    evidence = {str(series.SeriesInstanceUID) for study in sr.CurrentRequestedProcedureEvidenceSequence
                for series in study.ReferencedSeriesSequence}
    assert evidence == {str(seg.SeriesInstanceUID), str(sources[0].SeriesInstanceUID)}
    assert sr_to_measurements(sr)["levels"]
    again = reports.seg_stored("1.2.3", "MR", seg, label, LABELS, sources)
    assert again is not None and again.result(timeout=60) == f"stored {sr.SeriesInstanceUID}"  # same UIDs
    reports.close()


def test_other_modalities_and_refusals_are_reported_not_raised() -> None:
    label, seg, sources = _seg_and_sources()
    reports = MeasurementReports(Store(refuse=True), {"MR"})
    assert reports.seg_stored("1.2.3", "CT", seg, label, LABELS, sources) is None
    future = reports.seg_stored("1.2.3", "MR", seg, label, LABELS, sources)
    assert future is not None and "refused" in future.result(timeout=60)
    empty = sitk.GetImageFromArray(np.zeros((4, 4, 4), np.uint8))
    nothing = reports.seg_stored("1.2.3", "MR", seg, empty, LABELS, sources)
    assert nothing is not None and nothing.result(timeout=60).startswith("not written: no spine measurement")
    reports.close()
