"""``GET /hope/measurements/{series_uid}``: a series' spine measurements, read from the DICOM SR HOPE stored.

When a label of a measured series is saved (its task has ``measurements: spine``: spine_mr's MR), HOPE stores a
TID 1500 measurement report in the study, beside the SEG (:mod:`hope.datastore.measurement_reports`). OHIF lists
that SR but cannot show it (it holds no spatial coordinates); this route answers the numbers of the newest report
that references the image series, for the console's Measurements panel and any other client::

    {"series_uid": ..., "sr_series_uid": ..., "seg_series_uid": ..., "created": "2024-05-01T12:00:00",
     "measurements": {"levels": [...], "discs": [...], "cobb_c2_c7_deg": ..., "skipped": {...}}}

``levels`` and ``discs`` are as :meth:`hope.measure.spine.SpineMeasurements.as_dict` has them (areas in mm²,
lengths in mm, ratios and occupancies as fractions, the Cobb angle in degrees, lordosis positive); ``skipped`` names
what the report lacks. 404 for a series the store does not hold, or one without a report yet (with why); 422 for a
path that is not a DICOM UID; 502 when the store could not be asked.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import APIRouter

from hope.api.review import SeriesUid


def build_router(measurements: Callable[[str], dict[str, Any]]) -> APIRouter:
    """The measurements route, answered by ``measurements`` (a series UID -> the answer; the composition root hands
    :meth:`hope.console_sources.ConsoleSources.measurements`)."""
    router = APIRouter(tags=["Measurements"])

    @router.get("/hope/measurements/{series_uid}",
                summary="Spine measurements of a series, from the newest measurement report (DICOM SR) HOPE stored")
    def series_measurements(series_uid: SeriesUid) -> dict[str, Any]:
        return measurements(series_uid)

    return router
