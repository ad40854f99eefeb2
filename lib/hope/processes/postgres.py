"""A throwaway PostgreSQL server (Debian's ``postgresql`` package) in a folder, for tests and development.

``PostgresServer(folder).start()`` runs ``initdb`` into ``<folder>/data``, listens on 127.0.0.1 on a free port
(Unix sockets only in ``<folder>/run``), creates one database owned by one password-authenticated user, and
returns once the server accepts connections; ``stop()`` shuts it down (``pg_ctl stop -m fast``). PostgreSQL
refuses to run as root, so as root every server command runs as the ``postgres`` OS user (``runuser``) and the
folder is handed to that user: its parent folders must let ``postgres`` through (``/tmp`` does, so a
``tempfile.mkdtemp()`` folder works; pytest's ``tmp_path`` does not). Speed over durability: ``fsync`` is off,
so never keep data you care about in it.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

from hope.processes.orthanc import PostgresIndex
from hope.processes.process import free_port, wait_until

POSTGRES_ROOT = Path("/usr/lib/postgresql")
SERVER_USER = "postgres"  # the OS user that runs the server when we are root, and the database superuser
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


def postgres_bin_dir() -> Path:
    """The folder with ``initdb``, ``pg_ctl`` and ``psql`` of the newest installed PostgreSQL server."""
    candidates = [d / "bin" for d in POSTGRES_ROOT.glob("*") if (d / "bin" / "initdb").exists()]
    if candidates:
        return max(candidates, key=lambda b: [int(x) if x.isdigit() else 0 for x in b.parent.name.split(".")])
    initdb = shutil.which("initdb")
    if initdb and shutil.which("pg_ctl", path=str(Path(initdb).parent)):
        return Path(initdb).parent
    raise FileNotFoundError(
        f"PostgreSQL server binaries (initdb, pg_ctl) not found under {POSTGRES_ROOT}/<version>/bin: "
        "run scripts/setup.sh (apt-get install postgresql)"
    )


class PostgresServer:
    """One PostgreSQL cluster in ``folder`` with database ``database`` owned by ``user``/``password``."""

    def __init__(
        self,
        folder: Path,
        port: int | None = None,
        database: str = "orthanc",
        user: str = "orthanc",
        password: str = "orthanc",
        settings: dict[str, str] | None = None,
    ) -> None:
        for what, name in (("database", database), ("user", user)):
            if not _NAME.match(name):
                raise ValueError(f"{what} name {name!r} must be a plain SQL identifier (letters, digits, _)")
        self.folder = Path(folder).resolve()
        self.port = port or free_port()
        self.database = database
        self.user = user
        self.password = password
        # Throwaway server: no fsync. Extra postgresql.conf settings come from ``settings``.
        self.settings = {"fsync": "off", "synchronous_commit": "off", "full_page_writes": "off", **(settings or {})}
        self.bin_dir = postgres_bin_dir()
        self._as_server_user = os.geteuid() == 0

    @property
    def data_dir(self) -> Path:
        """The cluster (``PGDATA``)."""
        return self.folder / "data"

    @property
    def socket_dir(self) -> Path:
        """Where the server's Unix socket lives (only the server's OS user can reach it)."""
        return self.folder / "run"

    @property
    def log_path(self) -> Path:
        """The server log."""
        return self.folder / "postgresql.log"

    @property
    def url(self) -> str:
        """``postgresql://user:password@127.0.0.1:port/database``."""
        return f"postgresql://{self.user}:{self.password}@127.0.0.1:{self.port}/{self.database}"

    def index_settings(self, storage: bool = False) -> PostgresIndex:
        """What :class:`hope.processes.orthanc.OrthancSettings` needs to put Orthanc's index here."""
        return PostgresIndex(
            host="127.0.0.1", port=self.port, database=self.database, user=self.user, password=self.password,
            storage=storage,
        )

    def start(self, timeout: float = 60.0) -> None:
        """Create the cluster if needed, start the server and wait until the database accepts logins."""
        self._prepare_folder()
        if not (self.data_dir / "PG_VERSION").exists():
            self._initdb()
        self._write_server_settings()
        try:
            # pg_ctl waits until the server is up; then poll until it accepts connections, with a deadline.
            self._run(
                [
                    self._bin("pg_ctl"), "-D", str(self.data_dir), "-l", str(self.log_path), "start",
                    "-w", "-t", str(int(timeout)),
                ],
                what="pg_ctl start",
            )
            wait_until(self._ready_or_dead, timeout, f"PostgreSQL on 127.0.0.1:{self.port}")
            if not self._running():
                raise RuntimeError("PostgreSQL exited during start-up")
            self._create_user_and_database()
        except (TimeoutError, RuntimeError) as exc:
            self.stop()
            raise RuntimeError(f"PostgreSQL did not start: {exc}\n{self.log_tail()}") from exc

    def stop(self, timeout: float = 30.0) -> None:
        """Shut the server down (fast: open sessions are ended); nothing happens if it is not running."""
        if not self._running():
            return
        self._run(
            [self._bin("pg_ctl"), "-D", str(self.data_dir), "stop", "-m", "fast", "-w", "-t", str(int(timeout))],
            what="pg_ctl stop",
        )

    def __enter__(self) -> PostgresServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run ``sql`` as the superuser over the Unix socket; return psql's unaligned, tuples-only output."""
        result = self._run(
            [
                self._bin("psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", str(self.socket_dir),
                "-p", str(self.port), "-U", SERVER_USER, "-d", database or self.database, "-c", sql,
            ],
            what="psql",
        )
        return result.stdout.strip()

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the server log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    # -- internals ---------------------------------------------------------------------------------------------

    def _bin(self, name: str) -> str:
        return str(self.bin_dir / name)

    def _run(self, command: Sequence[str], what: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL command, as the ``postgres`` OS user when we are root."""
        if self._as_server_user:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        result = subprocess.run(
            list(command), cwd=self.folder, capture_output=True, text=True, timeout=120,
            env={**os.environ, "LC_ALL": "C.UTF-8", "PGCONNECT_TIMEOUT": "5"},
        )
        if check and result.returncode != 0:
            raise RuntimeError(f"{what} failed (exit {result.returncode}): {(result.stderr or result.stdout).strip()}")
        return result

    def _prepare_folder(self) -> None:
        # Private folders: local socket logins are trusted, so only the server's OS user may reach the socket.
        self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.socket_dir.mkdir(mode=0o700, exist_ok=True)
        self.folder.chmod(0o700)
        self.socket_dir.chmod(0o700)
        if not self._as_server_user:
            return
        try:
            owner = pwd.getpwnam(SERVER_USER)
        except KeyError as exc:
            raise FileNotFoundError(
                f"there is no {SERVER_USER!r} OS user to run PostgreSQL as: run scripts/setup.sh "
                "(apt-get install postgresql)"
            ) from exc
        for path in (self.folder, *self.folder.rglob("*")):
            os.chown(path, owner.pw_uid, owner.pw_gid, follow_symlinks=False)
        if self._run(["test", "-w", str(self.folder)], what="access check", check=False).returncode != 0:
            raise PermissionError(
                f"the {SERVER_USER!r} OS user cannot reach {self.folder}: PostgreSQL refuses to run as root, so "
                "use a folder whose parent folders it may enter (e.g. tempfile.mkdtemp() itself, under /tmp)"
            )

    def _initdb(self) -> None:
        self._run(
            [
                self._bin("initdb"), "-D", str(self.data_dir), "-U", SERVER_USER, "-E", "UTF8", "--locale=C.UTF-8",
                # Local (socket) logins are trusted: the socket folder is private to the server's OS user.
                # TCP logins need a password.
                "--auth-local=trust", "--auth-host=scram-sha-256", "--no-instructions",
            ],
            what="initdb",
        )
        with (self.data_dir / "postgresql.conf").open("a") as f:
            f.write(f"\n# HOPE's throwaway server (hope.processes.postgres), rewritten at each start\n"
                    f"include_if_exists = '{self.data_dir / 'hope.conf'}'\n")

    def _write_server_settings(self) -> None:
        """``<data>/hope.conf``: address, port and socket folder of this start, and :attr:`settings`."""
        settings = {
            "listen_addresses": "'127.0.0.1'",
            "port": str(self.port),
            "unix_socket_directories": f"'{self.socket_dir}'",
            **self.settings,
        }
        path = self.data_dir / "hope.conf"
        path.write_text("".join(f"{key} = {value}\n" for key, value in settings.items()))
        if self._as_server_user:
            owner = pwd.getpwnam(SERVER_USER)
            os.chown(path, owner.pw_uid, owner.pw_gid)

    def _running(self) -> bool:
        if not (self.data_dir / "postmaster.pid").exists():
            return False
        status = self._run([self._bin("pg_ctl"), "-D", str(self.data_dir), "status"], what="status", check=False)
        return status.returncode == 0

    def _ready_or_dead(self) -> bool:
        if not self._running():
            return True  # start() reports it with the log
        ready = self._run(
            [self._bin("pg_isready"), "-q", "-h", str(self.socket_dir), "-p", str(self.port), "-d", "postgres"],
            what="pg_isready",
            check=False,
        )
        return ready.returncode == 0

    def _create_user_and_database(self) -> None:
        password = self.password.replace("'", "''")
        exists = self.psql(f"SELECT 1 FROM pg_roles WHERE rolname = '{self.user}'", database="postgres")
        verb = "ALTER" if exists else "CREATE"
        self.psql(f"{verb} ROLE \"{self.user}\" LOGIN PASSWORD '{password}'", database="postgres")
        if not self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{self.database}'", database="postgres"):
            self.psql(
                f"CREATE DATABASE \"{self.database}\" OWNER \"{self.user}\" ENCODING 'UTF8' TEMPLATE template0",
                database="postgres",
            )
