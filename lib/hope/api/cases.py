"""HTTP routes of case records: ``/cases``.

* Who makes a change: with sign-in on, the signed-in user (``X-HOPE-User`` and ``who`` are ignored). On the
  loopback demo (sign-in off), the ``X-HOPE-User`` header or the field ``who`` (JSON body of ``PUT``, query
  parameter of ``DELETE``, form field of ``POST /cases/import``): either one, both only if they agree, recorded as
  given.
* Every change needs a ``reason`` (body, query parameter or form field as for ``who``).
* Errors: 422 for invalid content (an unknown tumour type, verdict or confirmation, a verdict the tumour type cannot
  have, a malformed study UID, a missing ``who`` or ``reason``, a bad CSV) and for a study the DICOM store does not
  have (the request names a study it cannot be about); 404 for a study without a case record; 502 when the DICOM
  store cannot be asked. Each with a ``detail`` that says what is wrong and what is allowed.
* No route changes or removes audit entries.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, File, Form, Header, Query, Response, UploadFile
from pydantic import BaseModel, Field

from hope.api.identity import current_identity
from hope.audit import AuditAction, AuditLog
from hope.auth.identity import Identity
from hope.cases.csv_import import import_stream
from hope.cases.orthanc_lookup import StudyLookupError
from hope.cases.repository import AuditEvent, Case, CaseError, CaseInput, CaseNotFoundError, CaseRepository
from hope.errors import InvalidInputError, NotFoundError, StoreError

USER_HEADER = "X-HOPE-User"

UserHeader = Annotated[str | None, Header(alias=USER_HEADER, description="who makes the change (or field `who`); "
                                                                       "ignored when sign-in is on")]
SignedIn = Annotated[Identity, Depends(current_identity)]


class CaseBody(BaseModel):
    """The ground truth of a study, and who states it why."""

    tumor_type: str = Field(description="a tumour type key, see GET /cases/vocabulary")
    verdict: str = Field(description="benign, borderline or malignant (see GET /cases/vocabulary)")
    confirmation: str = Field(description="pathology or follow_up (see GET /cases/vocabulary)")
    notes: str | None = Field(None, description="free text; omitted keeps the stored notes")
    reason: str = Field(description="why the case is created or changed (kept in the audit trail)")
    who: str | None = Field(None, description=f"who makes the change, unless the {USER_HEADER} header says it")


class CaseOut(BaseModel):
    """A stored case record."""

    study_uid: str
    tumor_type: str
    verdict: str
    confirmation: str
    notes: str
    created_at: datetime
    updated_at: datetime


class CasePutOut(CaseOut):
    """A case record after ``PUT``, with what the request did."""

    change: Literal["created", "updated", "unchanged"]


class AuditOut(BaseModel):
    """An audit entry: the old and new values of the changed fields, who, when (UTC) and why."""

    id: int
    study_uid: str
    action: Literal["create", "update", "delete"]
    old_values: dict[str, Any]
    new_values: dict[str, Any]
    who: str
    at: datetime
    reason: str


class ImportOut(BaseModel):
    """Result of a CSV import."""

    imported: int = Field(description="cases created or changed (rows equal to the stored case are not counted)")


def _case(case: Case) -> CaseOut:
    return CaseOut.model_validate(case, from_attributes=True)


def _events(events: tuple[AuditEvent, ...]) -> list[AuditOut]:
    return [AuditOut.model_validate(e, from_attributes=True) for e in events]


def _who(identity: Identity, header: str | None, field: str | None) -> str:
    if identity.verified:
        return identity.user
    header, field = (header or "").strip(), (field or "").strip()
    if header and field and header != field:
        raise InvalidInputError(f"who: the {USER_HEADER} header says {header!r} but the field who says {field!r}")
    if not (header or field):
        raise InvalidInputError(f"who is required: send the {USER_HEADER} header or the field who")
    return header or field


@contextmanager
def _http_errors() -> Iterator[None]:
    """Answer case errors with their HTTP status and message."""
    try:
        yield
    except CaseNotFoundError as exc:
        raise NotFoundError(str(exc)) from exc
    except CaseError as exc:
        raise InvalidInputError(str(exc)) from exc
    except StudyLookupError as exc:
        raise StoreError(str(exc)) from exc


def build_router(repo: CaseRepository, audit: AuditLog | None = None) -> APIRouter:
    """The ``/cases`` routes bound to ``repo``; each change is also recorded in the server's ``audit`` log."""

    def audited(user: str, identity: Identity, action: AuditAction, study_uid: str | None, **detail: Any) -> None:
        if audit is not None:
            audit.record(user, identity.verified, action, study_uid=study_uid, detail=detail)

    router = APIRouter(prefix="/cases", tags=["HOPE cases"])

    @router.get("", summary="List case records (optionally filtered)")
    def list_cases(
        tumor_type: str | None = None, verdict: str | None = None, confirmation: str | None = None
    ) -> list[CaseOut]:
        return [_case(c) for c in repo.list_cases(tumor_type=tumor_type, verdict=verdict, confirmation=confirmation)]

    @router.get("/vocabulary", summary="Allowed tumour types, verdicts and confirmations")
    def get_vocabulary() -> dict[str, Any]:
        return repo.vocabulary.as_dict()

    @router.get("/audit", summary="The whole audit trail, oldest first")
    def get_all_audit() -> list[AuditOut]:
        return _events(repo.history())

    @router.post("/import", summary="Import a CSV of cases, all or nothing")
    def post_import(
        file: Annotated[UploadFile, File(description="CSV: study_uid, tumor_type, verdict, confirmation[, notes]")],
        identity: SignedIn,
        reason: Annotated[str, Form(description="why these cases are imported")],
        who: Annotated[str | None, Form(description=f"who imports, unless the {USER_HEADER} header says it")] = None,
        x_hope_user: UserHeader = None,
    ) -> ImportOut:
        """Every row is checked first; if any is wrong, the 422 lists every problem by line and nothing is written."""
        user = _who(identity, x_hope_user, who)
        try:
            text = file.file.read().decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{file.filename}: not UTF-8 text ({exc}); nothing imported") from exc
        with _http_errors():
            count = import_stream(
                io.StringIO(text, newline=""), repo, user, reason, progress=False, source=file.filename or "upload"
            )
        audited(user, identity, AuditAction.CASES_IMPORTED, None, file=file.filename, imported=count, reason=reason)
        return ImportOut(imported=count)

    @router.get("/{study_uid}", summary="The case record of a study")
    def get_case(study_uid: str) -> CaseOut:
        with _http_errors():
            return _case(repo.get(study_uid))

    @router.put("/{study_uid}", summary="Create or update the case record of a study")
    def put_case(study_uid: str, body: CaseBody, response: Response, identity: SignedIn,
                 x_hope_user: UserHeader = None) -> CasePutOut:
        """201 when created, 200 when updated or unchanged (an unchanged case writes no audit entry)."""
        user = _who(identity, x_hope_user, body.who)
        case = CaseInput(study_uid, body.tumor_type, body.verdict, body.confirmation, body.notes)
        with _http_errors():
            stored, change = repo.upsert(case, who=user, reason=body.reason)
        if change != "unchanged":
            audited(user, identity, AuditAction.CASE_RECORD_WRITTEN, study_uid, change=change, reason=body.reason)
        if change == "created":
            response.status_code = 201
        return CasePutOut(**_case(stored).model_dump(), change=change)

    @router.delete("/{study_uid}", summary="Delete the case record of a study (its audit trail stays)")
    def delete_case(
        study_uid: str,
        identity: SignedIn,
        reason: Annotated[str, Query(description="why the case is deleted")],
        who: Annotated[str | None, Query(description=f"who deletes, unless the {USER_HEADER} header says it")] = None,
        x_hope_user: UserHeader = None,
    ) -> CaseOut:
        user = _who(identity, x_hope_user, who)
        with _http_errors():
            deleted = _case(repo.delete(study_uid, who=user, reason=reason))
        audited(user, identity, AuditAction.CASE_RECORD_WRITTEN, study_uid, change="deleted", reason=reason)
        return deleted

    @router.get("/{study_uid}/audit", summary="The audit trail of one study, oldest first")
    def get_audit(study_uid: str) -> list[AuditOut]:
        """Also after the case was deleted; 404 if the study never had a case record."""
        events = repo.history(study_uid)
        if not events:
            raise NotFoundError(f"study {study_uid!r} never had a case record")
        return _events(events)

    return router
