"""Pseudonyms and the pseudonymisation settings of Orthanc's plugin."""

from __future__ import annotations

from pathlib import Path

import pytest

from hope.orthanc_plugin.config import PluginConfig
from hope.orthanc_plugin.pseudonymize import PseudonymizeConfig, PseudonymMap, anonymize_body, pseudonym


def test_pseudonym_is_stable_per_salt_and_hides_the_id() -> None:
    assert pseudonym("12345", "salt-aaaaaaaa") == pseudonym("12345", "salt-aaaaaaaa")
    assert pseudonym("12345", "salt-aaaaaaaa") != pseudonym("12345", "salt-bbbbbbbb")
    assert pseudonym("12345", "salt-aaaaaaaa") != pseudonym("12346", "salt-aaaaaaaa")
    assert "12345" not in pseudonym("12345", "salt-aaaaaaaa")
    assert pseudonym("12345", "salt-aaaaaaaa").startswith("HOPE-")


def test_anonymize_body_replaces_identity_and_drops_private_tags() -> None:
    body = anonymize_body("HOPE-ABC")
    assert body["Replace"] == {"PatientID": "HOPE-ABC", "PatientName": "HOPE-ABC"}
    assert body["KeepPrivateTags"] is False
    assert "PatientID" not in body["Keep"]


def test_disabled_or_absent_section_means_off() -> None:
    assert PseudonymizeConfig.from_section(None) is None
    assert PseudonymizeConfig.from_section({"Enabled": False, "Salt": "x"}) is None


def test_short_salt_is_refused_with_the_key() -> None:
    with pytest.raises(ValueError, match="Pseudonymize.Salt"):
        PseudonymizeConfig.from_section({"Enabled": True, "Salt": "short"})


def test_plugin_config_reads_the_section(tmp_path: Path) -> None:
    config = PluginConfig.from_section(
        {
            "Url": "http://127.0.0.1:8000",
            "StateDirectory": str(tmp_path),
            "SecretFile": str(tmp_path / "events.key"),
            "Pseudonymize": {"Enabled": True, "Salt": "0123456789", "MapFile": str(tmp_path / "map.sqlite")},
        }
    )
    assert config.pseudonymize == PseudonymizeConfig("0123456789", tmp_path / "map.sqlite", keep_original=False)


def test_map_keeps_original_to_pseudonym(tmp_path: Path) -> None:
    mapping = PseudonymMap(tmp_path / "map.sqlite")
    mapping.record("1.2.3", "PID-1", "HOPE-1", "9.8.7")
    assert PseudonymMap(tmp_path / "map.sqlite").lookup("1.2.3") == {
        "original_study_uid": "1.2.3",
        "original_patient_id": "PID-1",
        "pseudonym": "HOPE-1",
        "pseudonymized_study_uid": "9.8.7",
    }
    assert mapping.lookup("4.5.6") is None
