"""Where the server listens: loopback unless sign-in is on."""

from __future__ import annotations

import ipaddress
from collections.abc import Sequence

from hope.config import ConfigError
from hope.config.auth import AuthSettings

#: MONAI Label's ``start_server`` listens here when it is given no ``--host``.
MONAI_LABEL_DEFAULT_HOST = "0.0.0.0"


def bind_host(argv: Sequence[str]) -> str:
    """The address ``monailabel start_server`` was told to listen on (``-i``/``--host``), or its default."""
    for i, arg in enumerate(argv):
        if arg in {"-i", "--host"} and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--host="):
            return arg.split("=", 1)[1]
    return MONAI_LABEL_DEFAULT_HOST


def is_loopback(host: str) -> bool:
    """Whether ``host`` is this machine only (``localhost``, 127.0.0.0/8, ``::1``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_bind(host: str, auth: AuthSettings) -> None:
    """Refuse to serve a network without sign-in.

    Raises:
        ConfigError: ``host`` is not loopback and ``auth.enabled`` is off.
    """
    if not is_loopback(host) and not auth.enabled:
        raise ConfigError(f"HOPE would listen on {host}, which other machines reach, with sign-in off: anyone on the "
                          "network could read every image and retrain the models. Turn sign-in on (auth in "
                          "configs/server.yaml, README 'Sign-in and roles') or listen on 127.0.0.1 (HOPE_HOST)")
