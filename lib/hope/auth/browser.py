"""Browser sign-in (authorization code with PKCE): the login state a browser carries between HOPE and the provider.

The state, the PKCE verifier and where to go afterwards travel in a short-lived cookie sealed with an HMAC key of
the running server, so HOPE keeps no per-login state and a forged or replayed callback is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import asdict, dataclass
from urllib.parse import urlencode

from hope.errors import UnauthenticatedError

#: The cookie that holds the access token of a signed-in browser (HttpOnly, SameSite=Lax).
SESSION_COOKIE = "hope_session"
#: The cookie that carries :class:`LoginState` from ``/auth/login`` to ``/auth/callback``.
LOGIN_COOKIE = "hope_login"
#: How long a browser may take at the provider's login page.
LOGIN_MAX_AGE_S = 600


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass(frozen=True)
class LoginState:
    """One browser sign-in in progress."""

    state: str
    verifier: str
    next_path: str
    started: float

    @classmethod
    def start(cls, next_path: str) -> LoginState:
        """A new sign-in that returns to ``next_path`` (a path on this server; anything else returns to ``/``)."""
        local = next_path.startswith("/") and not next_path.startswith("//") and "\\" not in next_path
        return cls(secrets.token_urlsafe(24), secrets.token_urlsafe(48), next_path if local else "/", time.time())

    @property
    def challenge(self) -> str:
        """The PKCE S256 code challenge of :attr:`verifier`."""
        return _b64(hashlib.sha256(self.verifier.encode()).digest())

    def authorization_url(self, endpoint: str, client_id: str, redirect_uri: str) -> str:
        """Where the browser signs in: the provider's authorization endpoint with this state."""
        query = {"response_type": "code", "client_id": client_id, "redirect_uri": redirect_uri,
                 "scope": "openid profile", "state": self.state, "code_challenge": self.challenge,
                 "code_challenge_method": "S256"}
        return f"{endpoint}?{urlencode(query)}"


class LoginSealer:
    """Seals :class:`LoginState` into a cookie value and opens it again, with a key of this server process."""

    def __init__(self, key: bytes | None = None) -> None:
        self._key = key or secrets.token_bytes(32)

    def _mac(self, payload: str) -> str:
        return _b64(hmac.new(self._key, payload.encode(), hashlib.sha256).digest())

    def seal(self, login: LoginState) -> str:
        """The cookie value of ``login``."""
        payload = _b64(json.dumps(asdict(login)).encode())
        return f"{payload}.{self._mac(payload)}"

    def open(self, value: str | None, state: str | None) -> LoginState:
        """The sign-in ``value`` seals, if it is this server's, fresh, and the one ``state`` names.

        Raises:
            UnauthenticatedError: no sign-in in progress, a tampered or stale cookie, or another sign-in's state.
        """
        if not value or "." not in value:
            raise UnauthenticatedError("no sign-in is in progress in this browser: start again at /auth/login")
        payload, mac = value.rsplit(".", 1)
        if not hmac.compare_digest(mac, self._mac(payload)):
            raise UnauthenticatedError("the sign-in cookie was not made by this server (or it restarted): "
                                       "start again at /auth/login")
        login = LoginState(**json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))))
        if time.time() - login.started > LOGIN_MAX_AGE_S:
            raise UnauthenticatedError("the sign-in took too long: start again at /auth/login")
        if not state or not hmac.compare_digest(state, login.state):
            raise UnauthenticatedError("the provider answered for another sign-in: start again at /auth/login")
        return login
