"""Import case records from CSV, all or nothing.

Columns (header on line 1, any order, case-insensitive): ``study_uid``, ``tumor_type``, ``verdict``,
``confirmation`` and optionally ``notes``. Without a ``notes`` column, stored notes are kept; an empty ``notes``
cell clears them. A row for a study that already has a case updates it; a row equal to the stored case changes
nothing. Every row is checked first (a new study is looked up in the DICOM store); if any row is wrong, every
problem is reported with its line number and nothing is written. Otherwise all rows are written in ONE transaction.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from hope.cases.repository import CaseBatchError, CaseError, CaseInput, CaseRepository, check_audit_info

REQUIRED_COLUMNS = ("study_uid", "tumor_type", "verdict", "confirmation")
OPTIONAL_COLUMNS = ("notes",)


class CsvImportError(CaseError):
    """The CSV was refused and nothing was written; ``errors`` lists every problem as ``line N: ...``."""

    def __init__(self, source: str, errors: Sequence[tuple[int, str]]) -> None:
        self.source = source
        self.errors = tuple(f"line {line}: {message}" for line, message in sorted(errors, key=lambda e: e[0]))
        super().__init__(
            f"{source}: nothing imported, {len(self.errors)} problem(s):\n" + "\n".join(f"  {e}" for e in self.errors)
        )


@dataclass(frozen=True)
class CsvRow:
    """A parsed data row and the line it starts on."""

    line: int
    case: CaseInput


def read_rows(stream: TextIO) -> tuple[list[CsvRow], list[tuple[int, str]]]:
    """Parse CSV text into rows, and the problems of its layout as ``(line, message)``.

    Checks the header, the number of fields of each row and repeated studies; blank lines are skipped. The
    values themselves are checked by the repository.
    """
    reader = csv.reader(stream)
    expected = ", ".join(REQUIRED_COLUMNS + OPTIONAL_COLUMNS)
    header = [name.strip().lower() for name in next(reader, [])]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    repeated = sorted({c for c in header if header.count(c) > 1})
    layout = [
        (f"missing column(s) {', '.join(missing)}", missing),
        (f"unknown column(s) {', '.join(unknown)}", unknown),
        (f"repeated column(s) {', '.join(repeated)}", repeated),
    ]
    errors = [(1, f"header: {message}; expected columns {expected}") for message, bad in layout if bad]
    if errors:
        return [], errors
    rows: list[CsvRow] = []
    first_line: dict[str, int] = {}
    end = reader.line_num
    try:
        for fields in reader:
            line, end = end + 1, reader.line_num
            if not any(f.strip() for f in fields):
                continue
            if len(fields) != len(header):
                errors.append((line, f"{len(fields)} fields, the header has {len(header)} ({', '.join(header)})"))
                continue
            values = dict(zip(header, fields, strict=True))
            uid = values["study_uid"].strip()
            if uid in first_line:
                errors.append((line, f"study_uid {uid!r} is already on line {first_line[uid]}; give each study once"))
                continue
            first_line[uid] = line
            rows.append(CsvRow(line, CaseInput(**values)))
    except csv.Error as exc:
        errors.append((reader.line_num, f"unreadable CSV: {exc}"))
    return rows, errors


def import_stream(
    stream: TextIO, repo: CaseRepository, who: str, reason: str, *, progress: bool = True, source: str = "CSV"
) -> int:
    """Import CSV text (see the module docstring): the number of cases created or changed.

    Raises :class:`CsvImportError` listing every bad row (nothing written), or
    :class:`~hope.cases.repository.CaseValidationError` when ``who`` or ``reason`` is missing.
    """
    who, reason = check_audit_info(who, reason)
    rows, errors = read_rows(stream)
    cases = [row.case for row in rows]
    if errors:  # still check the values of the readable rows, so that one run reports everything
        problems = repo.check_many(cases, progress=progress)
        raise CsvImportError(
            source, errors + [(row.line, p) for row, ps in zip(rows, problems, strict=True) for p in ps]
        )
    try:
        results = repo.save_many(cases, who=who, reason=reason, progress=progress)
    except CaseBatchError as exc:
        raise CsvImportError(source, [(rows[i].line, p) for i, ps in exc.by_index.items() for p in ps]) from None
    return sum(change != "unchanged" for _, change in results)


def import_csv(path: str | Path, repo: CaseRepository, who: str, reason: str, progress: bool = True) -> int:
    """Import the CSV file at ``path`` (UTF-8, optionally with BOM), all or nothing; see :func:`import_stream`."""
    with Path(path).open(newline="", encoding="utf-8-sig") as stream:
        return import_stream(stream, repo, who, reason, progress=progress, source=str(path))
