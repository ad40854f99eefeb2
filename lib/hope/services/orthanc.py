"""Run Orthanc (the Debian package) with HOPE's configuration: SQLite index and file storage under a folder.

With ``postgresql`` set, Orthanc keeps its index (and, if asked, the DICOM files too) in a PostgreSQL database
instead, through Debian's ``orthanc-postgresql`` plugins.

With ``hope_url`` set, Orthanc also loads HOPE's plugin (``orthanc/hope_plugin.py`` in Orthanc's Python plugin),
which validates stable series and reports them and stored SEGs to the HOPE server at that URL.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from hope.config import REPO_ROOT
from hope.services.process import ManagedProcess

BASE_CONFIG = REPO_ROOT / "orthanc" / "orthanc.json"
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
# DICOMweb for HOPE and OHIF; GDCM so Orthanc can decode and transcode JPEG 2000 and other compressed series.
PLUGINS = ("libOrthancDicomWeb.so", "libOrthancGdcm.so")
PYTHON_PLUGIN = PLUGIN_DIR / "libOrthancPython.so"
HOPE_PLUGIN_SCRIPT = REPO_ROOT / "orthanc" / "hope_plugin.py"
POSTGRESQL_INDEX_PLUGIN = PLUGIN_DIR / "libOrthancPostgreSQLIndex.so"
POSTGRESQL_STORAGE_PLUGIN = PLUGIN_DIR / "libOrthancPostgreSQLStorage.so"


@dataclass(frozen=True)
class PostgresIndex:
    """A PostgreSQL database for Orthanc's index (``orthanc-postgresql`` 4.0); ``storage`` puts the files there too.

    The database must exist and belong to ``user``; Orthanc creates its tables on the first start.
    """

    host: str = "127.0.0.1"
    port: int = 5432
    database: str = "orthanc"
    user: str = "orthanc"
    password: str = ""
    storage: bool = False
    connections: int = 1

    @classmethod
    def from_url(cls, url: str, storage: bool = False) -> PostgresIndex:
        """Parse ``postgresql://user:password@host:port/database`` (user and password may be %-encoded)."""
        parts = urlsplit(url)
        if parts.scheme not in {"postgresql", "postgres"} or not parts.hostname or not parts.path.strip("/"):
            # Not echoing the URL: it may hold a password.
            raise ValueError("expected a postgresql://user:password@host:port/database URL")
        return cls(
            host=parts.hostname,
            port=parts.port or 5432,
            database=unquote(parts.path.strip("/")),
            user=unquote(parts.username or "orthanc"),
            password=unquote(parts.password or ""),
            storage=storage,
        )

    def orthanc_section(self) -> dict[str, Any]:
        """The ``PostgreSQL`` section of Orthanc's configuration."""
        return {
            "EnableIndex": True,
            "EnableStorage": self.storage,
            "Host": self.host,
            "Port": self.port,
            "Database": self.database,
            "Username": self.user,
            "Password": self.password,
            # No exclusive lock: several Orthanc instances may share the database (plugin 4.0 supports it).
            "Lock": False,
            "EnableSsl": False,
            "MaximumConnectionRetries": 10,
            "ConnectionRetryInterval": 2,
            "IndexConnectionsCount": self.connections,
        }


@dataclass
class OrthancSettings:
    """Where one Orthanc instance listens and keeps its data.

    ``hope_url`` (HOPE's root URL) loads HOPE's plugin, which posts store events there and retries at most
    ``hope_retry_seconds`` apart while HOPE is down; ``None`` runs Orthanc without it.
    ``postgresql`` moves the index (and optionally the files) from SQLite under ``data_dir`` to PostgreSQL.
    """

    data_dir: Path
    http_port: int = 8042
    dicom_port: int = 4242
    stable_age: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    hope_url: str | None = None
    hope_retry_seconds: float = 30.0
    postgresql: PostgresIndex | None = None

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
    if settings.postgresql is not None:
        config["Plugins"].extend(_postgresql_plugins(settings.postgresql))
        config["PostgreSQL"] = settings.postgresql.orthanc_section()
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


def _postgresql_plugins(index: PostgresIndex) -> list[str]:
    """The plugin files for ``index``; raises ``FileNotFoundError`` without Debian's orthanc-postgresql."""
    plugins = [POSTGRESQL_INDEX_PLUGIN] + ([POSTGRESQL_STORAGE_PLUGIN] if index.storage else [])
    for plugin in plugins:
        if not plugin.exists():
            raise FileNotFoundError(
                f"{plugin} is missing: run scripts/setup.sh (apt-get install orthanc-postgresql)"
            )
    return [str(p) for p in plugins]


def orthanc_process(settings: OrthancSettings) -> ManagedProcess:
    """A :class:`ManagedProcess` for Orthanc; its configuration is written to ``<data_dir>/orthanc.json``."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    config_path = settings.data_dir / "orthanc.json"
    config = render_config(settings)
    if settings.postgresql is not None:  # the configuration holds the database password
        config_path.touch(mode=0o600)
        config_path.chmod(0o600)
    config_path.write_text(json.dumps(config, indent=2))
    return ManagedProcess(
        name="Orthanc",
        command=[orthanc_binary(), str(config_path)],
        log_path=settings.data_dir / "orthanc.log",
        ready_url=f"{settings.url}/system",
    )
