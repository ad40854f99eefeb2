"""HTTP routes through which Orthanc's plugin tells HOPE about the store, and admins see HOPE's state.

Events must be signed by the plugin (:mod:`hope.sync.signing`): an unsigned, badly signed or stale one is answered
401 with the reason before its fields are checked (a body that is not JSON at all is a 422 first), and changes
nothing.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Request
from pydantic import BaseModel, Field

from hope.api.identity import current_identity
from hope.audit import AuditAction, AuditLog
from hope.auth.identity import Identity
from hope.sync.service import SyncService
from hope.sync.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, EventKey


class StoreEvent(BaseModel):
    """One event from the store: a series became stable, or a SEG was stored."""

    id: str = Field(min_length=1, description="idempotency key; a repeated id has no further effect")
    type: Literal["series_stable", "seg_stored"]
    series_uid: str = Field(min_length=1)
    study_uid: str = ""
    modality: str = ""
    valid: bool = True
    reasons: list[str] = Field(default_factory=list)
    referenced_series_uid: str | None = None
    segment_labels: list[str] | None = Field(
        default=None, description="a SEG's segment labels; a task counts it towards retraining only if it trains on it"
    )


class RetrainSwitch(BaseModel):
    """Admin switch for automatic retraining."""

    enabled: bool


def build_router(service: SyncService, key: EventKey, audit: AuditLog) -> APIRouter:
    """The ``/hope`` routes bound to ``service``; events must be signed with ``key``; switching automatic
    retraining is recorded in ``audit``."""
    router = APIRouter(prefix="/hope", tags=["HOPE sync"])

    async def signed_by_the_plugin(
        request: Request,
        timestamp: Annotated[str | None, Header(alias=TIMESTAMP_HEADER, description="Unix time of signing")] = None,
        signature: Annotated[str | None, Header(alias=SIGNATURE_HEADER, description="HMAC-SHA256, hex")] = None,
    ) -> None:
        key.verify(await request.body(), timestamp, signature)

    @router.post(
        "/events",
        summary="Receive a store event (from HOPE's Orthanc plugin, signed; 401 otherwise)",
        dependencies=[Depends(signed_by_the_plugin)],
    )
    def post_event(event: StoreEvent) -> dict[str, Any]:
        return service.handle(event.model_dump())

    @router.get("/state", summary="Per-series state: suggestion model version, final label, validation flags")
    def get_state() -> dict[str, Any]:
        return service.state()

    @router.put("/retrain", summary="Switch automatic retraining on or off (kept across restarts)")
    def put_retrain(switch: RetrainSwitch, identity: Annotated[Identity, Depends(current_identity)]) -> dict[str, Any]:
        service.retrain.set_enabled(switch.enabled)
        audit.record(identity.user, identity.verified, AuditAction.AUTO_RETRAIN_SWITCHED,
                     detail={"enabled": switch.enabled})
        return service.retrain.state()

    return router
