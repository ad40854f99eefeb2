"""SQLAlchemy tables of case records and their audit trail, and the engine that holds them.

Audit entries are append-only: the ORM refuses to update or delete one, and on SQLite triggers refuse it for any
SQL as well. On another database, give HOPE's database role only ``INSERT`` and ``SELECT`` on ``case_audit``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import (
    DDL,
    JSON,
    CheckConstraint,
    DateTime,
    Dialect,
    Engine,
    String,
    Text,
    TypeDecorator,
    create_engine,
    event,
    make_url,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, Mapper, mapped_column
from sqlalchemy.pool import StaticPool

ACTIONS = ("create", "update", "delete")
UID_LENGTH = 64  # DICOM UIDs are at most 64 characters
WHO_LENGTH = 128


def utcnow() -> datetime:
    """The current time, timezone-aware, in UTC."""
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every backend: stored as naive UTC, read back with ``tzinfo=UTC``."""

    impl = DateTime
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Refuse naive datetimes; store aware ones as naive UTC."""
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: HOPE stores only timezone-aware times")
        return value.astimezone(UTC).replace(tzinfo=None)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        """Attach UTC to the stored naive time."""
        return None if value is None else value.replace(tzinfo=UTC)


class Base(DeclarativeBase):
    """Declarative base of the case tables."""


class CaseRecord(Base):
    """The ground truth of one study, from its pathology report or follow-up."""

    __tablename__ = "cases"

    study_uid: Mapped[str] = mapped_column(String(UID_LENGTH), primary_key=True)
    tumor_type: Mapped[str] = mapped_column(String(64))
    verdict: Mapped[str] = mapped_column(String(32))
    confirmation: Mapped[str] = mapped_column(String(32))
    notes: Mapped[str] = mapped_column(Text, default="")
    created_at: Mapped[datetime] = mapped_column(UTCDateTime)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime)


class AuditEntry(Base):
    """One change to a case record: who, when (UTC), why, and the old and new value of each changed field.

    ``old_values`` and ``new_values`` map field name -> value for the changed fields only: a ``create`` has
    ``old_values == {}``, a ``delete`` has ``new_values == {}``. ``study_uid`` is not a foreign key, so the trail
    outlives a deleted case.
    """

    __tablename__ = "case_audit"
    __table_args__ = (CheckConstraint(f"action IN {ACTIONS!r}", name="case_audit_action"),)

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=True)
    study_uid: Mapped[str] = mapped_column(String(UID_LENGTH), index=True)
    action: Mapped[str] = mapped_column(String(8))
    old_values: Mapped[dict[str, Any]] = mapped_column(JSON)
    new_values: Mapped[dict[str, Any]] = mapped_column(JSON)
    who: Mapped[str] = mapped_column(String(WHO_LENGTH))
    at: Mapped[datetime] = mapped_column(UTCDateTime)
    reason: Mapped[str] = mapped_column(Text)


class AuditImmutableError(RuntimeError):
    """Something tried to change or remove an audit entry."""


@event.listens_for(AuditEntry, "before_update")
@event.listens_for(AuditEntry, "before_delete")
def _refuse_audit_change(mapper: Mapper[AuditEntry], connection: Any, target: AuditEntry) -> None:
    raise AuditImmutableError(f"audit entry {target.id} is append-only: it cannot be changed or deleted")


for _operation in ("UPDATE", "DELETE"):
    event.listen(
        AuditEntry.__table__,
        "after_create",
        DDL(
            f"CREATE TRIGGER IF NOT EXISTS case_audit_no_{_operation.lower()} BEFORE {_operation} ON case_audit "
            "BEGIN SELECT RAISE(ABORT, 'case_audit is append-only'); END"
        ).execute_if(dialect="sqlite"),
    )


def make_engine(url: str) -> Engine:
    """An engine for ``url`` (any SQLAlchemy URL); :class:`~hope.cases.repository.CaseRepository` creates the tables.

    For a SQLite file, its folder is created; an in-memory SQLite database (``sqlite://``) is shared by all
    threads of the process (for tests).
    """
    parsed = make_url(url)
    kwargs: dict[str, Any] = {}
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:"):
            kwargs = {"poolclass": StaticPool, "connect_args": {"check_same_thread": False}}
        else:
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
    return create_engine(url, **kwargs)
