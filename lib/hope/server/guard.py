"""What HOPE lets through from MONAI Label 0.8.5: an explicit route allow-list, checked identifiers, Host and CORS.

MONAI Label serves routes HOPE's clients never use and that were found open to hostile input: writing files
outside the data folder (``PUT /datastore/image``), unpacking archives with ``../`` entries (``PUT /session/``),
replacing the served weights behind the model registry's back (``PUT /model/{model}``), reaching all of Orthanc
through the DICOMweb proxy, reloading the app. HOPE keeps only the routes its clients use (OHIF's panel, Slicer's
MONAI Label module, the documented API) and removes the rest, so they answer 404.

Every request's identifiers (``image``, ``label``, ``tag``, ``id``) must match a strict pattern before any route
sees them, so that no client input ever forms a file-system path. Requests whose Host is not allowed are refused
(DNS rebinding), and cross-origin requests are allowed only from the configured origins.
"""

from __future__ import annotations

import re

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.routing import APIRoute
from starlette.datastructures import QueryParams
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.responses import JSONResponse
from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Receive, Scope, Send

from hope.config.server import HttpSettings

#: MONAI Label routes HOPE keeps, as (method, path). Everything else of MONAI Label's is removed; HOPE serves its own
#: ``GET /info/``, ``GET /datastore/``, ``POST /infer/{model}``, ``POST /activelearning/{strategy}``,
#: ``PUT /datastore/label``, ``POST /train/{model}`` and the DICOMweb proxy (:mod:`hope.api`).
MONAI_LABEL_ROUTES: frozenset[tuple[str, str]] = frozenset({
    ("GET", "/"),
    ("GET", "/favicon.ico"),
    ("GET", "/model/info/{model}"),
    ("GET", "/datastore/image"),
    ("HEAD", "/datastore/image"),
    ("GET", "/datastore/image/info"),
    ("GET", "/datastore/label"),
    ("HEAD", "/datastore/label"),
    ("GET", "/train/"),
    ("DELETE", "/train/"),
    ("GET", "/scoring/"),
    ("POST", "/scoring/{method}"),
    ("DELETE", "/scoring/"),
    ("GET", "/ohif/{path:path}"),
})

#: Query parameters that name a series, a label or a tag, and what they must look like.
IDENTIFIER = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9_-]|\.(?!\.)){0,127}$")
TAG = re.compile(r"^[A-Za-z0-9_-]{1,32}$")
CHECKED_PARAMS = {"image": IDENTIFIER, "label": IDENTIFIER, "id": IDENTIFIER, "tag": TAG}


def _restrict(routes: list[BaseRoute], prefix: str, removed: list[str]) -> list[BaseRoute]:
    kept: list[BaseRoute] = []
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI >= 0.160 includes routers lazily
        if included is not None:
            inner = prefix + str(getattr(getattr(route, "include_context", None), "prefix", "") or "")
            included.routes[:] = _restrict(list(included.routes), inner, removed)
            included._mark_routes_changed()  # its cached route table is rebuilt at the next request
            if included.routes:
                kept.append(route)
            continue
        if isinstance(route, APIRoute):
            path = prefix + route.path
            methods = set(route.methods or ())
            allowed = {m for m in methods if (m, path) in MONAI_LABEL_ROUTES}
            if not allowed:
                removed.append(f"{'/'.join(sorted(methods))} {path}")
                continue
            route.methods = allowed
        kept.append(route)
    return kept


def restrict_routes(app: FastAPI) -> list[str]:
    """Remove every MONAI Label API route not in :data:`MONAI_LABEL_ROUTES` from ``app``; what was removed.

    Call it before HOPE mounts its own routes: it judges every :class:`APIRoute` present.
    """
    removed: list[str] = []
    app.router.routes[:] = _restrict(list(app.router.routes), "", removed)
    return removed


class IdentifierGuard:
    """Refuses (422) a request whose identifier query parameters do not match their pattern, before any route.

    Series and label identifiers are DICOM UIDs or plain names (letters, digits, ``.``, ``_``, ``-``; no ``..``,
    no ``/``); tags are short names. So ``image=../../x.py``, ``tag=/abs/dir`` and ``image=/etc/passwd`` never
    reach code that builds a path.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check the query parameters of an HTTP request, then pass it on."""
        if scope["type"] == "http":
            for name, value in QueryParams(scope.get("query_string", b"")).multi_items():
                pattern = CHECKED_PARAMS.get(name)
                if pattern is not None and not pattern.match(value):
                    detail = (f"query parameter {name}={value[:80]!r} is not a valid identifier: use a series UID "
                              "or name of letters, digits, '.', '_' and '-' (no '/', no '..')" if name != "tag" else
                              f"query parameter tag={value[:80]!r} is not a valid tag: 1-32 letters, digits, "
                              "'_' or '-' (e.g. final)")
                    await JSONResponse({"detail": detail}, status_code=422)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def guard_middleware(settings: HttpSettings, access: Middleware) -> list[Middleware]:
    """The middleware that replaces MONAI Label's (which reflects any origin with credentials), outermost first:
    Host, CORS (a preflight is answered before sign-in is asked for), ``access`` (who is asking), identifiers."""
    return [
        Middleware(TrustedHostMiddleware, allowed_hosts=list(settings.allowed_hosts)),
        Middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_credentials=False,
                   allow_methods=["GET", "POST", "PUT", "DELETE"], allow_headers=["Authorization", "Content-Type"]),
        access,
        Middleware(IdentifierGuard),
    ]


def install_guards(app: FastAPI, settings: HttpSettings, access: Middleware) -> None:
    """Replace MONAI Label's middleware of ``app`` with HOPE's guards and the access guard ``access`` (takes effect
    when the stack is rebuilt)."""
    app.user_middleware[:] = guard_middleware(settings, access)
