"""A DICOM SR of the spine measurements of every final label HOPE stores, written beside its SEG.

Measuring takes a fraction of a second, building the SR about 2 s per 100 slices (highdicom references every source
instance), so the report is made and stored on its own thread: a save answers as soon as its SEG is stored. Each
SR's UIDs derive from its SEG's, so writing it again (a restart, a repeated save) replaces nothing and adds nothing.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

import requests
import SimpleITK as sitk
from pydicom.dataset import Dataset
from pydicom.uid import generate_uid

from hope.dicom.sr import measurements_to_sr
from hope.measure import measure_label_image

logger = logging.getLogger(__name__)

SR_SERIES_NUMBER = 301
#: Every report's SeriesDescription starts so (then names the label measured).
REPORT_DESCRIPTION = "HOPE measurements"


class MeasurementReports:
    """Measures each stored SEG of a measured modality and stores the result as a TID 1500 SR in its study.

    Args:
        store_instances: stores datasets in the DICOM store (a DICOMweb client's ``store_instances``); its answer
            is checked for a ``FailedSOPSequence``.
        modalities: the image modalities whose labels are measured (their task has ``measurements: spine``).
    """

    def __init__(self, store_instances: Callable[[list[Dataset]], Any], modalities: Collection[str]) -> None:
        self._store = store_instances
        self._modalities = frozenset(modalities)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hope-sr")
        self._lock = threading.Lock()
        self._outcomes: dict[str, str] = {}

    def seg_stored(self, image_id: str, modality: str | None, seg: Dataset, label: sitk.Image,
                   labels: Mapping[str, int], sources: Sequence[Dataset]) -> Future[str] | None:
        """Report on ``seg`` (stored for series ``image_id``) in the background; ``None`` for an unmeasured modality.

        Args:
            image_id: the image series' SeriesInstanceUID.
            modality: its modality.
            seg: the SEG just stored.
            label: the label volume the SEG holds, on the image's grid.
            labels: label name -> voxel value of ``label``.
            sources: the image series' datasets.
        """
        if modality not in self._modalities:
            return None
        seg_uid = str(seg.SeriesInstanceUID)
        self._set(seg_uid, "pending")
        return self._executor.submit(self._write, image_id, seg, label, dict(labels), list(sources))

    def outcome(self, seg_series_uid: str) -> str | None:
        """``pending``, ``stored <SR series UID>``, or why no SR was stored, for a SEG seen since start-up."""
        with self._lock:
            return self._outcomes.get(seg_series_uid)

    def close(self) -> None:
        """Finish the reports under way; no new ones are taken."""
        self._executor.shutdown(wait=True)

    def _set(self, seg_uid: str, outcome: str) -> None:
        with self._lock:
            self._outcomes[seg_uid] = outcome

    def _write(self, image_id: str, seg: Dataset, label: sitk.Image, labels: dict[str, int],
               sources: list[Dataset]) -> str:
        seg_uid = str(seg.SeriesInstanceUID)
        try:
            measurements = measure_label_image(label, labels)
            sr = measurements_to_sr(
                measurements, sources, seg, series_number=SR_SERIES_NUMBER,
                series_description=f"{REPORT_DESCRIPTION} of {seg.get('SeriesDescription', 'a label')}"[:64],
                series_instance_uid=generate_uid(entropy_srcs=[seg_uid, "sr-series"]),
                sop_instance_uid=generate_uid(entropy_srcs=[seg_uid, "sr-instance"]),
            )
            now = datetime.now()
            sr.SeriesDate, sr.SeriesTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S.%f")  # newest first
            if "OperatorsName" in seg:
                sr.OperatorsName = seg.OperatorsName  # who drew the label measured
            failed = (self._store([sr]) or {}).get("FailedSOPSequence")
            if failed:
                raise RuntimeError(f"the DICOM store refused it: {failed}")
        except ValueError as exc:  # nothing measurable in this label
            outcome = f"not written: {exc}"
            logger.info(f"no measurement report for SEG {seg_uid} of series {image_id}: {exc}")
        except (RuntimeError, requests.RequestException, OSError) as exc:
            outcome = f"not written: {exc}"
            logger.warning(f"the measurement report of SEG {seg_uid} of series {image_id} was not stored: {exc}; "
                           "save the label again to retry")
        else:
            outcome = f"stored {sr.SeriesInstanceUID}"
            logger.info(f"stored measurement report {sr.SeriesInstanceUID} for SEG {seg_uid}")
        self._set(seg_uid, outcome)
        return outcome
