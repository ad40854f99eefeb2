"""Run Orthanc (the Debian package) with HOPE's configuration: SQLite index and file storage under a folder.

With ``postgresql`` set, Orthanc keeps its index (and, if asked, the DICOM files too) in a PostgreSQL database
instead, through Debian's ``orthanc-postgresql`` plugins.

With ``hope_url`` set, Orthanc also loads HOPE's plugin (``orthanc/hope_plugin.py`` in Orthanc's Python plugin),
which validates stable series and reports them and stored SEGs to the HOPE server at that URL, signed with the
event key (:mod:`hope.sync.signing`).

Orthanc is closed by default: its HTTP API needs the credentials generated at first start (:class:`OrthancCredentials`,
in a file only its owner may read) and answers only this machine unless ``access.http_remote_access``; its DICOM
port accepts associations only from the senders of ``access.dicom_senders`` (AE title and address), for C-STORE and
C-ECHO only, and only when they call Orthanc's own AE title. Orthanc 1.10 has no option to bind one address, so
both ports listen on every interface and refuse other machines themselves.
"""

from __future__ import annotations

import functools
import json
import secrets
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from dicomweb_client import DICOMwebClient

from hope.config import REPO_ROOT
from hope.config.server import OrthancAccess
from hope.datastore.client import make_client
from hope.processes.process import ManagedProcess
from hope.secretfile import OWNER_ONLY, SecretFileError, read_or_create

BASE_CONFIG = REPO_ROOT / "orthanc" / "orthanc.json"
PLUGIN_DIR = Path("/usr/share/orthanc/plugins")
# DICOMweb for HOPE and OHIF; GDCM so Orthanc can decode and transcode JPEG 2000 and other compressed series.
PLUGINS = ("libOrthancDicomWeb.so", "libOrthancGdcm.so")
PYTHON_PLUGIN = PLUGIN_DIR / "libOrthancPython.so"
HOPE_PLUGIN_SCRIPT = REPO_ROOT / "orthanc" / "hope_plugin.py"
POSTGRESQL_INDEX_PLUGIN = PLUGIN_DIR / "libOrthancPostgreSQLIndex.so"
POSTGRESQL_STORAGE_PLUGIN = PLUGIN_DIR / "libOrthancPostgreSQLStorage.so"
CREDENTIALS_FILE = "orthanc-credentials.json"
EVENT_KEY_FILE = "events.key"
#: Orthanc's user for HOPE, its scripts and tests (the password is generated).
ORTHANC_USER = "hope"
#: Orthanc needs a port for each modality, to call it back; senders are never called back.
SENDER_PORT = 104


