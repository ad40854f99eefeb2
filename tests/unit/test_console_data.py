"""The console's numbers, from HOPE's own records, without a server (hope.console_data)."""

from __future__ import annotations

import copy
import re
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from pydicom.dataset import Dataset

from hope.activelearning import SeriesScores
from hope.audit import AuditAction, AuditLog
from hope.console_data import (
    LEVELS,
    NOT_REPORTED,
    STATES,
    classify,
    created,
    histogram,
    is_measurement_report,
    new_final_labels,
    newest_report,
    no_report_reason,
    page,
    report_answer,
    saved_labels,
    score_distribution,
    state_counts,
    support_per_type,
    team_stats,
)
from hope.datastore.measurement_reports import SR_SERIES_NUMBER
from hope.dicom.seg import label_to_seg
from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.dicom.sr import measurements_to_sr
from hope.measure import SpineMeasurements, measure_spine
from hope.review import ReviewBook, ReviewState
from tests.unit.test_spine_measurements import LABELS
from tests.unit.test_sr import SHAPE, SPACING, spine_label, written


@dataclass(frozen=True)
class Listed:
    uid: str
    study_uid: str
    modality: str
    date: str = "20240101"
    time: str = "120000"


def test_each_series_gets_one_state_in_order_of_precedence() -> None:
    records = [Listed(f"1.{i}", f"9.{i}", "CT", time=f"12000{i}") for i in range(6)]
    rows = classify(records, flagged={"1.0": ["2 slices"]}, finals={"1.0", "1.2"},
                    reviews={"1.1": ReviewState.REJECTED, "1.2": ReviewState.APPROVED},
                    suggestions={"1.1": "v0002", "1.3": "v0002"})
    by_uid = {row.series_uid: row for row in rows}
    assert {uid: row.state for uid, row in by_uid.items()} == {
        "1.0": "flagged", "1.1": "rejected", "1.2": "approved", "1.3": "suggested", "1.4": "unlabelled",
        "1.5": "unlabelled"}
    assert by_uid["1.0"].reasons == ("2 slices",)
    assert by_uid["1.3"].suggestion_version == "v0002"
    assert [row.series_uid for row in rows][:2] == ["1.5", "1.4"], "newest series first"
    final = classify([Listed("2.1", "9", "MR")], {}, {"2.1"}, {}, {})
    assert final[0].state == "final", "review off: a final label is final"


def test_counts_per_modality_hold_every_state() -> None:
    rows = classify([Listed("1", "9", "CT"), Listed("2", "9", "CT"), Listed("3", "9", "MR")], {}, {"1"}, {}, {})
    counts = state_counts(rows)
    assert set(counts) == {"CT", "MR", "all"}
    assert counts["CT"]["final"] == 1 and counts["CT"]["unlabelled"] == 1 and counts["MR"]["unlabelled"] == 1
    assert counts["all"]["unlabelled"] == 2 and list(counts["all"]) == list(STATES)
    assert state_counts([]) == {"all": dict.fromkeys(STATES, 0)}


def test_paging_10000_series_filters_on_the_server_and_returns_one_page_fast() -> None:
    records = [Listed(f"1.{i}", f"9.{i}", ("CT", "MR")[i % 2], time=f"{i:06d}") for i in range(10_000)]
    suggested = {f"1.{i}": "v0001" for i in range(0, 10_000, 3)}
    started = time.perf_counter()
    rows = classify(records, {}, set(), {}, suggested)
    found = page(rows, state="suggested", modality="CT", limit=50, offset=100)
    assert time.perf_counter() - started < 2.0
    assert found.total == len([i for i in range(0, 10_000, 3) if i % 2 == 0])
    assert len(found.items) == 50 and found.offset == 100
    assert all(row.state == "suggested" and row.modality == "CT" for row in found.items)
    tail = page(rows, limit=500, offset=9_900)
    assert tail.total == 10_000 and len(tail.items) == 100


@pytest.mark.parametrize("kwargs", [{"limit": 0}, {"limit": 501}, {"offset": -1}, {"state": "done"}])
def test_paging_refuses_bad_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        page([], **kwargs)


def test_new_final_labels_are_those_the_newest_version_did_not_learn_from() -> None:
    assert new_final_labels(["a", "b", "c"], {"a"}) == 2
    assert new_final_labels([], set()) == 0


