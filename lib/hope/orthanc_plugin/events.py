"""The event a stable series gives, built from Orthanc's REST answers.

* An image series (CT, MR, CR, DX) gives ``series_stable`` with its validation::

    {"id": "series_stable:<SeriesInstanceUID>:<LastUpdate>", "type": "series_stable", "series_uid": ...,
     "study_uid": ..., "modality": "CT", "orthanc_id": ..., "instances": 40, "valid": true, "reasons": []}

  The id changes when instances are added (Orthanc's LastUpdate does), so a grown series is reported again.
* A SEG series gives ``seg_stored``::

    {"id": "seg_stored:<SeriesInstanceUID>", "type": "seg_stored", "series_uid": ..., "study_uid": ...,
     "modality": "SEG", "orthanc_id": ..., "referenced_series_uid": <from ReferencedSeriesSequence or null>,
     "segment_labels": ["C1", "tumor", ...]}

* Any other modality gives no event.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from hope.orthanc_plugin.validation import IMAGE_MODALITIES, validate_series

SERIES_STABLE = "series_stable"
SEG_STORED = "seg_stored"

#: ``GET`` on Orthanc's REST API, e.g. ``"/series/<id>"``, returning the parsed JSON answer.
RestGet = Callable[[str], Any]


def build_event(orthanc_id: str, rest_get: RestGet) -> dict[str, Any] | None:
    """The event for the Orthanc series ``orthanc_id``; ``None`` for a modality HOPE does not handle.

    Errors of ``rest_get`` (e.g. the series was deleted meanwhile) propagate.
    """
    series = rest_get(f"/series/{orthanc_id}")
    tags = series["MainDicomTags"]
    modality = str(tags.get("Modality", "")).upper()
    if modality not in IMAGE_MODALITIES and modality != "SEG":
        return None
    series_uid = tags["SeriesInstanceUID"]
    common = {
        "series_uid": series_uid,
        "study_uid": rest_get(f"/studies/{series['ParentStudy']}")["MainDicomTags"]["StudyInstanceUID"],
        "modality": modality,
        "orthanc_id": orthanc_id,
    }
    if modality == "SEG":
        first = rest_get(f"/instances/{series['Instances'][0]}/tags?simplify")
        return {
            "id": f"{SEG_STORED}:{series_uid}",
            "type": SEG_STORED,
            **common,
            "referenced_series_uid": referenced_series_uid(first),
            "segment_labels": segment_labels(first),
        }
    instances = sorted(rest_get(f"/series/{orthanc_id}/instances-tags?simplify").values(), key=_instance_number)
    validation = validate_series(modality, instances)
    return {
        "id": f"{SERIES_STABLE}:{series_uid}:{series['LastUpdate']}",
        "type": SERIES_STABLE,
        **common,
        "instances": len(instances),
        **validation.to_json(),
    }


def referenced_series_uid(tags: Mapping[str, Any]) -> str | None:
    """The first SeriesInstanceUID in a SEG's ReferencedSeriesSequence (simplified tags), if any."""
    for item in tags.get("ReferencedSeriesSequence") or []:
        uid = item.get("SeriesInstanceUID") if isinstance(item, Mapping) else None
        if uid:
            return str(uid)
    return None


def segment_labels(tags: Mapping[str, Any]) -> list[str]:
    """The SegmentLabel of each item of a SEG's SegmentSequence (simplified tags), in order."""
    return [str(item["SegmentLabel"]) for item in tags.get("SegmentSequence") or []
            if isinstance(item, Mapping) and item.get("SegmentLabel")]


def _instance_number(tags: Mapping[str, Any]) -> float:
    """Sort key: InstanceNumber, instances without a readable one last (so reasons name slices in order)."""
    try:
        return float(tags["InstanceNumber"])
    except (KeyError, TypeError, ValueError):
        return float("inf")
