"""The one place where HOPE's routes are mounted, in front of MONAI Label's own, with the error handlers.

HOPE's routers (:mod:`hope.api`) answer before MONAI Label's routes of the same path: HOPE's ``POST /train/{model}``
checks bounds and records who started it, and its ``GET /ohif/app-config.js`` replaces MONAI Label's catch-all
``GET /ohif/{path}``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI

from hope.api.admin import build_router as admin_router
from hope.api.cases import build_router as cases_router
from hope.api.ohif import ohif_router
from hope.server.collaborators import Collaborators
from hope.server.errors import install_error_handlers
from hope.sync.routes import build_router as sync_router


def _in_front(app: FastAPI, router: APIRouter) -> None:
    """Mount ``router``'s routes before every route already there (so they answer first)."""
    for route in reversed(router.routes):
        app.router.routes.insert(0, route)


def mount_routes(app: FastAPI, collab: Collaborators, published_config: Callable[[str], Mapping[str, Any]]) -> None:
    """Mount HOPE's routes on MONAI Label's running ``app`` and answer HOPE's errors.

    Args:
        app: MONAI Label's FastAPI app (already started: its middleware stack is rebuilt here).
        collab: the server's collaborators.
        published_config: a trainer's configuration as ``/info/`` publishes it, by task name.
    """
    trained = {**collab.tasks, **collab.trained_fewshot}
    registries = {name: task.registry for name, task in {**collab.tasks, **collab.fewshot}.items()}
    _in_front(app, admin_router({name: task.definition for name, task in trained.items()}, registries,
                                published_config))
    _in_front(app, ohif_router())
    if collab.sync is not None:
        app.include_router(sync_router(collab.sync))
    if collab.case_repository is not None:
        app.include_router(cases_router(collab.case_repository()))
    install_error_handlers(app)
    app.middleware_stack = None  # built at the first request; rebuilt then with the handlers above
