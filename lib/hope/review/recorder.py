"""What happens to a saved final label: submitted for review (review on) or final at once, and audited either way."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from monailabel.interfaces.datastore import Datastore, DefaultLabelTag

from hope.audit import AuditAction, AuditLog
from hope.review.book import ReviewBook

logger = logging.getLogger(__name__)


class LabelRecorder:
    """Records each final label the datastore stored: who saved it, and, with review on, its submission.

    Args:
        datastore: where the label was saved; its label info holds the SEG's UIDs.
        reviews: the review records.
        audit: the audit log.
        review_enabled: ``review.enabled``: a saved label is submitted, and counts only once approved.
        started_from: the suggestion a label just saved for a series started from (task, model version, when it was
            made, the Dice of the label against it), kept in the audit entry as ``suggestion``; ``None``: not kept.
    """

    def __init__(self, datastore: Datastore, reviews: ReviewBook, audit: AuditLog, review_enabled: bool,
                 started_from: Callable[[str], Mapping[str, Any] | None] | None = None) -> None:
        self.datastore = datastore
        self.reviews = reviews
        self.audit = audit
        self.review_enabled = review_enabled
        self.started_from = started_from

    def saved(self, image_id: str, user: str, verified: bool) -> dict[str, str]:
        """Record the final label just saved for series ``image_id`` by ``user``; its review state and SEG."""
        info = self.datastore.get_label_info(image_id, DefaultLabelTag.FINAL.value) or {}
        sop_uid, seg_series_uid = str(info.get("seg_sop_uid", "")), str(info.get("seg_series_uid", ""))
        study_uid = str((self.datastore.get_image_info(image_id) or {}).get("StudyInstanceUID", "")) or None
        submitted = self.review_enabled and bool(sop_uid)
        if self.review_enabled and not sop_uid:
            logger.warning(f"the final label of {image_id} is stored, but its SEG's UID is not known here (the local "
                           "cache was not updated): it is not submitted for review; save it again")
        if submitted:
            self.reviews.submit(sop_uid, image_id, study_uid or "", user)
        detail: dict[str, Any] = {"seg_sop_uid": sop_uid, "seg_series_uid": seg_series_uid}
        suggestion = self.started_from(image_id) if self.started_from is not None else None
        if suggestion is not None:
            detail["suggestion"] = dict(suggestion)
        self.audit.record(user, verified, AuditAction.LABEL_SUBMITTED if submitted else AuditAction.LABEL_SAVED,
                          study_uid=study_uid, series_uid=image_id, detail=detail)
        return {"review": "submitted" if submitted else "final", "seg_sop_uid": sop_uid}
