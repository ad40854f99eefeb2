"""What the web console shows, computed from HOPE's own records: no HTTP here (the routes are
:mod:`hope.api.console`), so every number is unit-tested without a server.

* series: each image series' state (:func:`classify`), counted per modality (:func:`state_counts`) and paged
  (:func:`page`), so that no client ever loads every series at once;
* the team: labels per annotator, rejections, time from suggestion to final and the Dice of the final label
  against the suggestion it started from (:func:`team_stats`, from the audit log and the review book);
* active learning: the distribution of each score (:func:`score_distribution`);
* rare tumour types: case records and labelled (support) cases per type (:func:`support_per_type`);
* measurements: HOPE's measurement reports (DICOM SR) of a series, the newest chosen (:func:`newest_report`) and
  read (:func:`report_answer`), and why a series has none (:func:`no_report_reason`).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from pydicom.dataset import Dataset
from pydicom.uid import SegmentationStorage
from pydicom.valuerep import DA, TM

from hope.activelearning.scores import SeriesScores
from hope.audit import AuditAction, AuditEntry
from hope.datastore.measurement_reports import REPORT_DESCRIPTION, SR_SERIES_NUMBER
from hope.dicom.sr import sr_to_measurements
from hope.measure.spine import DISC_LABELS, VERTEBRAE
from hope.review import ReviewState, Submission

FLAGGED, FINAL = "flagged", "final"
#: Every state a series can be in, in the order the console shows them.
STATES: tuple[str, ...] = tuple(str(state) for state in (
    ReviewState.UNLABELLED, ReviewState.SUGGESTED, ReviewState.SUBMITTED, ReviewState.REJECTED, ReviewState.APPROVED,
    FINAL, FLAGGED))
#: The most series one page holds.
MAX_PAGE = 500
#: Active-learning scores whose distribution the console plots.
SCORE_FIELDS = ("epistemic", "tta", "tumour", "dice")


class ListedSeries(Protocol):
    """An image series as the datastore lists it (:class:`hope.datastore.orthanc.SeriesRecord`)."""

    uid: str
    study_uid: str
    modality: str
    date: str
    time: str


@dataclass(frozen=True)
class SeriesRow:
    """One series as the console lists it: its state, the reasons it was flagged, its suggestion's model version."""

    series_uid: str
    study_uid: str
    modality: str
    date: str
    state: str
    reasons: tuple[str, ...] = ()
    suggestion_version: str | None = None


def classify(records: Iterable[ListedSeries], flagged: Mapping[str, Sequence[str]], finals: Collection[str],
             reviews: Mapping[str, ReviewState], suggestions: Mapping[str, str]) -> list[SeriesRow]:
    """Each series' state, newest series first.

    The state is, in this order: ``flagged`` (invalid when it arrived, with the reasons), its latest label's review
    state (``submitted``, ``rejected``, ``approved``: review on), ``final`` (a final label, review off),
    ``suggested`` (a model's suggestion is ready), else ``unlabelled``.

    Args:
        records: the listed image series (flagged ones included).
        flagged: series UID -> reasons, for the series flagged invalid.
        finals: series UIDs with a final label.
        reviews: series UID -> its latest submitted label's review state.
        suggestions: series UID -> the model version of its ready suggestion.
    """
    rows = []
    for record in sorted(records, key=lambda r: (r.date, r.time, r.uid), reverse=True):
        uid = record.uid
        if uid in flagged:
            state = FLAGGED
        elif uid in reviews:
            state = str(reviews[uid])
        elif uid in finals:
            state = FINAL
        elif uid in suggestions:
            state = ReviewState.SUGGESTED
        else:
            state = ReviewState.UNLABELLED
        rows.append(SeriesRow(uid, record.study_uid, record.modality, record.date, str(state),
                              tuple(flagged.get(uid, ())), suggestions.get(uid)))
    return rows


def state_counts(rows: Iterable[SeriesRow]) -> dict[str, dict[str, int]]:
    """Series per modality and state (every state present, possibly 0), and ``all`` over every modality."""
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for row in rows:
        counts[row.modality][row.state] += 1
        counts["all"][row.state] += 1
    counts.setdefault("all", Counter())
    return {modality: {state: found[state] for state in STATES} for modality, found in sorted(counts.items())}


@dataclass(frozen=True)
class Page:
    """One page of series: those matching the filters, ``total`` of them in all."""

    total: int
    offset: int
    items: list[SeriesRow]


def page(rows: Sequence[SeriesRow], state: str | None = None, modality: str | None = None, limit: int = 50,
         offset: int = 0) -> Page:
    """The series matching ``state`` and ``modality`` (``None``: any), from ``offset``, at most ``limit``.

    Raises:
        ValueError: ``limit`` is not in ``1..MAX_PAGE``, ``offset`` is negative, or ``state`` is unknown.
    """
    if not 1 <= limit <= MAX_PAGE or offset < 0:
        raise ValueError(f"limit must lie in 1..{MAX_PAGE} and offset be >= 0, got limit={limit}, offset={offset}")
    if state is not None and state not in STATES:
        raise ValueError(f"unknown state {state!r}; states: {', '.join(STATES)}")
    matching = [r for r in rows if (state is None or r.state == state) and (modality is None or r.modality == modality)]
    return Page(len(matching), offset, matching[offset:offset + limit])


