"""The JSON that the plugin's ``/hope/...`` routes answer."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from hope.orthanc_plugin.catalog import SeriesRecord
from hope.orthanc_plugin.outbox import OutboxEvent

FINAL, SUGGESTED, UNLABELLED = "final", "suggested", "unlabelled"


def series_view(
    record: SeriesRecord, labelled: set[str], hope_state: Mapping[str, Mapping[str, Any]] | None
) -> dict[str, Any]:
    """One series with its validation and annotation state.

    ``state`` is ``final`` when a stored SEG references the series (the plugin saw it) or HOPE says so,
    ``suggested`` when HOPE has a suggestion for it, else ``unlabelled``. ``hope_state`` is HOPE's
    ``/hope/state`` ``series`` object, or ``None`` when HOPE could not be asked (``hope_reachable`` false).
    """
    hope = (hope_state or {}).get(record.series_uid) or {}
    version = hope.get("suggestion_model_version")
    if record.series_uid in labelled or hope.get("final"):
        state = FINAL
    elif version:
        state = SUGGESTED
    else:
        state = UNLABELLED
    return {
        "series_uid": record.series_uid,
        "study_uid": record.study_uid,
        "modality": record.modality,
        "orthanc_id": record.orthanc_id,
        "validation": {"valid": record.valid, "reasons": list(record.reasons)},
        "state": state,
        "suggestion_model_version": version,
        "hope_reachable": hope_state is not None,
    }


def outbox_view(counts: Mapping[str, int], troubled: list[OutboxEvent], worklist: int) -> dict[str, Any]:
    """Outbox counts per status, the events with delivery problems, and series still to be processed."""
    return {
        **counts,
        "series_to_process": worklist,
        "troubled": [{"id": e.id, "status": e.status, "type": e.body.get("type"),
                      "series_uid": e.body.get("series_uid"), "attempts": e.attempts, "last_error": e.last_error}
                     for e in troubled],
    }