def _iso(moment: datetime) -> str:
    return moment.isoformat(timespec="seconds")


def test_team_stats_with_review_off_from_the_audit_log(tmp_path: Path) -> None:
    now = datetime(2024, 5, 1, 12, tzinfo=UTC)
    clock = iter([now, now + timedelta(hours=1), now + timedelta(hours=2)])
    audit = AuditLog(tmp_path / "audit.sqlite", clock=lambda: next(clock))
    made = (now - timedelta(hours=3)).timestamp()
    audit.record("anna", True, AuditAction.LABEL_SAVED, series_uid="1.1",
                 detail={"seg_sop_uid": "5.1", "suggestion": {"made": made, "dice": 0.8}})
    audit.record("anna", True, AuditAction.LABEL_SAVED, series_uid="1.2",
                 detail={"seg_sop_uid": "5.2", "suggestion": {"made": made, "dice": 0.6}})
    audit.record("bob", True, AuditAction.LABEL_SAVED, series_uid="1.3", detail={"seg_sop_uid": "5.3"})
    stats = {s.annotator: s for s in team_stats(saved_labels(audit.query()), None)}
    anna, bob = stats["anna"], stats["bob"]
    assert (anna.labels, anna.final, anna.rejected, anna.rejection_rate) == (2, 2, 0, None)
    assert anna.median_hours_to_final == pytest.approx(3.5)  # 3 h and 4 h after the suggestion
    assert anna.mean_suggestion_dice == pytest.approx(0.7)
    assert (bob.labels, bob.final, bob.median_hours_to_final, bob.mean_suggestion_dice) == (1, 1, None, None)
    assert "_hours" not in anna.as_dict()


def test_team_stats_with_review_on_count_approvals_and_rejections(tmp_path: Path) -> None:
    clock = [1_000_000.0]
    book = ReviewBook(tmp_path / "reviews.sqlite", clock=lambda: clock[0])
    audit = AuditLog(tmp_path / "audit.sqlite")
    for sop, series in (("5.1", "1.1"), ("5.2", "1.2"), ("5.3", "1.3")):
        book.submit(sop, series, "9", "anna")
        audit.record("anna", True, AuditAction.LABEL_SUBMITTED, series_uid=series,
                     detail={"seg_sop_uid": sop, "suggestion": {"made": 1_000_000.0 - 3600, "dice": 0.9}})
    clock[0] += 3600
    book.decide("5.1", "rita", True)
    book.decide("5.2", "rita", False, "C5 is missing")
    (anna,) = team_stats(saved_labels(audit.query()), book.submissions())
    assert (anna.labels, anna.final, anna.rejected) == (3, 1, 1)
    assert anna.rejection_rate == pytest.approx(0.5)
    assert anna.median_hours_to_final == pytest.approx(2.0)  # suggested an hour before saving, approved an hour after
    assert anna.mean_suggestion_dice == pytest.approx(0.9)
    assert book.latest_states() == {"1.1": ReviewState.APPROVED, "1.2": ReviewState.REJECTED,
                                    "1.3": ReviewState.SUBMITTED}


def test_histograms_and_score_distribution() -> None:
    assert histogram([], 4) == {"edges": [], "counts": []}
    assert histogram([1.0, 1.0], 2)["counts"] == [2, 0]
    spread = histogram([0.0, 0.5, 1.0], 2)
    assert spread["counts"] == [1, 2] and spread["edges"] == [0.0, 0.5, 1.0]
    scores = [SeriesScores("t", "1", "v1", epistemic=0.1, dice=0.9), SeriesScores("t", "2", "v1", epistemic=0.3)]
    dist = score_distribution(scores, bins=2)
    assert dist["epistemic"]["series"] == 2 and dist["dice"]["series"] == 1 and dist["tta"]["series"] == 0


@dataclass(frozen=True)
class Case:
    study_uid: str
    tumor_type: str


def test_support_cases_per_type_are_case_records_whose_study_is_labelled() -> None:
    cases = [Case("1", "chordoma"), Case("2", "chordoma"), Case("3", "hemangioma")]
    assert support_per_type(cases, {"1", "3", "7"}) == {"chordoma": {"cases": 2, "support": 1},
                                                         "hemangioma": {"cases": 1, "support": 1}}


@dataclass(frozen=True)
class Report:
    """A measurement report as HOPE stores it, with the measurements it was written from."""

    measurements: SpineMeasurements
    image_uid: str
    seg_uid: str
    sr: Dataset