def new_final_labels(final_segs: Iterable[str], trained_on: Collection[str]) -> int:
    """How many final labels (their SEG series UIDs) the newest model version was not trained on."""
    return sum(1 for seg in final_segs if seg not in trained_on)


@dataclass(frozen=True)
class SavedLabel:
    """A final label saved by an annotator (an audit entry), with the suggestion it started from, if any."""

    annotator: str
    series_uid: str
    seg_sop_uid: str
    saved_at: float
    suggestion_made: float | None = None
    dice: float | None = None


def _epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def saved_labels(entries: Iterable[AuditEntry]) -> list[SavedLabel]:
    """The saved labels among audit entries (``label_saved``, ``label_submitted``), with the record of the
    suggestion each started from (``detail.suggestion``: ``made``, ``dice``) where it was kept."""
    found = []
    for entry in entries:
        if entry.action not in (AuditAction.LABEL_SAVED, AuditAction.LABEL_SUBMITTED):
            continue
        suggestion = entry.detail.get("suggestion") or {}
        found.append(SavedLabel(entry.user, entry.series_uid or "", str(entry.detail.get("seg_sop_uid", "")),
                                _epoch(entry.at), suggestion.get("made"), suggestion.get("dice")))
    return found


@dataclass
class AnnotatorStats:
    """One annotator's work: labels saved, how many became final, how many a reviewer rejected, the median hours
    from a suggestion to the final label, and the mean Dice of final labels against their suggestions."""

    annotator: str
    labels: int = 0
    final: int = 0
    rejected: int = 0
    rejection_rate: float | None = None
    median_hours_to_final: float | None = None
    mean_suggestion_dice: float | None = None
    _hours: list[float] = field(default_factory=list, repr=False)
    _dice: list[float] = field(default_factory=list, repr=False)

    def as_dict(self) -> dict[str, Any]:
        """The JSON the console reads."""
        return {key: value for key, value in self.__dict__.items() if not key.startswith("_")}


def team_stats(saved: Iterable[SavedLabel], submissions: Iterable[Submission] | None) -> list[AnnotatorStats]:
    """Per annotator (by name): labels, final labels, rejections and rejection rate, time to final, suggestion Dice.

    With review off (``submissions`` is ``None``) a saved label is final when saved. With review on, a label is
    final when approved, at its decision's time; the rejection rate is rejected / decided.
    """
    decided = {s.seg_sop_uid: s for s in submissions or () if s.decision is not None}
    stats: dict[str, AnnotatorStats] = {}
    for label in saved:
        person = stats.setdefault(label.annotator, AnnotatorStats(label.annotator))
        person.labels += 1
        final_at: float | None = label.saved_at
        if submissions is not None:
            sub = decided.get(label.seg_sop_uid)
            decision = sub.decision if sub is not None else None
            final_at = _epoch(decision.decided_at) if decision is not None and decision.approved else None
            person.rejected += int(decision is not None and not decision.approved)
        if final_at is None:
            continue
        person.final += 1
        if label.suggestion_made is not None:
            person._hours.append(max(final_at - label.suggestion_made, 0.0) / 3600.0)
        if label.dice is not None:
            person._dice.append(label.dice)
    for person in stats.values():
        if submissions is not None and person.final + person.rejected:
            person.rejection_rate = person.rejected / (person.final + person.rejected)
        person.median_hours_to_final = statistics.median(person._hours) if person._hours else None
        person.mean_suggestion_dice = statistics.fmean(person._dice) if person._dice else None
    return sorted(stats.values(), key=lambda p: p.annotator)


def histogram(values: Sequence[float], bins: int = 10) -> dict[str, list[float] | list[int]]:
    """Counts of ``values`` in ``bins`` equal bins between their minimum and maximum (``edges`` has bins + 1)."""
    if not values:
        return {"edges": [], "counts": []}
    low, high = min(values), max(values)
    width = (high - low) / bins or 1.0
    counts = [0] * bins
    for value in values:
        counts[min(int((value - low) / width), bins - 1)] += 1
    return {"edges": [low + i * width for i in range(bins + 1)], "counts": counts}


def score_distribution(scores: Iterable[SeriesScores], bins: int = 10) -> dict[str, dict[str, Any]]:
    """Per score of :data:`SCORE_FIELDS`: how many series have it, and its histogram."""
    rows = list(scores)
    out = {}
    for name in SCORE_FIELDS:
        values = [float(v) for v in (getattr(r, name) for r in rows) if v is not None]
        out[name] = {"series": len(values), **histogram(values, bins)}
    return out


class CaseLike(Protocol):
    """A case record (:class:`hope.cases.repository.Case`)."""

    study_uid: str
    tumor_type: str


