"""Run nginx (the Debian package) as HOPE's TLS-terminating reverse proxy, on loopback, for tests and trials.

Production uses Debian's own nginx service with ``configs/nginx/hope.conf`` (README "TLS with nginx"). This module
runs the same proxy behaviour (TLS settings, HSTS, the proxy location: ``configs/nginx/hope-proxy.conf``, included
as is) in a self-contained configuration rendered into a work folder: pid file, logs and temporary files all there,
in the foreground (``daemon off``), as root or as any other user.

:func:`self_signed_certificate` makes a certificate for ``127.0.0.1`` and ``localhost`` to run it with; clients
pass that certificate file as their trust anchor (``requests.get(url, verify=cert)``).
"""

from __future__ import annotations

import datetime
import grp
import ipaddress
import os
import pwd
import re
import shutil
import socket
import ssl
import subprocess
from dataclasses import dataclass
from pathlib import Path

from hope.config import REPO_ROOT
from hope.processes.process import ManagedProcess

NGINX_CONFIG_DIR = REPO_ROOT / "configs" / "nginx"
#: The body of HOPE's TLS server block, shared with the production site.
PROXY_SNIPPET = NGINX_CONFIG_DIR / "hope-proxy.conf"
#: The production site example (Debian's ``/etc/nginx/sites-available/hope``).
SITE_EXAMPLE = NGINX_CONFIG_DIR / "hope.conf"
#: How ``SITE_EXAMPLE`` includes ``PROXY_SNIPPET`` once installed under ``/etc/nginx``.
SITE_EXAMPLE_INCLUDE = "include snippets/hope-proxy.conf;"
_TEMP_PATHS = ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
# Paths are written into the configuration unquoted: no spaces, ';', quotes or '$' (nginx variables).
_PLAIN_PATH = re.compile(r"^[A-Za-z0-9_./@+=,:-]+$")


def _plain(path: Path) -> str:
    """``path`` as written into nginx's configuration; a ``ValueError`` if nginx would read it otherwise."""
    text = str(path)
    if not _PLAIN_PATH.match(text):
        raise ValueError(f"{text!r}: nginx paths here may hold only letters, digits and _ . / @ + = , : -")
    return text


@dataclass
class NginxSettings:
    """One nginx in front of a HOPE server on ``127.0.0.1:upstream_port``.

    It serves https on ``127.0.0.1:https_port`` as ``server_name`` with ``cert_file``/``key_file`` (PEM), and with
    ``http_port`` also redirects plain http there (as the production site's port 80 does). ``client_max_body_size``
    is nginx's upload limit (production: HOPE's ``http.max_upload_mb``). Its configuration, pid file, logs and
    temporary files live in ``work_dir``.
    """

    https_port: int
    upstream_port: int
    server_name: str
    cert_file: Path
    key_file: Path
    work_dir: Path
    http_port: int | None = None
    client_max_body_size: str = "512m"

    @property
    def url(self) -> str:
        """The proxy's https root (on 127.0.0.1)."""
        return f"https://127.0.0.1:{self.https_port}"

    @property
    def config_file(self) -> Path:
        """The rendered configuration."""
        return self.work_dir / "nginx.conf"

    @property
    def log_file(self) -> Path:
        """nginx's error log, and its output."""
        return self.work_dir / "nginx.log"


def nginx_binary() -> str:
    """Path of the nginx executable; says how to install it when missing."""
    found = shutil.which("nginx") or (Path("/usr/sbin/nginx").exists() and "/usr/sbin/nginx")
    if not found:
        raise FileNotFoundError("nginx is not installed: run scripts/setup.sh (apt-get install nginx)")
    return str(found)


def main_config(work_dir: Path, http_body: str) -> str:
    """A complete nginx configuration around ``http_body`` (the ``http`` context's content) that writes only in
    ``work_dir``: pid file, logs and every temporary folder (nginx's compiled-in ones are under ``/var``).

    As root, the workers run as root too: nginx's default worker user (``nobody``) could not reach a private
    ``work_dir``. As another user the ``user`` directive is left out (nginx ignores it, with a warning).
    """
    user = ""
    if os.geteuid() == 0:
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name} {grp.getgrgid(os.getegid()).gr_name};\n"
    temp = "\n".join(f"    {kind}_temp_path {_plain(work_dir / 'temp' / kind)};" for kind in _TEMP_PATHS)
    return (
        f"# Rendered by hope.processes.nginx; regenerated at every start.\n"
        f"daemon off;\nmaster_process on;\nworker_processes 1;\n{user}"
        f"pid {_plain(work_dir / 'nginx.pid')};\n"
        f"error_log {_plain(work_dir / 'nginx.log')} notice;\n"
        f"events {{\n    worker_connections 256;\n}}\n"
        f"http {{\n"
        f"    access_log {_plain(work_dir / 'access.log')};\n"
        f"{temp}\n"
        f"    default_type application/octet-stream;\n"
        f"{http_body}"
        f"}}\n"
    )


