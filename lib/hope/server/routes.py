"""The one place where HOPE's routes are mounted, in front of MONAI Label's own, with the error handlers.

HOPE's routers (:mod:`hope.api`) answer before MONAI Label's routes of the same path: HOPE's ``POST /train/{model}``
checks bounds and records who started it, and its ``GET /ohif/app-config.js`` replaces MONAI Label's catch-all
``GET /ohif/{path}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any

from fastapi import APIRouter, FastAPI

from hope.api.activelearning import build_router as activelearning_router
from hope.api.admin import build_router as admin_router
from hope.api.audit import build_router as audit_router
from hope.api.auth import build_router as auth_router
from hope.api.cases import build_router as cases_router
from hope.api.console import build_router as console_router
from hope.api.datastore import build_router as datastore_router
from hope.api.dicomweb_proxy import build_router as proxy_router
from hope.api.infer import build_router as infer_router
from hope.api.info import build_router as info_router
from hope.api.labels import build_router as labels_router
from hope.api.measurements import build_router as measurements_router
from hope.api.ohif import ohif_router
from hope.api.review import build_router as review_router
from hope.api.sync import build_router as sync_router
from hope.auth.tokens import TokenVerifier
from hope.review.recorder import LabelRecorder
from hope.server.access import access_middleware, route_table
from hope.server.collaborators import Collaborators
from hope.server.errors import install_error_handlers
from hope.server.guard import install_guards, restrict_routes
from hope.server.workers import serving_pool
from hope.sync.signing import EventKey

logger = logging.getLogger(__name__)


def _in_front(app: FastAPI, router: APIRouter) -> None:
    """Mount ``router``'s routes before every route already there (so they answer first)."""
    for route in reversed(router.routes):
        app.router.routes.insert(0, route)


def mount_routes(app: FastAPI, collab: Collaborators, published_config: Callable[[str], Mapping[str, Any]],
                 on_save_label: Callable[[str, str], Mapping[str, Any] | None]) -> None:
    """Keep only the allowed MONAI Label routes, mount HOPE's in front, check every request's identity and role
    (:mod:`hope.server.access`) and identifiers, answer HOPE's errors.

    Args:
        app: MONAI Label's FastAPI app (already started: its middleware stack is rebuilt here).
        collab: the server's collaborators.
        published_config: a trainer's configuration as ``/info/`` publishes it, by task name.
        on_save_label: the app's callback after a label is saved (image id, label id), as MONAI Label calls it.
    """
    removed = restrict_routes(app)
    logger.info(f"removed {len(removed)} MONAI Label routes HOPE does not serve: {', '.join(removed)}")
    trained = {**collab.tasks, **collab.trained_fewshot}
    registries = {name: task.registry for name, task in {**collab.tasks, **collab.fewshot}.items()}
    _in_front(app, admin_router({name: task.definition for name, task in trained.items()}, registries,
                                published_config, collab.audit))
    _in_front(app, ohif_router())
    _in_front(app, infer_router(lambda: collab.infers, collab.check_servable, collab.datastore,
                                collab.settings.http.max_upload_bytes, serving_pool(collab.settings.http)))
    _in_front(app, activelearning_router(lambda: collab.strategies))
    _in_front(app, datastore_router(collab.label_states))
    _in_front(app, info_router())
    recorder = LabelRecorder(collab.datastore, collab.reviews, collab.audit, collab.settings.review.enabled,
                             started_from=collab.started_from)
    _in_front(app, labels_router(collab.datastore, on_save_label, collab.settings.http.max_upload_bytes,
                                 recorder.saved))
    app.include_router(review_router(collab.reviews, collab.audit, collab.settings.review.enabled,
                                     has_suggestion=collab.has_suggestion, on_approved=collab.label_approved))
    app.include_router(audit_router(collab.audit))
    console = collab.console()
    app.include_router(console_router(console))
    app.include_router(measurements_router(console.measurements))
    if collab.gateway is not None:
        _in_front(app, proxy_router(collab.gateway))
    if collab.sync is not None:
        app.include_router(sync_router(collab.sync, EventKey.load(collab.paths.event_key), collab.audit))
    if collab.case_repository is not None:
        app.include_router(cases_router(collab.case_repository(), collab.audit))
    auth = collab.settings.auth
    verifier = TokenVerifier(auth) if auth.enabled else None
    _in_front(app, auth_router(auth, verifier, lambda: route_table(app)))
    install_error_handlers(app)
    install_guards(app, collab.settings.http, access_middleware(app, auth, verifier))
    app.middleware_stack = None  # built at the first request; rebuilt then with the handlers above