def support_per_type(cases: Iterable[CaseLike], labelled_studies: Collection[str]) -> dict[str, dict[str, int]]:
    """Per tumour type: its case records, and those whose study has a final label (the few-shot support cases)."""
    out: dict[str, dict[str, int]] = {}
    for case in cases:
        entry = out.setdefault(case.tumor_type, {"cases": 0, "support": 0})
        entry["cases"] += 1
        entry["support"] += int(case.study_uid in labelled_studies)
    return dict(sorted(out.items()))


#: Why a structure missing from a report was not measured: the report does not say.
NOT_REPORTED = "not measured (the report does not keep why)"
#: Every level :func:`hope.measure.spine.measure_spine` may report, cranial first: C1, C2, C2/C3, ..., C7, C7/T1.
LEVELS: tuple[str, ...] = tuple(
    level for vertebra in VERTEBRAE for level in (vertebra, *(d for d in DISC_LABELS if d.startswith(f"{vertebra}/")))
)


def is_measurement_report(series: Dataset) -> bool:
    """Whether an SR series, as QIDO-RS lists it, is one of HOPE's measurement reports (by its SeriesNumber and the
    beginning of its SeriesDescription)."""
    return (series.get("SeriesNumber") == SR_SERIES_NUMBER
            and str(series.get("SeriesDescription", "")).startswith(REPORT_DESCRIPTION))


def evidence(sr: Dataset) -> dict[str, set[str]]:
    """Series UID -> the SOP Class UIDs of its instances that the SR's CurrentRequestedProcedureEvidenceSequence
    lists."""
    found: dict[str, set[str]] = defaultdict(set)
    for study in sr.get("CurrentRequestedProcedureEvidenceSequence", []):
        for series in study.get("ReferencedSeriesSequence", []):
            found[str(series.SeriesInstanceUID)].update(
                str(item.ReferencedSOPClassUID) for item in series.get("ReferencedSOPSequence", []))
    return dict(found)


def created(sr: Dataset) -> str | None:
    """When the SR was made (its ContentDate and ContentTime, the writer's local time) as ISO 8601 to the second;
    ``None`` when either is missing or malformed."""
    try:
        return datetime.combine(DA(sr.ContentDate), TM(sr.ContentTime)).isoformat(timespec="seconds")
    except (AttributeError, TypeError, ValueError):
        return None


def newest_report(series_uid: str, reports: Iterable[Dataset]) -> Dataset | None:
    """The newest (by :func:`created`) of ``reports`` whose evidence lists the image series ``series_uid``."""
    mine = [sr for sr in reports if series_uid in evidence(sr)]
    return max(mine, key=lambda sr: (created(sr) or "", str(sr.SeriesInstanceUID)), default=None)


def not_reported(measurements: Mapping[str, Any]) -> dict[str, str]:
    """What a report read by :func:`hope.dicom.sr.sr_to_measurements` lacks, keyed as
    ``SpineMeasurements.skipped``: a level (``C1``, ``C4/C5``), ``disc <level>``, ``cobb_c2_c7``."""
    levels = {level["level"] for level in measurements["levels"]}
    discs = {disc["disc"] for disc in measurements["discs"]}
    missing = {level: NOT_REPORTED for level in LEVELS if level not in levels}
    missing |= {f"disc {disc}": NOT_REPORTED for disc in DISC_LABELS if disc not in discs}
    if measurements["cobb_c2_c7_deg"] is None:
        missing["cobb_c2_c7"] = NOT_REPORTED
    return missing


def report_answer(series_uid: str, sr: Dataset) -> dict[str, Any]:
    """What ``GET /hope/measurements/{series_uid}`` answers for the report ``sr``: the image series, the report's
    series, the SEG series it measured, when it was made, and its numbers shaped like
    ``SpineMeasurements.as_dict()`` (``skipped``: what the report lacks, :func:`not_reported`).

    Raises:
        ValueError: a measurement's unit is not the one HOPE writes (not a report HOPE wrote).
    """
    segs = sorted(uid for uid, classes in evidence(sr).items() if SegmentationStorage in classes)
    measurements = sr_to_measurements(sr)
    return {
        "series_uid": series_uid,
        "sr_series_uid": str(sr.SeriesInstanceUID),
        "seg_series_uid": segs[0] if segs else None,
        "created": created(sr),
        "measurements": {**measurements, "skipped": not_reported(measurements)},
    }


def no_report_reason(series_uid: str, modality: str, measured: Collection[str]) -> str:
    """Why the series has no measurement report, and what to do about it.

    Args:
        series_uid: the image series.
        modality: its modality.
        measured: the modalities whose labels are measured (their task has ``measurements: spine``).
    """
    if modality in measured:
        return (f"series {series_uid} has no measurement report yet: save a final label of this {modality} series "
                "to get one")
    kinds = f"{', '.join(sorted(measured))} series only" if measured else "nothing (no task has measurements)"
    return (f"series {series_uid} has no measurement report: it is {modality or 'of no modality'}, and HOPE "
            f"measures {kinds}")
