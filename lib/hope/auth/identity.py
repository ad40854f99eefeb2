"""Who made a change: the signed-in user and their role (the access guard, :mod:`hope.server.access`, establishes
it for each request)."""

from __future__ import annotations

import enum
from dataclasses import dataclass

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


def recorded_user(identity: Identity, claimed: object = None) -> str:
    """Who a change is recorded as: the signed-in user; on the loopback demo, whoever the client ``claimed``."""
    if identity.verified or not isinstance(claimed, str) or not claimed.strip():
        return identity.user
    return claimed.strip()
