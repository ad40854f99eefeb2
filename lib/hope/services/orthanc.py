"""Run Orthanc (the Debian package) with HOPE's configuration: SQLite index and file storage under a folder.

With ``hope_url`` set, Orthanc also loads HOPE's plugin (``orthanc/hope_plugin.py`` in Orthanc's Python plugin),
which validates stable series and reports them and stored SEGs to the HOPE server at that URL.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hope.config import REPO_ROOT
from hope.services.process import ManagedProcess

BASE_CONFIG = REPO_ROOT / "orthanc" / "orthanc.json"
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
# DICOMweb for HOPE and OHIF; GDCM so Orthanc can decode and transcode JPEG 2000 and other compressed series.
PLUGINS = ("libOrthancDicomWeb.so", "libOrthancGdcm.so")
PYTHON_PLUGIN = PLUGIN_DIR / "libOrthancPython.so"
HOPE_PLUGIN_SCRIPT = REPO_ROOT / "orthanc" / "hope_plugin.py"


@dataclass
class OrthancSettings:
    """Where one Orthanc instance listens and keeps its data.

    ``hope_url`` (HOPE's root URL) loads HOPE's plugin, which posts store events there and retries at most
    ``hope_retry_seconds`` apart while HOPE is down; ``None`` runs Orthanc without it.
    """

    data_dir: Path
    http_port: int = 8042
    dicom_port: int = 4242
    stable_age: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    hope_url: str | None = None
    hope_retry_seconds: float = 30.0

    @property
    def url(self) -> str:
        """Orthanc's REST root."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """Orthanc's DICOMweb root."""
        return f"{self.url}/dicom-web"

    @property
    def hope_plugin_dir(self) -> Path:
        """Where HOPE's plugin keeps its state (outbox of events, validation results)."""
        return self.data_dir / "hope-plugin"


def orthanc_binary() -> str:
    """Path of the Orthanc executable; says how to install it when missing."""
    found = shutil.which("Orthanc") or (Path("/usr/sbin/Orthanc").exists() and "/usr/sbin/Orthanc")
    if not found:
        raise FileNotFoundError("Orthanc is not installed: run scripts/setup.sh (apt-get install orthanc)")
    return str(found)


def render_config(settings: OrthancSettings) -> dict[str, Any]:
    """HOPE's base configuration (``orthanc/orthanc.json``) with ports, folders and plugins filled in."""
    config = json.loads(BASE_CONFIG.read_text())
    storage = settings.data_dir / "storage"
    config.update(
        {
            "HttpPort": settings.http_port,
            "DicomPort": settings.dicom_port,
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "Plugins": [str(PLUGIN_DIR / p) for p in PLUGINS if (PLUGIN_DIR / p).exists()],
        }
    )
    if settings.stable_age is not None:
        config["StableAge"] = settings.stable_age
    if settings.hope_url is not None:
        config.update(_hope_plugin_config(settings))
        config["Plugins"].append(str(PYTHON_PLUGIN))
    config.update(settings.overrides)
    return config


def _hope_plugin_config(settings: OrthancSettings) -> dict[str, Any]:
    """The keys that load HOPE's plugin; raises ``FileNotFoundError`` without Orthanc's Python plugin."""
    if not PYTHON_PLUGIN.exists():
        raise FileNotFoundError(f"{PYTHON_PLUGIN} is missing: run scripts/setup.sh (apt-get install orthanc-python)")
    return {
        "PythonScript": str(HOPE_PLUGIN_SCRIPT),
        "Hope": {
            "Url": settings.hope_url,
            "StateDirectory": str(settings.hope_plugin_dir),
            "RetrySeconds": settings.hope_retry_seconds,
        },
    }


def orthanc_process(settings: OrthancSettings) -> ManagedProcess:
    """A :class:`ManagedProcess` for Orthanc; its configuration is written to ``<data_dir>/orthanc.json``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    config_path = settings.data_dir / "orthanc.json"
    config_path.write_text(json.dumps(render_config(settings), indent=2))
    return ManagedProcess(
        name="Orthanc",
        command=[orthanc_binary(), str(config_path)],
        log_path=settings.data_dir / "orthanc.log",
        ready_url=f"{settings.url}/system",
    )
