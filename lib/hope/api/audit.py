"""HTTP route of the audit log: ``GET /hope/audit`` (read-only; no route writes, changes or removes an entry).

Filters: ``study`` (a study UID), ``user``, ``action`` (an :class:`~hope.audit.AuditAction` value), ``since`` and
``until`` (ISO 8601; without a zone, UTC), with ``limit`` and ``offset`` for paging, newest first. A malformed
filter is answered 422.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel

from hope.api.review import UID_MAX_LENGTH, UID_PATTERN
from hope.audit import AuditAction, AuditEntry, AuditLog
from hope.audit.log import MAX_LIMIT


class AuditEntryOut(BaseModel):
    """One audit entry (``at``: UTC ISO 8601)."""

    id: int
    at: str
    user: str
    verified: bool
    action: AuditAction
    study_uid: str | None
    series_uid: str | None
    detail: dict[str, Any]


def _entry(entry: AuditEntry) -> AuditEntryOut:
    return AuditEntryOut.model_validate(entry, from_attributes=True)


def build_router(audit: AuditLog) -> APIRouter:
    """``GET /hope/audit`` over ``audit``."""
    router = APIRouter(prefix="/hope/audit", tags=["HOPE audit"])

    @router.get("", summary="Audit entries, newest first (filtered, paged)")
    def entries(
        study: Annotated[str | None, Query(pattern=UID_PATTERN, max_length=UID_MAX_LENGTH,
                                           description="only entries about this StudyInstanceUID")] = None,
        user: Annotated[str | None, Query(min_length=1, max_length=256, description="only this user's")] = None,
        action: Annotated[AuditAction | None, Query(description="only this action")] = None,
        since: Annotated[datetime | None, Query(description="at or after (ISO 8601; no zone: UTC)")] = None,
        until: Annotated[datetime | None, Query(description="before (ISO 8601; no zone: UTC)")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[AuditEntryOut]:
        return [_entry(e) for e in audit.query(study, user, action, since, until, limit, offset)]

    return router
