"""Orthanc's rendered configuration is closed: credentials, this machine only, DICOM from the listed senders only.

No Orthanc runs here; ``tests/security/test_store_access.py`` checks the same against a real one.
"""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from hope.config.server import DicomSender, OrthancAccess
from hope.processes.hope_server import hope_server_process
from hope.processes.orthanc import OrthancCredentials, OrthancSettings, render_config
from hope.secretfile import SecretFileError

SENDER = DicomSender(aet="CT-SCANNER", host="10.1.2.3")


def test_http_needs_the_generated_credentials_and_answers_this_machine_only(tmp_path: Path) -> None:
    settings = OrthancSettings(data_dir=tmp_path / "orthanc")
    config = render_config(settings)
    assert config["AuthenticationEnabled"] is True
    assert config["RemoteAccessAllowed"] is False
    assert config["RegisteredUsers"] == {settings.credentials.username: settings.credentials.password}
    assert len(settings.credentials.password) >= 32
    assert settings.credentials_file == tmp_path / "orthanc" / "secrets" / "orthanc-credentials.json"
    assert stat.S_IMODE(settings.credentials_file.stat().st_mode) == 0o600
    assert settings.credentials.password not in repr(settings.credentials)

    open_http = OrthancAccess(http_remote_access=True)
    remote = render_config(OrthancSettings(data_dir=tmp_path / "orthanc", access=open_http))
    assert remote["RemoteAccessAllowed"] is True and remote["AuthenticationEnabled"] is True


def test_credentials_are_generated_once_per_store(tmp_path: Path) -> None:
    first = OrthancCredentials.load(tmp_path / "a" / "credentials.json")
    assert OrthancCredentials.load(tmp_path / "a" / "credentials.json") == first
    assert OrthancCredentials.load(tmp_path / "b" / "credentials.json").password != first.password


def test_broken_or_exposed_credentials_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "credentials.json"
    OrthancCredentials.load(path)
    path.chmod(0o640)
    with pytest.raises(SecretFileError, match="chmod 600"):
        OrthancCredentials.load(path)
    path.chmod(0o600)
    path.write_text(json.dumps({"username": "hope"}))
    with pytest.raises(SecretFileError, match="does not hold Orthanc credentials.*delete"):
        OrthancCredentials.load(path)


def test_dicom_is_accepted_only_from_the_listed_senders_for_store_and_echo(tmp_path: Path) -> None:
    closed = render_config(OrthancSettings(data_dir=tmp_path))
    assert closed["DicomModalities"] == {}
    for key in ("Echo", "Store", "Find", "FindWorklist", "Get", "Move"):
        assert closed[f"DicomAlwaysAllow{key}"] is False, key
    assert closed["DicomCheckCalledAet"] is True and closed["DicomCheckModalityHost"] is True

    config = render_config(OrthancSettings(data_dir=tmp_path, access=OrthancAccess(dicom_senders=(SENDER,))))
    (modality,) = config["DicomModalities"].values()
    assert (modality["AET"], modality["Host"]) == ("CT-SCANNER", "10.1.2.3")
    assert modality["AllowStore"] is True and modality["AllowEcho"] is True
    assert not any(modality[f"Allow{key}"] for key in ("Find", "FindWorklist", "Get", "Move", "StorageCommitment"))


def test_the_plugin_and_hope_share_the_event_key_and_hope_logs_in(tmp_path: Path) -> None:
    settings = OrthancSettings(data_dir=tmp_path / "orthanc", hope_url="http://127.0.0.1:8000",
                               secrets_dir=tmp_path / "secrets")
    assert render_config(settings)["Hope"]["SecretFile"] == str(tmp_path / "secrets" / "events.key")
    env = hope_server_process(settings, 8000, tmp_path / "hope").env or {}
    assert env["HOPE_EVENT_SECRET_FILE"] == str(tmp_path / "secrets" / "events.key")
    assert (env["MONAI_LABEL_DICOMWEB_USERNAME"], env["MONAI_LABEL_DICOMWEB_PASSWORD"]) == settings.auth
    assert settings.credentials_file.parent == tmp_path / "secrets"
