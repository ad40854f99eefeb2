"""Results kept with the images: a task's answer about a series, stored as that series' JSON attachment."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from hope.datastore.attachments import SeriesAttachments, attachment_name


class ResultStore:
    """Keeps the latest result of each task on each series in Orthanc (one PUT: never half-written)."""

    def __init__(self, attachments: SeriesAttachments) -> None:
        self.attachments = attachments

    def keep(self, task: str, series_uid: str, user: str | None, result: dict[str, Any]) -> dict[str, str]:
        """Store ``result`` of ``task`` on the series with who asked and when; where it is kept."""
        name = attachment_name(task)
        record = {"task": task, "series_uid": series_uid, "user": user,
                  "created": datetime.now(UTC).isoformat(timespec="seconds"), "result": result}
        series_id = self.attachments.put(series_uid, name, record)
        return {"orthanc_series": series_id, "attachment": name}

    def latest(self, task: str, series_uid: str) -> dict[str, Any] | None:
        """The latest result of ``task`` kept on the series (task, who asked, when, the result), or ``None``."""
        return self.attachments.get(series_uid, attachment_name(task))
