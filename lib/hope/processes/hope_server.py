"""Run the HOPE server: ``monailabel start_server`` on ``apps/hope`` against an Orthanc (DICOMweb)."""

from __future__ import annotations

import json
import sys
from importlib import resources
from pathlib import Path

from hope.config import REPO_ROOT
from hope.processes.orthanc import OrthancSettings
from hope.processes.process import ManagedProcess

APP_DIR = REPO_ROOT / "apps" / "hope"


def hope_server_process(
    orthanc: OrthancSettings, port: int, data_dir: Path, extra_env: dict[str, str] | None = None,
    host: str = "127.0.0.1",
) -> ManagedProcess:
    """A :class:`ManagedProcess` for the HOPE server on ``host``:``port``, against ``orthanc``'s DICOMweb.

    A ``host`` other than loopback needs sign-in on (:func:`hope.auth.binding.check_bind`); the server is
    checked for readiness on 127.0.0.1 unless ``host`` is another single address.

    Models go to ``<data_dir>/models`` and the DICOM cache to ``<data_dir>/cache``. HOPE logs in to Orthanc with
    ``orthanc``'s credentials (MONAI Label's ``MONAI_LABEL_DICOMWEB_USERNAME`` / ``_PASSWORD``) and checks store
    events with the key of ``orthanc``'s plugin (``HOPE_EVENT_SECRET_FILE``).
    """
    credentials = orthanc.credentials
    log_config = write_log_config(data_dir)
    env = {
        "HOPE_DATA_DIR": str(data_dir),
        "HOPE_MODEL_DIR": str(data_dir / "models"),
        "HOPE_EVENT_SECRET_FILE": str(orthanc.event_key_file),
        "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(data_dir / "cache"),
        "MONAI_LABEL_DICOMWEB_USERNAME": credentials.username,
        "MONAI_LABEL_DICOMWEB_PASSWORD": credentials.password,
        "PYTHONUNBUFFERED": "1",
        **(extra_env or {}),
    }
    return ManagedProcess(
        name="HOPE server",
        command=[
            sys.executable, "-m", "monailabel.main", "start_server", "--app", str(APP_DIR),
            "--studies", orthanc.dicomweb_url, "--host", host, "--port", str(port), "--log_config", str(log_config),
        ],
        log_path=data_dir / "hope.log",
        ready_url=f"http://{_reachable(host)}:{port}/auth/",  # public: ready whether or not sign-in is on
        env=env,
    )


def write_log_config(data_dir: Path) -> Path:
    """MONAI Label's logging configuration, its log file in ``data_dir/logs``, written to ``data_dir/logging.json``.

    Given no ``--log_config``, ``monailabel start_server`` copies its configuration to a new temporary file at every
    start and never removes it, and logs into the app's folder of the repository.
    """
    logs = data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    config = json.loads(resources.files("monailabel").joinpath("logging.json").read_text())
    for handler in config["handlers"].values():
        if handler.get("filename") == "${LOGFILE}":
            handler["filename"] = str(logs / "app.log")
    path = data_dir / "logging.json"
    path.write_text(json.dumps(config, indent=2))
    return path


def _reachable(host: str) -> str:
    """An address of this machine where a server listening on ``host`` answers."""
    if host in {"0.0.0.0", "::", ""}:
        return "127.0.0.1"
    return f"[{host}]" if ":" in host else host
