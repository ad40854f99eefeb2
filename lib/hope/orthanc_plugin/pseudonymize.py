"""Pseudonymisation on ingest, with Orthanc's own anonymisation.

When it is on, a study that becomes stable and was not made by Orthanc's anonymisation is replaced by a
pseudonymised copy (new UIDs, patient name and id replaced by a pseudonym, private tags dropped); the original is
deleted unless the configuration keeps it. Series of original studies are never reported to HOPE, so only
pseudonymised studies enter the annotation pool. The original-to-pseudonym map is kept only where the
configuration says (``MapFile``); without it, nothing links a pseudonym back to the patient.

The pseudonym is ``HOPE-`` and 12 hex digits of SHA-256 over the configured salt and the original PatientID, so
the studies of one patient share a pseudonym without any stored map.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hope.orthanc_plugin.sqlite_store import SqliteStore

#: Metadata Orthanc sets on the resources its anonymisation creates.
ANONYMIZED_FROM = "AnonymizedFrom"
#: Tags kept through anonymisation because annotators and tasks need them (no identifying content).
KEPT_TAGS = ("StudyDescription", "SeriesDescription", "BodyPartExamined", "Modality", "SliceThickness")


@dataclass(frozen=True)
class PseudonymizeConfig:
    """``"Pseudonymize": {"Enabled": true, "Salt": "...", "MapFile": null, "KeepOriginal": false}``."""

    salt: str
    map_file: Path | None = None
    keep_original: bool = False

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None) -> PseudonymizeConfig | None:
        """``None`` when absent or disabled; raises ``ValueError`` naming a wrong key."""
        if not section or not section.get("Enabled", False):
            return None
        salt = section.get("Salt")
        if not isinstance(salt, str) or len(salt) < 8:
            raise ValueError('"Hope.Pseudonymize.Salt" must be a secret string of at least 8 characters')
        map_file = section.get("MapFile")
        if map_file is not None and not isinstance(map_file, str):
            raise ValueError(f'"Hope.Pseudonymize.MapFile" must be a file path or null, got {map_file!r}')
        return cls(
            salt=salt,
            map_file=Path(map_file) if map_file else None,
            keep_original=bool(section.get("KeepOriginal", False)),
        )


def pseudonym(patient_id: str, salt: str) -> str:
    """The pseudonym of ``patient_id``: stable for a salt, not reversible without the map."""
    return "HOPE-" + hashlib.sha256(f"{salt}\0{patient_id}".encode()).hexdigest()[:12].upper()


def anonymize_body(alias: str) -> dict[str, Any]:
    """The body of Orthanc's ``POST /studies/{id}/anonymize`` for ``alias``."""
    return {
        "Replace": {"PatientID": alias, "PatientName": alias},
        "Keep": list(KEPT_TAGS),
        "KeepPrivateTags": False,
        "Force": True,
        "Synchronous": True,
    }


class PseudonymMap(SqliteStore):
    """Original study and patient -> pseudonymised study and pseudonym; kept only where configured."""

    schema = """
        CREATE TABLE IF NOT EXISTS pseudonyms (
            original_study_uid TEXT PRIMARY KEY,
            original_patient_id TEXT NOT NULL,
            pseudonym TEXT NOT NULL,
            pseudonymized_study_uid TEXT NOT NULL
        );
    """

    def record(self, original_study_uid: str, original_patient_id: str, alias: str, new_study_uid: str) -> None:
        """Keep one mapping."""
        self._execute(
            "INSERT OR REPLACE INTO pseudonyms VALUES (?, ?, ?, ?)",
            (original_study_uid, original_patient_id, alias, new_study_uid),
        )

    def lookup(self, original_study_uid: str) -> dict[str, str] | None:
        """The mapping of an original study, if kept."""
        rows = self._query("SELECT * FROM pseudonyms WHERE original_study_uid = ?", (original_study_uid,))
        return dict(rows[0]) if rows else None


def is_original(level: str, orthanc_id: str, rest_get: Callable[[str], Any]) -> bool:
    """Whether the Orthanc resource was stored as received (not created by Orthanc's anonymisation)."""
    return ANONYMIZED_FROM not in rest_get(f"/{level}/{orthanc_id}/metadata")


def pseudonymize_study(
    orthanc_id: str,
    config: PseudonymizeConfig,
    rest_get: Callable[[str], Any],
    rest_post: Callable[[str, dict[str, Any]], Any],
    rest_delete: Callable[[str], None],
    mapping: PseudonymMap | None,
) -> str:
    """Replace an original study by its pseudonymised copy; return the copy's Orthanc id."""
    tags = rest_get(f"/studies/{orthanc_id}")
    patient_id = str(tags.get("PatientMainDicomTags", {}).get("PatientID", ""))
    study_uid = str(tags["MainDicomTags"]["StudyInstanceUID"])
    alias = pseudonym(patient_id, config.salt)
    copy = rest_post(f"/studies/{orthanc_id}/anonymize", anonymize_body(alias))
    if mapping is not None:
        new_uid = str(rest_get(f"/studies/{copy['ID']}")["MainDicomTags"]["StudyInstanceUID"])
        mapping.record(study_uid, patient_id, alias, new_uid)
    if not config.keep_original:
        rest_delete(f"/studies/{orthanc_id}")
    return str(copy["ID"])