@dataclass(frozen=True)
class OrthancCredentials:
    """The HTTP basic-auth user of Orthanc's REST and DICOMweb APIs (HOPE, its scripts and tests log in as it)."""

    username: str
    password: str = field(repr=False)

    @classmethod
    def load(cls, path: Path) -> OrthancCredentials:
        """The credentials in ``path`` (JSON); generated there at first use, readable by its owner only.

        Raises:
            SecretFileError: other users may read the file, it cannot be read, or it holds no credentials.
        """
        generated = {"username": ORTHANC_USER, "password": secrets.token_urlsafe(32)}
        raw = read_or_create(path, lambda: json.dumps(generated).encode())
        try:
            data = json.loads(raw)
            username, password = data["username"], data["password"]
        except (ValueError, TypeError, KeyError):
            username = password = None
        if not isinstance(username, str) or not isinstance(password, str) or not username or not password:
            raise SecretFileError(
                f'{path} does not hold Orthanc credentials ({{"username": ..., "password": ...}}): fix it, or delete '
                "it to have new ones generated at the next start (then restart Orthanc and HOPE together)"
            )
        return cls(username, password)

    @property
    def auth(self) -> tuple[str, str]:
        """``(username, password)`` for ``requests``."""
        return self.username, self.password


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
    """Where one Orthanc instance listens and keeps its data, and who may reach it.

    ``hope_url`` (HOPE's root URL) loads HOPE's plugin, which posts store events there and retries at most
    ``hope_retry_seconds`` apart while HOPE is down; ``None`` runs Orthanc without it.
    ``postgresql`` moves the index (and optionally the files) from SQLite under ``data_dir`` to PostgreSQL.
    ``access`` says who may reach Orthanc (``orthanc:`` of ``configs/server.yaml``; by default this machine only,
    and no DICOM sender). ``secrets_dir`` (default ``<data_dir>/secrets``) holds Orthanc's HTTP credentials and the
    key the plugin signs its events with, both generated at first start; a HOPE server for this Orthanc
    (:func:`hope.processes.hope_server.hope_server_process`) is handed both.
    """

    data_dir: Path
    http_port: int = 8042
    dicom_port: int = 4242
    stable_age: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    hope_url: str | None = None
    hope_retry_seconds: float = 30.0
    postgresql: PostgresIndex | None = None
    access: OrthancAccess = field(default_factory=OrthancAccess)
    secrets_dir: Path | None = None

    @property
    def url(self) -> str:
        """Orthanc's REST root."""
        return f"http://127.0.0.1:{self.http_port}"

    @property
    def dicomweb_url(self) -> str:
        """Orthanc's DICOMweb root."""
        return f"{self.url}/dicom-web"

    @property
    def credentials_file(self) -> Path:
        """Orthanc's HTTP credentials (JSON, mode 0600)."""
        return (self.secrets_dir or self.data_dir / "secrets") / CREDENTIALS_FILE

    @property
    def event_key_file(self) -> Path:
        """The key HOPE's plugin signs its events with, and HOPE checks them with (mode 0600)."""
        return (self.secrets_dir or self.data_dir / "secrets") / EVENT_KEY_FILE

    @functools.cached_property
    def credentials(self) -> OrthancCredentials:
        """Orthanc's HTTP credentials, generated into :attr:`credentials_file` at first use."""
        return OrthancCredentials.load(self.credentials_file)

    @property
    def auth(self) -> tuple[str, str]:
        """``(username, password)`` of Orthanc's HTTP API, for ``requests``."""
        return self.credentials.auth

    def dicomweb_client(self, timeout: float = 60.0) -> DICOMwebClient:
        """A DICOMweb client of this Orthanc, logged in, with ``timeout`` seconds per request."""
        return make_client(self.dicomweb_url, timeout, *self.auth)

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
    """HOPE's base configuration (``orthanc/orthanc.json``) with ports, folders, plugins and access filled in.

    It holds Orthanc's password (generated at first use): write it where only its owner may read it.
    """
    config = json.loads(BASE_CONFIG.read_text())
    storage = settings.data_dir / "storage"
    credentials = settings.credentials
    config.update(
        {
            "HttpPort": settings.http_port,
            "DicomPort": settings.dicom_port,
            "StorageDirectory": str(storage),
            "IndexDirectory": str(storage),
            "Plugins": [str(PLUGIN_DIR / p) for p in PLUGINS if (PLUGIN_DIR / p).exists()],
            "RemoteAccessAllowed": settings.access.http_remote_access,
            "AuthenticationEnabled": True,
            "RegisteredUsers": {credentials.username: credentials.password},
            "DicomModalities": _dicom_senders(settings.access),
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


def _dicom_senders(access: OrthancAccess) -> dict[str, dict[str, Any]]:
    """``DicomModalities``: each sender may C-STORE and C-ECHO from its address, and nothing else."""
    return {
        f"sender-{i}": {
            "AET": sender.aet,
            "Host": sender.host,
            "Port": SENDER_PORT,
            "AllowEcho": True,
            "AllowStore": True,
            "AllowFind": False,
            "AllowFindWorklist": False,
            "AllowGet": False,
            "AllowMove": False,
            "AllowStorageCommitment": False,
        }
        for i, sender in enumerate(access.dicom_senders)
    }


def _hope_plugin_config(settings: OrthancSettings) -> dict[str, Any]:
    """The keys that load HOPE's plugin; raises ``FileNotFoundError`` without Orthanc's Python plugin."""
    if not PYTHON_PLUGIN.exists():
        raise FileNotFoundError(f"{PYTHON_PLUGIN} is missing: run scripts/setup.sh (apt-get install orthanc-python)")
    return {
        "PythonScript": str(HOPE_PLUGIN_SCRIPT),
        "Hope": {
            "Url": settings.hope_url,
            "StateDirectory": str(settings.hope_plugin_dir),
            "SecretFile": str(settings.event_key_file),
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
    """A :class:`ManagedProcess` for Orthanc; its configuration is written to ``<data_dir>/orthanc.json``.

    That file holds Orthanc's password (and PostgreSQL's, if any), so only its owner may read it.
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    config_path = settings.data_dir / "orthanc.json"
    config = render_config(settings)
    config_path.touch(mode=OWNER_ONLY)
    config_path.chmod(OWNER_ONLY)
    config_path.write_text(json.dumps(config, indent=2))
    return ManagedProcess(
        name="Orthanc",
        command=[orthanc_binary(), str(config_path)],
        log_path=settings.data_dir / "orthanc.log",
        ready_url=f"{settings.url}/system",
        ready_auth=settings.auth,
    )
