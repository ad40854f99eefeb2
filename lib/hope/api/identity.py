"""The request's identity, as the access guard (:mod:`hope.server.access`) established it, for HOPE's routes."""

from __future__ import annotations

from starlette.requests import HTTPConnection

from hope.auth.identity import Identity

#: Where the access guard puts the request's :class:`Identity` in the ASGI scope.
SCOPE_KEY = "hope.identity"


def current_identity(connection: HTTPConnection) -> Identity:
    """The request's identity (a FastAPI dependency); the access guard sets it before any route runs.

    Raises:
        RuntimeError: the request did not pass the access guard (a wiring error, never a client's).
    """
    identity = connection.scope.get(SCOPE_KEY)
    if not isinstance(identity, Identity):
        raise RuntimeError("no identity on the request: hope.server.access.AccessGuard must wrap every route")
    return identity
