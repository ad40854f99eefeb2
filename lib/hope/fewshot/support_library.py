"""Support sets from the store: the final labels of every study with a case record.

A study's case record (``hope.cases``) gives its tumour type and verdict; each of its image series with a final
label (a SEG in the store) that shows a lesion is one support case. Nothing is registered separately: recording a
case or storing a SEG takes effect on the next request. Slices are cut from a series once per SEG and cached, so
a request only loads what changed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

import SimpleITK as sitk

from hope.fewshot.anatomy_features import AnatomyFeatures
from hope.fewshot.config import SliceSpec
from hope.fewshot.episodes import LabelledCase
from hope.fewshot.volumes import lesion_cuts, mask_on_slices, to_slices

logger = logging.getLogger(__name__)


class CaseRecordLike(Protocol):
    """What the library reads of a case record (:class:`hope.cases.Case`)."""

    study_uid: str
    tumor_type: str
    verdict: str


@dataclass(frozen=True)
class LabelledSeries:
    """An image series with a final label in the store: its study, the SEG that is its label, and its modality."""

    series_uid: str
    study_uid: str
    label_uid: str
    modality: str


@dataclass(frozen=True)
class SupportCase:
    """One support case: a labelled series of a recorded study and its lesion slices (largest first)."""

    series_uid: str
    study_uid: str
    label_uid: str
    tumor_type: str
    verdict: str
    slices: tuple[LabelledCase, ...]

    def summary(self) -> dict[str, str]:
        """What a response says about the case."""
        return {"study_uid": self.study_uid, "series_uid": self.series_uid, "label_uid": self.label_uid,
                "tumor_type": self.tumor_type, "verdict": self.verdict}


class SupportLibrary:
    """Support cases built from case records and final labels, on demand.

    ``records()`` lists the case records; ``labelled()`` the series with final labels; ``load(series_uid)`` gives
    a series' image and final label volumes. A label's lesion is its voxels of value ``lesion_value``. With
    ``anatomy``, every support slice carries its anatomy features (:mod:`hope.fewshot.anatomy_features`), computed
    once per series and label like the slices.
    """

    def __init__(
        self,
        records: Callable[[], Iterable[CaseRecordLike]],
        labelled: Callable[[], Iterable[LabelledSeries]],
        load: Callable[[str], tuple[sitk.Image, sitk.Image]],
        spec: SliceSpec,
        lesion_value: int,
        anatomy: AnatomyFeatures | None = None,
    ) -> None:
        self._records = records
        self._labelled = labelled
        self._load = load
        self.spec = spec
        self.lesion_value = lesion_value
        self.anatomy = anatomy
        self._slices: dict[tuple[str, str], tuple[LabelledCase, ...]] = {}
        self._lock = threading.Lock()
        self.skipped: dict[str, str] = {}

    def lesion_cases(self, image: sitk.Image, lesion: sitk.Image, tumor_type: str, grade: str | None,
                     modality: str | None = None) -> tuple[LabelledCase, ...]:
        """The lesion slices of ``image`` under the binary ``lesion`` mask (on its grid), as :class:`LabelledCase`
        (empty when the mask is); with their anatomy features when the library has them and ``modality`` is given
        (grading compares lesions alone and gives none)."""
        stack = to_slices(image, self.spec)
        mask = mask_on_slices(lesion, stack)
        cuts = lesion_cuts(mask, self.spec.support_slices_per_case, self.spec.support_window,
                           self.spec.support_context)
        if not cuts:
            return ()
        anatomy = None
        if self.anatomy is not None and modality is not None:
            anatomy = self.anatomy.on_stack(image, modality, stack)
        return tuple(cut.case(stack.pixels, mask, tumor_type, grade, anatomy) for cut in cuts)

    def cases(self, exclude_series: str | None = None) -> list[SupportCase]:
        """Every support case now in the store, except the series ``exclude_series`` (the query itself)."""
        records: Mapping[str, CaseRecordLike] = {r.study_uid: r for r in self._records()}
        found = []
        labelled = sorted(self._labelled(), key=lambda s: s.series_uid)
        with self._lock:
            current = {(s.series_uid, s.label_uid) for s in labelled}
            for key in set(self._slices) - current:
                del self._slices[key]
            for series in labelled:
                record = records.get(series.study_uid)
                if record is None or series.series_uid == exclude_series:
                    continue
                key = (series.series_uid, series.label_uid)
                if key not in self._slices:
                    image, label = self._load(series.series_uid)
                    self._slices[key] = self.lesion_cases(image, label == self.lesion_value, record.tumor_type,
                                                          record.verdict, series.modality)
                slices = self._slices[key]
                if not slices:
                    self.skipped[series.series_uid] = "its final label has no lesion voxels"
                    continue
                # The record may have changed since the slices were cut: type and verdict are read afresh.
                slices = tuple(replace(c, tumor_type=record.tumor_type, grade=record.verdict) for c in slices)
                found.append(SupportCase(series.series_uid, series.study_uid, series.label_uid,
                                         record.tumor_type, record.verdict, slices))
        return found
