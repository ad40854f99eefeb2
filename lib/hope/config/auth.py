"""Sign-in and review settings (``auth:`` and ``review:`` of ``configs/server.yaml``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from hope.auth.identity import Role
from hope.config.files import ConfigError, flag, number, section

#: Signature algorithms a token may use. Never ``none``, never HS* (a public key would be taken as the HMAC secret).
SAFE_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"})
#: MONAI Label's role names, Keycloak realm roles.
DEFAULT_ROLE_NAMES = {
    Role.USER: "monailabel-user",
    Role.ANNOTATOR: "monailabel-annotator",
    Role.REVIEWER: "monailabel-reviewer",
    Role.ADMIN: "monailabel-admin",
}


@dataclass(frozen=True)
class AuthSettings:
    """OpenID Connect sign-in. Off: loopback only, everyone is admin, ``X-HOPE-User`` names who made a change.

    Attributes:
        enabled: whether every request needs a token (or a signed-in browser session).
        issuer: the provider's issuer URL (its discovery document is ``<issuer>/.well-known/openid-configuration``).
        audience: the ``aud`` a token must carry (the HOPE client, or its resource).
        algorithms: the signature algorithms accepted (a subset of :data:`SAFE_ALGORITHMS`).
        clock_skew_seconds: tolerance on ``exp``, ``nbf`` and ``iat``.
        roles_claim: dotted path of the claim that lists the user's roles (Keycloak: ``realm_access.roles``).
        username_claim: the claim recorded as the user's name on every change.
        role_names: the provider's name of each HOPE role.
        browser_client_id: the public client of HOPE's browser sign-in (authorization code with PKCE).
        password_client_id: the client ``POST /auth/token`` uses for Slicer's username-and-password sign-in.
        jwks_refresh_seconds: the shortest interval between two fetches of the provider's keys (an unknown ``kid``
            triggers one).
        provider_timeout_seconds: timeout of every request to the provider.
    """

    enabled: bool = False
    issuer: str = ""
    audience: str = "hope"
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    clock_skew_seconds: float = 30.0
    roles_claim: str = "realm_access.roles"
    username_claim: str = "preferred_username"
    role_names: dict[Role, str] = field(default_factory=lambda: dict(DEFAULT_ROLE_NAMES))
    browser_client_id: str = "hope-web"
    password_client_id: str = "hope-slicer"
    jwks_refresh_seconds: float = 10.0
    provider_timeout_seconds: float = 10.0


@dataclass(frozen=True)
class ReviewSettings:
    """Label review: with it on, a saved label is submitted, and only a reviewer's approval makes it count."""

    enabled: bool = False


def _text(raw: dict[str, Any], key: str, default: str, where: str) -> str:
    value = raw.get(key, default)
    if not isinstance(value, str):
        raise ConfigError(f"{where}.{key}: expected a string, got {value!r}")
    return value


def parse_auth(raw: dict[str, Any], where: str) -> AuthSettings:
    """Validate the ``auth:`` mapping; a :class:`ConfigError` names the bad key."""
    d = AuthSettings()
    enabled = flag(raw, "enabled", d.enabled, where)
    issuer = _text(raw, "issuer", d.issuer, where).rstrip("/")
    if enabled and not issuer.startswith(("https://", "http://")):
        raise ConfigError(f"{where}.issuer: sign-in is enabled, so give the provider's issuer URL "
                          f"(e.g. https://keycloak.example.org/realms/hope), got {issuer!r}")
    algorithms = raw.get("algorithms", list(d.algorithms))
    if not isinstance(algorithms, list) or not algorithms or not set(algorithms) <= SAFE_ALGORITHMS:
        raise ConfigError(f"{where}.algorithms: expected a non-empty list of {sorted(SAFE_ALGORITHMS)} "
                          f"(never none or HS*), got {algorithms!r}")
    names = section(raw, "role_names", where)
    unknown = sorted(set(names) - {role.label for role in Role})
    if unknown:
        raise ConfigError(f"{where}.role_names: unknown role(s) {unknown}; HOPE's roles: "
                          f"{', '.join(role.label for role in Role)}")
    role_names = {role: _text(names, role.label, default, f"{where}.role_names")
                  for role, default in DEFAULT_ROLE_NAMES.items()}
    return AuthSettings(
        enabled=enabled,
        issuer=issuer,
        audience=_text(raw, "audience", d.audience, where),
        algorithms=tuple(algorithms),
        clock_skew_seconds=number(raw, "clock_skew_seconds", d.clock_skew_seconds, where, low=0, high=300),
        roles_claim=_text(raw, "roles_claim", d.roles_claim, where),
        username_claim=_text(raw, "username_claim", d.username_claim, where),
        role_names=role_names,
        browser_client_id=_text(raw, "browser_client_id", d.browser_client_id, where),
        password_client_id=_text(raw, "password_client_id", d.password_client_id, where),
        jwks_refresh_seconds=number(raw, "jwks_refresh_seconds", d.jwks_refresh_seconds, where, low=0),
        provider_timeout_seconds=number(raw, "provider_timeout_seconds", d.provider_timeout_seconds, where,
                                        low=0.1),
    )


def parse_review(raw: dict[str, Any], where: str) -> ReviewSettings:
    """Validate the ``review:`` mapping."""
    return ReviewSettings(enabled=flag(raw, "enabled", ReviewSettings.enabled, where))
