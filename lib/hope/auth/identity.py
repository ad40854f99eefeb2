"""The identity of a request: the signed-in user and their role, as the access guard established it."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from starlette.requests import HTTPConnection

#: Where the access guard puts the request's :class:`Identity` in the ASGI scope.
SCOPE_KEY = "hope.identity"
#: Who a change is recorded as on the loopback demo (sign-in off) when the client names nobody.
ANONYMOUS_DEMO_USER = "demo"


class Role(enum.IntEnum):
    """HOPE's roles, each allowed everything the ones below it are (MONAI Label's four roles)."""

    USER = 1  # read: /info, listings, images, model info and plots
    ANNOTATOR = 2  # + infer, next sample, save labels
    REVIEWER = 3  # + approve or reject submitted labels, write case records
    ADMIN = 4  # + train, stop, pin, roll back, auto-retrain, import cases, delete

    @property
    def label(self) -> str:
        """The role's name as people read it (``annotator``)."""
        return self.name.lower()


@dataclass(frozen=True)
class Identity:
    """Who made a request.

    Attributes:
        user: the user name recorded on every change (the token's username claim; on the loopback demo, the
            ``X-HOPE-User`` header or :data:`ANONYMOUS_DEMO_USER`).
        role: the highest role the user holds.
        verified: whether ``user`` comes from a checked token (``False`` on the loopback demo, where sign-in is off).
    """

    user: str
    role: Role
    verified: bool

    def may(self, needed: Role) -> bool:
        """Whether this identity holds ``needed`` or a higher role."""
        return self.role >= needed


def current_identity(connection: HTTPConnection) -> Identity:
    """The request's identity (a FastAPI dependency); the access guard sets it before any route runs.

    Raises:
        RuntimeError: the request did not pass the access guard (a wiring error, never a client's).
    """
    identity = connection.scope.get(SCOPE_KEY)
    if not isinstance(identity, Identity):
        raise RuntimeError("no identity on the request: hope.server.access.AccessGuard must wrap every route")
    return identity


def recorded_user(identity: Identity, claimed: object = None) -> str:
    """Who a change is recorded as: the signed-in user; on the loopback demo, whoever the client ``claimed``."""
    if identity.verified or not isinstance(claimed, str) or not claimed.strip():
        return identity.user
    return claimed.strip()
