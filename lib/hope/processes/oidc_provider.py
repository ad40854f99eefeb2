"""Run HOPE's local OpenID Connect provider (``oidc-provider/provider.mjs``, panva's ``oidc-provider`` on Node).

Production uses Keycloak (``configs/keycloak/hope-realm.json``); this provider stands in for it in tests,
benchmarks and the local demo and issues the same kind of access tokens: RS256 JWTs signed with a key generated
at each start, with ``aud`` = the API audience, ``preferred_username``, ``name`` and ``realm_access.roles``.
Its users (demo accounts only) come from ``configs/auth/demo-users.json``. Clients: ``hope-web`` (public,
authorization code + PKCE S256) and ``hope-slicer`` (public, password grant). State lives in memory: a restart
forgets every session and code, and tokens signed before it no longer verify.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from hope.config import REPO_ROOT
from hope.processes.process import ManagedProcess

PROVIDER_DIR = REPO_ROOT / "oidc-provider"
PROVIDER_SCRIPT = PROVIDER_DIR / "provider.mjs"
DEMO_USERS = REPO_ROOT / "configs" / "auth" / "demo-users.json"
#: The public clients the provider knows: browsers (authorization code + PKCE) and 3D Slicer (password grant).
WEB_CLIENT = "hope-web"
SLICER_CLIENT = "hope-slicer"


@dataclass(frozen=True)
class OidcProviderSettings:
    """Where the provider listens, which redirect URIs ``hope-web`` may use, its users and its tokens.

    ``log_dir`` receives ``oidc-provider.log`` (its output: one line per token issued).
    """

    port: int
    redirect_uris: tuple[str, ...]
    log_dir: Path
    users_file: Path = DEMO_USERS
    audience: str = "hope"
    token_ttl_s: int = 3600

    @property
    def issuer(self) -> str:
        """The issuer URL (``iss`` of its tokens; discovery is below it)."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def discovery_url(self) -> str:
        """The OpenID Connect discovery document."""
        return f"{self.issuer}/.well-known/openid-configuration"


def node_binary() -> str:
    """Path of the ``node`` executable; says how to install it when missing."""
    found = shutil.which("node")
    if not found:
        raise FileNotFoundError("Node.js is not installed: run scripts/setup.sh (apt-get install nodejs npm)")
    return found


def oidc_provider_process(settings: OidcProviderSettings) -> ManagedProcess:
    """A :class:`ManagedProcess` for the provider; ready once its discovery document answers.

    Raises:
        RuntimeError: ``oidc-provider/node_modules`` is missing (run ``scripts/setup.sh``).
        ValueError: no redirect URI.
    """
    if not (PROVIDER_DIR / "node_modules" / "oidc-provider").is_dir():
        raise RuntimeError(
            f"{PROVIDER_DIR / 'node_modules'} is missing: run scripts/setup.sh (npm ci in oidc-provider/)"
        )
    if not settings.redirect_uris:
        raise ValueError("the OpenID Connect provider needs at least one redirect URI for hope-web")
    command = [
        node_binary(),
        str(PROVIDER_SCRIPT),
        "--port", str(settings.port),
        "--host", "127.0.0.1",
        "--issuer", settings.issuer,
        "--users", str(settings.users_file),
        "--audience", settings.audience,
        "--token-ttl", str(settings.token_ttl_s),
    ]
    for uri in settings.redirect_uris:
        command += ["--redirect-uri", uri]
    return ManagedProcess(
        name="OpenID Connect provider",
        command=command,
        log_path=settings.log_dir / "oidc-provider.log",
        ready_url=settings.discovery_url,
        cwd=PROVIDER_DIR,
    )


def demo_password(username: str, users_file: Path = DEMO_USERS) -> str:
    """The password of ``username`` in ``users_file`` (demo accounts, for tests and benchmarks).

    Raises:
        KeyError: no such user.
    """
    for user in json.loads(users_file.read_text())["users"]:
        if user["username"] == username:
            return str(user["password"])
    raise KeyError(f"{username} is not a user of {users_file}")


def discovery(issuer: str, timeout: float = 10) -> dict[str, Any]:
    """The provider's discovery document (``<issuer>/.well-known/openid-configuration``)."""
    response = requests.get(f"{issuer.rstrip('/')}/.well-known/openid-configuration", timeout=timeout)
    response.raise_for_status()
    return dict(response.json())


def password_token(issuer: str, client_id: str, username: str, password: str, timeout: float = 10) -> dict[str, Any]:
    """Tokens of ``username`` by the password grant at ``issuer``'s token endpoint (``access_token`` and others).

    Raises:
        RuntimeError: the provider did not answer 200 (its answer is in the message).
    """
    token_endpoint = discovery(issuer, timeout)["token_endpoint"]
    response = requests.post(
        token_endpoint,
        data={
            "grant_type": "password",
            "client_id": client_id,
            "username": username,
            "password": password,
            "scope": "openid profile",
        },
        timeout=timeout,
    )
    if response.status_code != 200:
        raise RuntimeError(
            f"password grant for {username} at {token_endpoint} answered {response.status_code}: {response.text}"
        )
    return dict(response.json())