@pytest.fixture(scope="module")
def report() -> Report:
    label = spine_label()
    sources = volume_to_datasets(np.zeros(SHAPE, dtype=np.int16), SPACING, new_identity("CONSOLE-SR"))
    seg = label_to_seg(label, sources, LABELS)
    measurements = measure_spine(label, LABELS, SPACING)
    sr = measurements_to_sr(measurements, sources, seg, series_description="HOPE measurements of a label")
    stored = written(sr)  # as WADO-RS answers it
    stored.filename = None  # read from a buffer, which copies of it cannot keep
    return Report(measurements, str(sources[0].SeriesInstanceUID), str(seg.SeriesInstanceUID), stored)


def _at(sr: Dataset, date: str, time_of_day: str) -> Dataset:
    moved = copy.deepcopy(sr)
    moved.ContentDate, moved.ContentTime = date, time_of_day
    moved.SeriesInstanceUID = f"2.25.{date}{time_of_day.replace('.', '')}"
    return moved


def test_hope_measurement_reports_are_known_by_series_number_and_description() -> None:
    def series(number: int | None, description: str | None) -> Dataset:
        found = Dataset()
        if number is not None:
            found.SeriesNumber = number
        if description is not None:
            found.SeriesDescription = description
        return found

    assert is_measurement_report(series(SR_SERIES_NUMBER, "HOPE measurements of spine_mr label"))
    assert not is_measurement_report(series(SR_SERIES_NUMBER, "Radiologist's report"))
    assert not is_measurement_report(series(1, "HOPE measurements of spine_mr label"))
    assert not is_measurement_report(series(None, None))


def test_the_answer_holds_the_report_its_seg_and_what_measuring_skipped(report: Report) -> None:
    answer = report_answer(report.image_uid, report.sr)
    assert answer["series_uid"] == report.image_uid
    assert answer["sr_series_uid"] == str(report.sr.SeriesInstanceUID)
    assert answer["seg_series_uid"] == report.seg_uid
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", answer["created"])
    stored, expected = answer["measurements"], report.measurements.as_dict()
    assert [level["level"] for level in stored["levels"]] == [level["level"] for level in expected["levels"]]
    assert stored["levels"][0]["canal_area_mm2"] == pytest.approx(expected["levels"][0]["canal_area_mm2"])
    assert [(d["disc"], pytest.approx(d["height_mm"])) for d in expected["discs"]] == [
        (d["disc"], d["height_mm"]) for d in stored["discs"]]
    assert stored["cobb_c2_c7_deg"] == pytest.approx(expected["cobb_c2_c7_deg"])
    assert set(stored["skipped"]) == set(expected["skipped"]), "the report lacks exactly what measuring skipped"
    assert set(stored["skipped"].values()) == {NOT_REPORTED}


def test_levels_run_cranial_first_with_each_disc_level_below_its_vertebra() -> None:
    assert LEVELS[:4] == ("C1", "C2", "C2/C3", "C3") and LEVELS[-2:] == ("C7", "C7/T1") and len(LEVELS) == 13


def test_the_newest_report_of_the_series_is_chosen(report: Report) -> None:
    older, newer = _at(report.sr, "20240501", "120000"), _at(report.sr, "20240501", "130000.5")
    other = _at(report.sr, "20250101", "000000")
    for study in other.CurrentRequestedProcedureEvidenceSequence:
        for series in study.ReferencedSeriesSequence:
            if series.SeriesInstanceUID == report.image_uid:
                series.SeriesInstanceUID = "2.25.99"
    assert newest_report(report.image_uid, [older, newer, other]) is newer
    assert newest_report("2.25.99", [older, newer, other]) is other
    assert newest_report("2.25.1", [older, newer]) is None
    assert created(newer) == "2024-05-01T13:00:00"
    del newer.ContentTime
    assert created(newer) is None


def test_why_a_series_has_no_report() -> None:
    assert no_report_reason("1.2", "MR", {"MR"}) == (
        "series 1.2 has no measurement report yet: save a final label of this MR series to get one")
    assert no_report_reason("1.3", "CT", {"MR"}) == (
        "series 1.3 has no measurement report: it is CT, and HOPE measures MR series only")
    assert "no task has measurements" in no_report_reason("1.3", "MR", set())
