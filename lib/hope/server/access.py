"""The access guard: every request is checked against the route rules (:mod:`hope.server.policy`) before any route.

With sign-in on, a request proves who sent it with a bearer token (``Authorization: Bearer ...``, as Slicer and
scripts send it) or the browser session cookie set by ``/auth/callback`` (as OHIF's pages and panel send it,
same-origin, without knowing about tokens). Without one it gets a 401; with a role below the route's, a 403 that
says which role it needs. A browser that navigates to a page is sent to sign in instead, and shown a readable page
when its role is too low. Changes made with the session cookie must come from HOPE's own pages (``Origin``).

With sign-in off (the loopback demo), everyone may do everything, and ``X-HOPE-User`` names who made a change.
"""

from __future__ import annotations

import html
from collections.abc import Iterator
from urllib.parse import quote, urlsplit

import anyio
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.datastructures import Headers
from starlette.middleware import Middleware
from starlette.requests import cookie_parser
from starlette.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from hope.api.identity import SCOPE_KEY
from hope.auth.browser import SESSION_COOKIE
from hope.auth.identity import ANONYMOUS_DEMO_USER, Identity, Role
from hope.auth.provider import ProviderError
from hope.auth.tokens import TokenVerifier
from hope.config.auth import AuthSettings
from hope.errors import ForbiddenError, HopeError, UnauthenticatedError
from hope.server.policy import RULES, Open, needed, unruled_routes

#: The loopback demo's header naming who makes a change; ignored when sign-in is on.
USER_HEADER = "X-HOPE-User"
UNSAFE_METHODS = frozenset({"POST", "PUT", "DELETE", "PATCH"})


def served_routes(routes: list[BaseRoute], prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every ``(method, path template)`` the routes serve, including those of lazily included routers."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            inner = prefix + str(getattr(getattr(route, "include_context", None), "prefix", "") or "")
            yield from served_routes(list(included.routes), inner)
        elif isinstance(route, APIRoute | Route):
            for method in route.methods or ():
                yield method, prefix + route.path


class AccessGuard:
    """ASGI middleware that establishes each request's :class:`Identity` and refuses what its role may not do."""

    def __init__(self, app: ASGIApp, settings: AuthSettings, verifier: TokenVerifier | None) -> None:
        self.app = app
        self.settings = settings
        self.verifier = verifier
        if settings.enabled and verifier is None:
            raise ValueError("sign-in is on: the access guard needs a TokenVerifier")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check an HTTP request's identity and role, then pass it on (or answer 401/403)."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        need = needed(scope["method"], scope["path"])
        if isinstance(need, Open):
            await self.app(scope, receive, send)
            return
        if not self.settings.enabled:
            scope[SCOPE_KEY] = Identity(headers.get(USER_HEADER) or ANONYMOUS_DEMO_USER, Role.ADMIN, verified=False)
            await self.app(scope, receive, send)
            return
        try:
            identity = await self._identity(scope, headers, need or Role.USER)
        except HopeError as error:
            await self._refusal(scope, headers, error)(scope, receive, send)
            return
        scope[SCOPE_KEY] = identity
        await self.app(scope, receive, send)

    async def _identity(self, scope: Scope, headers: Headers, need: Role) -> Identity:
        assert self.verifier is not None
        authorization = headers.get("authorization", "")
        scheme, _, token = authorization.partition(" ")
        from_cookie = not authorization
        if from_cookie:
            token = cookie_parser(headers.get("cookie", "")).get(SESSION_COOKIE, "")
        elif scheme.lower() != "bearer" or not token.strip():
            raise UnauthenticatedError("the Authorization header must be 'Bearer <access token>'")
        if not token:
            raise UnauthenticatedError("sign in first: send 'Authorization: Bearer <access token>' (POST "
                                       "/auth/token with a username and password gives one), or sign in in a "
                                       "browser at /auth/login")
        identity = await anyio.to_thread.run_sync(self.verifier.verify, token.strip())
        if from_cookie and scope["method"] in UNSAFE_METHODS and not _same_origin(headers):
            raise ForbiddenError("a change sent with the browser session must come from HOPE's own pages (its "
                                 "Origin is another site's): use a bearer token from another client")
        if not identity.may(need):
            raise ForbiddenError(f"{identity.user} is {identity.role.label}; {scope['method']} {scope['path']} "
                                 f"needs the {need.label} role: ask an administrator")
        return identity

    def _refusal(self, scope: Scope, headers: Headers, error: HopeError) -> Response:
        status = 401 if isinstance(error, UnauthenticatedError) else 403 if isinstance(error, ForbiddenError) else (
            502 if isinstance(error, ProviderError) else 500)
        browser = scope["method"] == "GET" and "text/html" in headers.get("accept", "")
        if browser and status == 401:
            target = scope["path"] + (f"?{scope['query_string'].decode()}" if scope.get("query_string") else "")
            return RedirectResponse(f"/auth/login?next={quote(target, safe='')}", status_code=303)
        if browser:
            return HTMLResponse(_refusal_page(status, error.reason), status_code=status)
        extra = {"WWW-Authenticate": 'Bearer realm="HOPE"'} if status == 401 else None
        return JSONResponse({"detail": error.reason}, status_code=status, headers=extra)


def _same_origin(headers: Headers) -> bool:
    origin = headers.get("origin")
    if origin is None:
        referer = headers.get("referer")
        origin = f"{urlsplit(referer).scheme}://{urlsplit(referer).netloc}" if referer else None
    return origin is None or urlsplit(origin).netloc == headers.get("host")


def _refusal_page(status: int, reason: str) -> str:
    title = "Not allowed" if status == 403 else "HOPE could not check who you are"
    return (f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{title} - HOPE</title></head>"
            f"<body><main><h1>{title}</h1><p role=alert>{html.escape(reason)}</p>"
            "<p><a href=/ohif/>Back to the studies</a> · "
            "<form method=post action=/auth/logout style=display:inline><button>Sign in as someone else</button>"
            "</form></p></main></body></html>")


def route_table(app: FastAPI) -> list[dict[str, str]]:
    """Every route ``app`` serves with what it needs (``user`` ... ``admin``, ``public``, ``signed event``)."""
    rules = {(method, rule.path): rule.needs for rule in RULES for method in rule.methods}
    table = []
    for method, path in sorted(set(served_routes(list(app.router.routes)))):
        need = rules.get((method, path))
        if need is not None:
            table.append({"method": method, "path": path,
                          "needs": need.label if isinstance(need, Role) else need.value})
    return table


def access_middleware(app: FastAPI, settings: AuthSettings, verifier: TokenVerifier | None) -> Middleware:
    """The :class:`AccessGuard` for ``app``, once every route ``app`` serves has a rule.

    Raises:
        RuntimeError: a route has no rule in :data:`hope.server.policy.RULES` (a wiring error: add its rule).
    """
    missing = unruled_routes(served_routes(list(app.router.routes)))
    if missing:
        raise RuntimeError("routes without an access rule (add them to hope.server.policy.RULES): "
                           + ", ".join(missing))
    return Middleware(AccessGuard, settings=settings, verifier=verifier)
