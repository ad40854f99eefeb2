"""The web console for admins and reviewers: its page (``/console/``) and the JSON it reads (``/hope/console/...``).

The page is static HTML, CSS and JavaScript modules kept in ``lib/hope/console/`` (no build step). It reads the
endpoints below and HOPE's existing API (its Measurements panel: ``GET /hope/measurements/{series_uid}``,
:mod:`hope.api.measurements`); every change it makes goes through the same routes as curl
(``POST /train/{model}``, ``PUT /hope/models/{task}/pin``, ``PUT /hope/retrain``, ``POST /cases/import``, ...).

* ``GET /hope/console/overview``: series per modality and state, models per task, retraining;
* ``GET /hope/console/series?state=&modality=&limit=&offset=``: one page of series, filtered on the server;
* ``GET /hope/console/team``: labels, rejections, time to final and suggestion Dice per annotator; review queue;
* ``GET /hope/console/activelearning``: strategies, leases, score distributions;
* ``GET /hope/console/store``: the Orthanc plugin's outbox and whether HOPE and Orthanc reach each other;
* ``POST /hope/console/outbox/{event_id}/retry`` (admin): deliver a rejected outbox event again (audited);
* ``GET /hope/console/cases?limit=&offset=``: rare tumour types: support cases per type, case records, results.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from fastapi.responses import FileResponse

from hope.api.identity import current_identity
from hope.audit import AuditAction
from hope.auth.identity import Identity
from hope.console_data import MAX_PAGE, STATES
from hope.console_sources import ConsoleSources
from hope.errors import InvalidInputError, NotFoundError

#: The console's static files.
PAGE_DIR = Path(__file__).resolve().parents[1] / "console"
_MEDIA_TYPES = {".html": "text/html", ".css": "text/css", ".js": "text/javascript"}

SignedIn = Annotated[Identity, Depends(current_identity)]
EventId = Annotated[str, PathParam(pattern=r"^[A-Za-z0-9_.:-]{1,200}$", description="the outbox event's id")]


def _page_file(name: str) -> FileResponse:
    files = {p.name: p for p in PAGE_DIR.iterdir() if p.suffix in _MEDIA_TYPES}
    if name not in files:
        raise NotFoundError(f"the console has no file {name!r}")
    path = files[name]
    return FileResponse(path, media_type=_MEDIA_TYPES[path.suffix], headers={"Cache-Control": "no-cache"})


def build_router(sources: ConsoleSources) -> APIRouter:
    """The console's page and JSON routes, reading ``sources``."""
    router = APIRouter(tags=["HOPE console"])

    @router.get("/console/", include_in_schema=False)
    def console_page() -> FileResponse:
        return _page_file("index.html")

    @router.get("/console/{name}", include_in_schema=False)
    def console_file(name: str) -> FileResponse:
        return _page_file(name)

    @router.get("/hope/console/overview", summary="Series per modality and state, models per task, retraining")
    def overview() -> dict[str, Any]:
        return sources.overview()

    @router.get("/hope/console/series", summary="One page of series with their state (filtered on the server)")
    def series(
        state: Annotated[str | None, Query(description=f"one of {', '.join(STATES)}")] = None,
        modality: Annotated[str | None, Query(pattern=r"^[A-Z]{1,4}$")] = None,
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE)] = 50,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> dict[str, Any]:
        if state is not None and state not in STATES:
            raise InvalidInputError(f"unknown state {state!r}; states: {', '.join(STATES)}")
        return sources.series(state, modality, limit, offset)

    @router.get("/hope/console/team", summary="Per annotator: labels, rejections, time to final, suggestion Dice")
    def team() -> dict[str, Any]:
        return sources.team()

    @router.get("/hope/console/activelearning", summary="Strategies, leases held, score distributions")
    def activelearning() -> dict[str, Any]:
        return sources.activelearning()

    @router.get("/hope/console/store", summary="The Orthanc plugin's outbox; whether HOPE and Orthanc see each other")
    def store() -> dict[str, Any]:
        return sources.store_link()

    @router.post("/hope/console/outbox/{event_id}/retry", summary="Deliver a rejected outbox event again")
    def retry(event_id: EventId, identity: SignedIn) -> dict[str, Any]:
        answer = sources.retry_event(event_id)
        sources.audit.record(identity.user, identity.verified, AuditAction.OUTBOX_EVENT_RETRIED,
                             detail={"event": event_id})
        return answer

    @router.get("/hope/console/cases", summary="Rare tumour types: support cases per type, case records, results")
    def cases(limit: Annotated[int, Query(ge=1, le=100)] = 20,
              offset: Annotated[int, Query(ge=0)] = 0) -> dict[str, Any]:
        return sources.rare_types(limit, offset)

    return router