def render_config(settings: NginxSettings) -> str:
    """The configuration of ``settings``: the production site's shape on loopback ports, ``PROXY_SNIPPET`` included
    as is."""
    if not re.fullmatch(r"[A-Za-z0-9.-]+", settings.server_name):
        raise ValueError(f"server_name {settings.server_name!r}: a host name or IPv4 address")
    if not re.fullmatch(r"[0-9]+[kKmMgG]?", settings.client_max_body_size):
        raise ValueError(f"client_max_body_size {settings.client_max_body_size!r}: a size such as 512m")
    redirect = ""
    if settings.http_port is not None:
        redirect = (
            f"    server {{\n"
            f"        listen 127.0.0.1:{settings.http_port};\n"
            f"        server_name {settings.server_name};\n"
            f"        return 301 https://$server_name$request_uri;\n"
            f"    }}\n"
        )
    body = (
        f"    upstream hope_server {{\n"
        f"        server 127.0.0.1:{settings.upstream_port};\n"
        f"        keepalive 16;\n"
        f"    }}\n"
        f"{redirect}"
        f"    server {{\n"
        f"        listen 127.0.0.1:{settings.https_port} ssl http2;\n"
        f"        server_name {settings.server_name};\n"
        f"        ssl_certificate {_plain(settings.cert_file)};\n"
        f"        ssl_certificate_key {_plain(settings.key_file)};\n"
        f"        client_max_body_size {settings.client_max_body_size};\n"
        f"        include {_plain(PROXY_SNIPPET)};\n"
        f"    }}\n"
    )
    return main_config(settings.work_dir, body)


def nginx_command(config_file: Path, work_dir: Path, *extra: str) -> list[str]:
    """``nginx`` on ``config_file`` with ``work_dir`` as its prefix and its start-up error log there (``-e``: else
    nginx first opens ``/var/log/nginx/error.log``, which another user may not write)."""
    return [nginx_binary(), "-p", f"{work_dir}/", "-e", str(work_dir / "nginx.log"), "-c", str(config_file), *extra]


def check_config(config_file: Path, work_dir: Path) -> str:
    """``nginx -t`` of ``config_file`` (parses it, opens its files, binds nothing); its output, or a
    ``RuntimeError`` with it."""
    for kind in _TEMP_PATHS:
        (work_dir / "temp" / kind).mkdir(parents=True, exist_ok=True)
    result = subprocess.run(nginx_command(config_file, work_dir, "-t"), capture_output=True, text=True, timeout=60)
    if result.returncode != 0:
        raise RuntimeError(f"nginx -t failed on {config_file}:\n{result.stderr}{result.stdout}")
    return result.stderr + result.stdout


def tls_handshake_ok(host: str, port: int, timeout: float = 2.0) -> bool:
    """Whether ``host:port`` completes a TLS handshake (any certificate: readiness, not trust)."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    try:
        with socket.create_connection((host, port), timeout=timeout) as raw, context.wrap_socket(raw):
            return True
    except OSError:
        return False


class NginxProcess(ManagedProcess):
    """A :class:`ManagedProcess` that is ready once its https port completes a TLS handshake.

    The probe does not go through to HOPE (nginx is ready while HOPE is still starting) and does not check the
    certificate (clients do that, with the certificate as trust anchor).
    """

    def __init__(self, settings: NginxSettings, command: list[str]) -> None:
        super().__init__(name="nginx", command=command, log_path=settings.log_file, ready_url=f"{settings.url}/")
        self.settings = settings

    def _ready_or_dead(self) -> bool:
        assert self.process is not None
        return self.process.poll() is not None or tls_handshake_ok("127.0.0.1", self.settings.https_port)


def nginx_process(settings: NginxSettings) -> NginxProcess:
    """A :class:`ManagedProcess` for nginx; its configuration is written to ``<work_dir>/nginx.conf``."""
    settings.work_dir.mkdir(parents=True, exist_ok=True)
    for kind in _TEMP_PATHS:
        (settings.work_dir / "temp" / kind).mkdir(parents=True, exist_ok=True)
    settings.config_file.write_text(render_config(settings))
    return NginxProcess(settings, nginx_command(settings.config_file, settings.work_dir))


def self_signed_certificate(dest_dir: Path, host: str = "127.0.0.1", days: int = 30) -> tuple[Path, Path]:
    """A self-signed P-256 certificate for ``host``, ``127.0.0.1`` and ``localhost``, valid ``days``; written to
    ``<dest_dir>/cert.pem`` and ``<dest_dir>/key.pem`` (the key readable by its owner only). Returns both paths.

    Clients trust it by passing the certificate file as their CA bundle. For tests and trials only: a hospital
    network needs a certificate from the hospital's CA (or a public one).
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for name in dict.fromkeys([host, "127.0.0.1", "localhost"]):
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            names.append(x509.DNSName(name))
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    dest_dir.mkdir(parents=True, exist_ok=True)
    cert_file, key_file = dest_dir / "cert.pem", dest_dir / "key.pem"
    cert_file.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key_pem)
    key_file.chmod(0o600)
    return cert_file, key_file
