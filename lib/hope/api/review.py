"""HTTP routes of label review: ``/hope/review``.

* ``GET /hope/review/queue``: the labels awaiting a decision, oldest first (paged).
* ``POST /hope/review/{seg_sop_uid}``: a reviewer approves or rejects a submitted label (a rejection needs a
  comment); the decision is audited. With review off (``review.enabled`` in ``configs/server.yaml``): 409.
* ``GET /hope/review/series/{series_uid}``: a series' state, its submissions and the reviewer's last comment (what
  the annotator is shown when the case is opened).

Identifiers in the path must be DICOM UIDs (422 otherwise). Errors: 404 for an unknown label, 422 for a rejection
without a comment, 409 for a label decided already or superseded, 403 for a user who is not a reviewer.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Path, Query
from pydantic import BaseModel, Field

from hope.api.identity import current_identity
from hope.audit import AuditAction, AuditLog
from hope.auth.identity import Identity, Role
from hope.errors import ConflictError, ForbiddenError
from hope.review import ReviewBook, ReviewState, Submission, series_state
from hope.review.book import MAX_COMMENT_CHARS

#: A DICOM UID: digits in dot-separated components, at most 64 characters.
UID_PATTERN = r"^[0-9]+(\.[0-9]+)*$"
UID_MAX_LENGTH = 64

SegUid = Annotated[str, Path(pattern=UID_PATTERN, max_length=UID_MAX_LENGTH,
                             description="the SEG's SOP Instance UID")]
SeriesUid = Annotated[str, Path(pattern=UID_PATTERN, max_length=UID_MAX_LENGTH,
                                description="the image series' SeriesInstanceUID")]


class DecisionBody(BaseModel):
    """A reviewer's decision."""

    decision: Literal["approve", "reject"]
    comment: str = Field("", max_length=MAX_COMMENT_CHARS,
                         description="what the annotator should correct (required to reject)")


class SubmissionOut(BaseModel):
    """A submitted label and its decision, if any (times UTC ISO 8601)."""

    seg_sop_uid: str
    series_uid: str
    study_uid: str
    annotator: str
    submitted_at: str
    state: ReviewState
    reviewer: str | None
    decided_at: str | None
    comment: str | None


class SeriesReviewOut(BaseModel):
    """A series' review: its state, every submission (oldest first) and the reviewer's last comment."""

    series_uid: str
    state: ReviewState
    last_comment: str | None
    history: list[SubmissionOut]


def _submission(sub: Submission) -> SubmissionOut:
    decision = sub.decision
    return SubmissionOut(
        seg_sop_uid=sub.seg_sop_uid, series_uid=sub.series_uid, study_uid=sub.study_uid, annotator=sub.annotator,
        submitted_at=sub.submitted_at, state=sub.state,
        reviewer=decision.reviewer if decision else None,
        decided_at=decision.decided_at if decision else None,
        comment=decision.comment if decision else None,
    )


def build_router(
    book: ReviewBook, audit: AuditLog, enabled: bool, has_suggestion: Callable[[str], bool] | None = None,
    on_approved: Callable[[str], None] | None = None,
) -> APIRouter:
    """The ``/hope/review`` routes.

    Args:
        book: the review records.
        audit: where decisions are recorded.
        enabled: ``review.enabled``; when off, decisions are refused (409).
        has_suggestion: whether a series has a model's suggestion (its state is ``suggested`` rather than
            ``unlabelled`` while no label was submitted); ``None``: never.
        on_approved: called with the image series' UID after a label of it is approved: it now counts (listings,
            retraining, scoring).
    """
    router = APIRouter(prefix="/hope/review", tags=["HOPE review"])

    @router.get("/queue", summary="Labels awaiting review, oldest first")
    def queue(limit: Annotated[int, Query(ge=1, le=500)] = 50,
              offset: Annotated[int, Query(ge=0)] = 0) -> list[SubmissionOut]:
        return [_submission(sub) for sub in book.queue(limit, offset)]

    @router.post("/{seg_sop_uid}", summary="Approve or reject a submitted label")
    def decide(seg_sop_uid: SegUid, body: DecisionBody,
               identity: Annotated[Identity, Depends(current_identity)]) -> SubmissionOut:
        if not enabled:
            raise ConflictError("label review is off, so saved labels count as final and there is nothing to "
                                "decide; set review.enabled: true in configs/server.yaml and restart HOPE")
        if not identity.may(Role.REVIEWER):
            raise ForbiddenError(f"{identity.user} is {identity.role.label}; approving or rejecting a label needs "
                                 f"the {Role.REVIEWER.label} role")
        approve = body.decision == "approve"
        sub = book.decide(seg_sop_uid, identity.user, approve, body.comment)
        assert sub.decision is not None
        audit.record(identity.user, identity.verified,
                     AuditAction.LABEL_APPROVED if approve else AuditAction.LABEL_REJECTED,
                     study_uid=sub.study_uid, series_uid=sub.series_uid,
                     detail={"seg_sop_uid": sub.seg_sop_uid, "annotator": sub.annotator,
                             "comment": sub.decision.comment})
        if approve and on_approved is not None:
            on_approved(sub.series_uid)
        return _submission(sub)

    @router.get("/series/{series_uid}", summary="A series' review state, history and last comment")
    def series(series_uid: SeriesUid) -> SeriesReviewOut:
        review = book.state_of_series(series_uid)
        suggested = has_suggestion is not None and review is None and has_suggestion(series_uid)
        return SeriesReviewOut(
            series_uid=series_uid,
            state=series_state(review, suggested),
            last_comment=review.last_comment if review else None,
            history=[_submission(sub) for sub in review.history] if review else [],
        )

    return router
