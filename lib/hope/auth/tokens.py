"""Access tokens checked locally: signature against the provider's keys, algorithm, issuer, audience and times."""

from __future__ import annotations

from typing import Any

import jwt

from hope.auth.identity import Identity, Role
from hope.auth.provider import OidcProvider
from hope.config.auth import AuthSettings
from hope.errors import ForbiddenError, UnauthenticatedError


def claim_at(claims: dict[str, Any], dotted: str) -> Any:
    """The claim at a dotted path (``realm_access.roles``), or ``None``."""
    value: Any = claims
    for part in dotted.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


class TokenVerifier:
    """Turns a bearer token into an :class:`Identity`, or refuses it.

    Only the configured algorithms are accepted (never ``none``, never HS*: those would let a public key serve as
    an HMAC secret); the token must name a key the provider publishes, come from ``auth.issuer``, be meant for
    ``auth.audience``, and be within its lifetime give or take ``auth.clock_skew_seconds``.
    """

    def __init__(self, settings: AuthSettings, provider: OidcProvider | None = None) -> None:
        self.settings = settings
        self.provider = provider or OidcProvider(settings)
        self._roles = {name: role for role, name in settings.role_names.items()}

    def verify(self, token: str) -> Identity:
        """The identity a token proves.

        Raises:
            UnauthenticatedError: the token is malformed, forged, expired, or not meant for HOPE.
            ForbiddenError: the token is valid but its user holds none of HOPE's roles.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as error:
            raise UnauthenticatedError(f"the bearer token is not a JWT ({error}): sign in again") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in self.settings.algorithms:
            raise UnauthenticatedError(f"tokens signed with {algorithm!r} are refused; HOPE accepts "
                                       f"{', '.join(self.settings.algorithms)}")
        if not isinstance(kid, str) or not kid:
            raise UnauthenticatedError("the token names no signing key (kid): sign in again")
        key = self.provider.signing_key(kid)
        try:
            claims = jwt.decode(
                token, key.key, algorithms=[algorithm], audience=self.settings.audience,
                issuer=self.provider.endpoints().issuer, leeway=self.settings.clock_skew_seconds,
                options={"require": ["exp", "iat", "iss", "aud"]},
            )
        except jwt.ExpiredSignatureError:
            raise UnauthenticatedError("the token has expired: sign in again") from None
        except jwt.PyJWTError as error:
            raise UnauthenticatedError(f"the token was refused: {error}") from None
        return self._identity(claims)

    def _identity(self, claims: dict[str, Any]) -> Identity:
        user = claim_at(claims, self.settings.username_claim) or claims.get("sub")
        if not isinstance(user, str) or not user:
            raise UnauthenticatedError(f"the token has no {self.settings.username_claim} or sub claim")
        names = claim_at(claims, self.settings.roles_claim)
        held = [self._roles[name] for name in names if name in self._roles] if isinstance(names, list) else []
        if not held:
            wanted = ", ".join(self.settings.role_names[role] for role in Role)
            raise ForbiddenError(f"{user} is signed in but holds none of HOPE's roles ({wanted}, in the token's "
                                 f"{self.settings.roles_claim} claim): ask an administrator to grant one")
        return Identity(user=user, role=max(held), verified=True)
