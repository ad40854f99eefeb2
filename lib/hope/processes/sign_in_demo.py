"""The local demo with sign-in (``HOPE_SIGN_IN=demo scripts/start.sh``): HOPE's OpenID Connect provider with the
demo users, and a copy of ``configs/`` that turns sign-in and label review on and trusts that provider."""

from __future__ import annotations

import shutil
from pathlib import Path

import yaml

from hope.config import config_dir
from hope.processes.oidc_provider import OidcProviderSettings, oidc_provider_process
from hope.processes.process import ManagedProcess


def sign_in_demo(data_dir: Path, hope_port: int, provider_port: int) -> tuple[ManagedProcess, Path]:
    """The provider to start, and the configuration folder HOPE must read (``HOPE_CONFIG_DIR``).

    Args:
        data_dir: ``HOPE_DATA_DIR``; the configuration copy goes to ``<data_dir>/configs-sign-in``.
        hope_port: HOPE's port (the provider sends browsers back to ``http://127.0.0.1:<port>/auth/callback``).
        provider_port: the provider's port.
    """
    callbacks = tuple(f"http://{host}:{hope_port}/auth/callback" for host in ("127.0.0.1", "localhost"))
    settings = OidcProviderSettings(port=provider_port, redirect_uris=callbacks, log_dir=data_dir)
    configs = data_dir / "configs-sign-in"
    shutil.copytree(config_dir(), configs, dirs_exist_ok=True)
    server = yaml.safe_load((configs / "server.yaml").read_text())
    server["auth"] = {**(server.get("auth") or {}), "enabled": True, "issuer": settings.issuer}
    server["review"] = {**(server.get("review") or {}), "enabled": True}
    (configs / "server.yaml").write_text(yaml.safe_dump(server, sort_keys=False))
    return oidc_provider_process(settings), configs
