"""Case records with validation and an append-only audit trail.

Every change names ``who`` made it and ``reason``, and writes its :class:`~hope.cases.models.AuditEntry` in the
same transaction as the change: either both are stored or neither. Nothing here edits or removes an audit entry.

Rules:

* ``tumor_type``, ``verdict`` and ``confirmation`` must be keys of the vocabulary (``configs/cases.yaml``); they
  are matched after trimming, lower-casing and turning spaces and hyphens into ``_``. A tumour type may restrict
  its verdicts (a chordoma is malignant).
* A new case needs a study the DICOM store has (``study_exists``); updating or deleting a case does not ask the
  store again, so a case can be corrected or removed after its study left the store.
* An update that changes nothing writes no audit entry and leaves ``updated_at`` as it was (result
  ``"unchanged"``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import Engine, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker
from tqdm import tqdm

from hope.cases.models import UID_LENGTH, WHO_LENGTH, AuditEntry, Base, CaseRecord, utcnow
from hope.cases.vocabulary import CaseVocabulary, normalise_key

FIELDS = ("tumor_type", "verdict", "confirmation", "notes")
Change = Literal["created", "updated", "unchanged"]

_UID = re.compile(r"[0-9]+(\.[0-9]+)*")
_LOOKUP_CHUNK = 500  # study UIDs per IN (...) query


class CaseError(ValueError):
    """Base class of the errors of case records; the message says what is wrong and what is allowed."""


class CaseValidationError(CaseError):
    """A change was refused because of its content; ``problems`` lists each one (field, value, allowed values)."""

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("; ".join(self.problems))


class CaseBatchError(CaseValidationError):
    """Some cases of a batch are invalid, so none was written; ``by_index`` maps batch index -> problems."""

    def __init__(self, by_index: Mapping[int, Sequence[str]]) -> None:
        self.by_index = {i: tuple(p) for i, p in sorted(by_index.items())}
        super().__init__([f"case {i + 1}: {p}" for i, problems in self.by_index.items() for p in problems])


class CaseNotFoundError(CaseError, LookupError):
    """There is no case record for the study."""


class CaseExistsError(CaseError):
    """:meth:`CaseRepository.create` was asked for a study that already has a case record."""


@dataclass(frozen=True)
class CaseInput:
    """A case record as a client states it; ``notes=None`` keeps the stored notes (``""`` for a new case)."""

    study_uid: str
    tumor_type: str
    verdict: str
    confirmation: str
    notes: str | None = None


@dataclass(frozen=True)
class Case:
    """A stored case record (a snapshot; changing it changes nothing in the database)."""

    study_uid: str
    tumor_type: str
    verdict: str
    confirmation: str
    notes: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class AuditEvent:
    """A stored audit entry (a snapshot): old and new values of the changed fields, who, when (UTC), why."""

    id: int
    study_uid: str
    action: str
    old_values: Mapping[str, Any]
    new_values: Mapping[str, Any]
    who: str
    at: datetime
    reason: str


#: First characters that make a spreadsheet run a cell as a formula when the text is exported and opened.
FORMULA_STARTS = ("=", "+", "-", "@")  # values are stripped, so a leading tab or CR never stays


def formula_problem(field: str, value: str | None) -> str | None:
    """A problem when free text ``value`` would run as a spreadsheet formula once exported (CSV injection)."""
    text = (value or "").strip()
    if text.startswith(FORMULA_STARTS):
        return (f"{field}: {text[:20]!r} starts with {text[0]!r}, which a spreadsheet runs as a formula; "
                "start it with a letter, a digit or a quote")
    return None


def audit_problems(who: str | None, reason: str | None) -> list[str]:
    """What is wrong with the ``who`` and ``reason`` of a change (empty when both are usable)."""
    problems = []
    if not (who or "").strip():
        problems.append("who is required: name the person making the change")
    elif len(who.strip()) > WHO_LENGTH:
        problems.append(f"who: at most {WHO_LENGTH} characters, got {len(who.strip())}")
    if not (reason or "").strip():
        problems.append("reason is required: say why the case is created, changed or deleted")
    problems += [p for p in (formula_problem("who", who), formula_problem("reason", reason)) if p]
    return problems


def check_audit_info(who: str | None, reason: str | None) -> tuple[str, str]:
    """``who`` and ``reason`` trimmed; :class:`CaseValidationError` if either is missing or unusable."""
    problems = audit_problems(who, reason)
    if problems:
        raise CaseValidationError(problems)
    return str(who).strip(), str(reason).strip()


def _snapshot(record: CaseRecord) -> Case:
    return Case(
        study_uid=record.study_uid,
        tumor_type=record.tumor_type,
        verdict=record.verdict,
        confirmation=record.confirmation,
        notes=record.notes,
        created_at=record.created_at,
        updated_at=record.updated_at,
    )


def _event(entry: AuditEntry) -> AuditEvent:
    return AuditEvent(
        id=entry.id,
        study_uid=entry.study_uid,
        action=entry.action,
        old_values=dict(entry.old_values),
        new_values=dict(entry.new_values),
        who=entry.who,
        at=entry.at,
        reason=entry.reason,
    )


class CaseRepository:
    """Case records in a SQLAlchemy database, validated against ``vocabulary``, with their audit trail.

    ``engine``: where the records live (tables are created if missing; see :func:`hope.cases.models.make_engine`).
    ``study_exists``: whether the DICOM store has a study (see :func:`hope.cases.orthanc_lookup.orthanc_study_exists`);
    whatever it raises propagates and nothing is written.
    """

    def __init__(self, engine: Engine, vocabulary: CaseVocabulary, study_exists: Callable[[str], bool]) -> None:
        Base.metadata.create_all(engine)
        self._sessions = sessionmaker(engine, expire_on_commit=False)
        self.vocabulary = vocabulary
        self._study_exists = study_exists

    # -- validation -------------------------------------------------------------------------------------------

    @staticmethod
    def _vocabulary_problem(field: str, value: str, allowed: Iterable[str], what: str) -> str:
        listed = ", ".join(sorted(allowed))
        if not value:
            return f"{field} is required; allowed: {listed}"
        return f"{field}: {value!r} is not {what}; allowed: {listed}"

    def _validate(self, case: CaseInput, check_study: bool) -> tuple[dict[str, Any], list[str]]:
        """The normalised values of ``case`` and its problems; asks the store about the study if ``check_study``."""
        vocab = self.vocabulary
        uid = (case.study_uid or "").strip()
        values: dict[str, Any] = {
            "study_uid": uid,
            "tumor_type": normalise_key(case.tumor_type or ""),
            "verdict": normalise_key(case.verdict or ""),
            "confirmation": normalise_key(case.confirmation or ""),
            "notes": None if case.notes is None else case.notes.strip(),
        }
        problems = []
        uid_ok = len(uid) <= UID_LENGTH and _UID.fullmatch(uid) is not None
        if not uid_ok:
            problems.append(f"study_uid: {uid!r} is not a DICOM UID (digits and dots, at most {UID_LENGTH} characters)")
        tumor = vocab.tumor_types.get(values["tumor_type"])
        if tumor is None:
            problems.append(
                self._vocabulary_problem("tumor_type", values["tumor_type"], vocab.tumor_types, "a known tumour type")
            )
        if values["verdict"] not in vocab.verdicts:
            problems.append(self._vocabulary_problem("verdict", values["verdict"], vocab.verdicts, "a verdict"))
        elif tumor is not None and values["verdict"] not in tumor.verdicts:
            problems.append(
                f"verdict: {values['verdict']!r} is not possible for tumor_type {tumor.key!r} ({tumor.name}); "
                f"allowed: {', '.join(sorted(tumor.verdicts))}"
            )
        if values["confirmation"] not in vocab.confirmations:
            problems.append(
                self._vocabulary_problem("confirmation", values["confirmation"], vocab.confirmations, "a confirmation")
            )
        notes_problem = formula_problem("notes", values["notes"])
        if notes_problem:
            problems.append(notes_problem)
        if uid_ok and check_study and not self._study_exists(uid):
            problems.append(f"study_uid: study {uid!r} is not in the DICOM store; a case needs an existing study")
        return values, problems

    def _existing_uids(self, uids: Iterable[str]) -> set[str]:
        wanted = sorted({uid.strip() for uid in uids})
        found: set[str] = set()
        with self._sessions() as session:
            for start in range(0, len(wanted), _LOOKUP_CHUNK):
                chunk = wanted[start : start + _LOOKUP_CHUNK]
                found.update(session.scalars(select(CaseRecord.study_uid).where(CaseRecord.study_uid.in_(chunk))))
        return found

    def _check_all(self, cases: Sequence[CaseInput], progress: bool) -> tuple[list[dict[str, Any]], list[list[str]]]:
        existing = self._existing_uids(case.study_uid or "" for case in cases)
        values, problems = [], []
        for case in tqdm(cases, desc="checking cases", unit="case", disable=not progress):
            v, p = self._validate(case, check_study=(case.study_uid or "").strip() not in existing)
            values.append(v)
            problems.append(p)
        return values, problems

    def check_many(self, cases: Sequence[CaseInput], *, progress: bool = False) -> list[list[str]]:
        """The problems of each case (an empty list when it could be saved), as :meth:`save_many` finds them.

        Writes nothing. New studies are looked up in the store; ``progress`` shows a tqdm bar.
        """
        return self._check_all(cases, progress)[1]

    # -- writing ----------------------------------------------------------------------------------------------

    @staticmethod
    def _write(
        session: Session, values: Mapping[str, Any], who: str, reason: str, now: datetime
    ) -> tuple[Case, Change]:
        """Create or update the record of ``values`` (already validated) and add its audit entry."""
        uid = values["study_uid"]
        record = session.get(CaseRecord, uid)
        if record is None:
            fields = {f: values[f] for f in FIELDS} | {"notes": values["notes"] or ""}
            record = CaseRecord(study_uid=uid, created_at=now, updated_at=now, **fields)
            session.add(record)
            session.add(
                AuditEntry(
                    study_uid=uid, action="create", old_values={}, new_values=fields, who=who, at=now, reason=reason
                )
            )
            return _snapshot(record), "created"
        old = {f: getattr(record, f) for f in FIELDS if values[f] is not None and getattr(record, f) != values[f]}
        if not old:
            return _snapshot(record), "unchanged"
        new = {f: values[f] for f in old}
        for field, value in new.items():
            setattr(record, field, value)
        record.updated_at = now
        session.add(
            AuditEntry(study_uid=uid, action="update", old_values=old, new_values=new, who=who, at=now, reason=reason)
        )
        return _snapshot(record), "updated"

    def create(self, case: CaseInput, *, who: str, reason: str) -> Case:
        """Store a new case; :class:`CaseExistsError` if the study has one, :class:`CaseValidationError` if invalid."""
        problems = audit_problems(who, reason)
        uid = (case.study_uid or "").strip()
        if uid in self._existing_uids([uid]):
            raise CaseExistsError(f"study {uid!r} already has a case record; update it instead")
        values, field_problems = self._validate(case, check_study=True)
        if problems or field_problems:
            raise CaseValidationError(problems + field_problems)
        who, reason = who.strip(), reason.strip()
        try:
            with self._sessions.begin() as session:
                if session.get(CaseRecord, uid) is not None:
                    raise CaseExistsError(f"study {uid!r} already has a case record; update it instead")
                return self._write(session, values, who, reason, utcnow())[0]
        except IntegrityError as exc:
            raise CaseExistsError(f"study {uid!r} got a case record at the same time; update it instead") from exc

    def update(
        self,
        study_uid: str,
        *,
        who: str,
        reason: str,
        tumor_type: str | None = None,
        verdict: str | None = None,
        confirmation: str | None = None,
        notes: str | None = None,
    ) -> Case:
        """Change the given fields (``None`` keeps a field); :class:`CaseNotFoundError` if there is no case.

        The result is validated as a whole (a new verdict must suit the tumour type). A change to nothing writes no
        audit entry.
        """
        problems = audit_problems(who, reason)
        with self._sessions.begin() as session:
            record = self._record(session, study_uid)
            merged = CaseInput(
                study_uid=record.study_uid,
                tumor_type=record.tumor_type if tumor_type is None else tumor_type,
                verdict=record.verdict if verdict is None else verdict,
                confirmation=record.confirmation if confirmation is None else confirmation,
                notes=notes,
            )
            values, field_problems = self._validate(merged, check_study=False)
            if problems or field_problems:
                raise CaseValidationError(problems + field_problems)
            return self._write(session, values, who.strip(), reason.strip(), utcnow())[0]

    def upsert(self, case: CaseInput, *, who: str, reason: str) -> tuple[Case, Change]:
        """Create the case, or update it to ``case``: the stored case and ``"created"``, ``"updated"`` or
        ``"unchanged"``. Raises :class:`CaseValidationError` when ``case``, ``who`` or ``reason`` is unusable."""
        problems = audit_problems(who, reason)
        uid = (case.study_uid or "").strip()
        values, field_problems = self._validate(case, check_study=uid not in self._existing_uids([uid]))
        if problems or field_problems:
            raise CaseValidationError(problems + field_problems)
        try:
            with self._sessions.begin() as session:
                return self._write(session, values, who.strip(), reason.strip(), utcnow())
        except IntegrityError:  # created concurrently between our read and our insert: now it is an update
            with self._sessions.begin() as session:
                return self._write(session, values, who.strip(), reason.strip(), utcnow())

    def save_many(
        self, cases: Sequence[CaseInput], *, who: str, reason: str, progress: bool = False
    ) -> list[tuple[Case, Change]]:
        """Create or update every case in ONE transaction, all or nothing, with one audit entry per change.

        Every case is validated first; if any is invalid, :class:`CaseBatchError` lists the problems of all of
        them and nothing is written. All entries share one timestamp. ``progress`` shows tqdm bars.
        """
        who, reason = check_audit_info(who, reason)
        values, problems = self._check_all(cases, progress)
        if any(problems):
            raise CaseBatchError({i: p for i, p in enumerate(problems) if p})
        now = utcnow()
        with self._sessions.begin() as session:
            return [
                self._write(session, v, who, reason, now)
                for v in tqdm(values, desc="writing cases", unit="case", disable=not progress)
            ]

    def delete(self, study_uid: str, *, who: str, reason: str) -> Case:
        """Remove the case (its audit trail stays) and return what it was; :class:`CaseNotFoundError` if none."""
        who, reason = check_audit_info(who, reason)
        with self._sessions.begin() as session:
            record = self._record(session, study_uid)
            case = _snapshot(record)
            old = {f: getattr(record, f) for f in FIELDS}
            session.delete(record)
            session.add(
                AuditEntry(
                    study_uid=case.study_uid,
                    action="delete",
                    old_values=old,
                    new_values={},
                    who=who,
                    at=utcnow(),
                    reason=reason,
                )
            )
            return case

    # -- reading ----------------------------------------------------------------------------------------------

    @staticmethod
    def _record(session: Session, study_uid: str) -> CaseRecord:
        record = session.get(CaseRecord, (study_uid or "").strip())
        if record is None:
            raise CaseNotFoundError(f"study {study_uid!r} has no case record")
        return record

    def get(self, study_uid: str) -> Case:
        """The case of ``study_uid``; :class:`CaseNotFoundError` if there is none."""
        with self._sessions() as session:
            return _snapshot(self._record(session, study_uid))

    def list_cases(
        self, *, tumor_type: str | None = None, verdict: str | None = None, confirmation: str | None = None
    ) -> tuple[Case, ...]:
        """All cases, by study UID; each given filter keeps the cases with that value."""
        query = select(CaseRecord).order_by(CaseRecord.study_uid)
        for column, value in (
            (CaseRecord.tumor_type, tumor_type),
            (CaseRecord.verdict, verdict),
            (CaseRecord.confirmation, confirmation),
        ):
            if value is not None:
                query = query.where(column == normalise_key(value))
        with self._sessions() as session:
            return tuple(_snapshot(r) for r in session.scalars(query))

    def history(self, study_uid: str | None = None) -> tuple[AuditEvent, ...]:
        """Audit entries in the order they were written: of one study (also after its case was deleted), or all."""
        query = select(AuditEntry).order_by(AuditEntry.id)
        if study_uid is not None:
            query = query.where(AuditEntry.study_uid == study_uid.strip())
        with self._sessions() as session:
            return tuple(_event(e) for e in session.scalars(query))
