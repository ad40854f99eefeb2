"""HTTP routes through which Orthanc's plugin tells HOPE about the store, and admins see HOPE's state."""

from __future__ import annotations

from typing import Any, Literal

from fastapi import APIRouter
from pydantic import BaseModel, Field

from hope.sync.service import SyncService


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


def build_router(service: SyncService) -> APIRouter:
    """The ``/hope`` routes bound to ``service``."""
    router = APIRouter(prefix="/hope", tags=["HOPE sync"])

    @router.post("/events", summary="Receive a store event (from HOPE's Orthanc plugin)")
    def post_event(event: StoreEvent) -> dict[str, Any]:
        return service.handle(event.model_dump())

    @router.get("/state", summary="Per-series state: suggestion model version, final label, validation flags")
    def get_state() -> dict[str, Any]:
        return service.state()

    @router.put("/retrain", summary="Switch automatic retraining on or off (kept across restarts)")
    def put_retrain(switch: RetrainSwitch) -> dict[str, Any]:
        service.retrain.set_enabled(switch.enabled)
        return service.retrain.state()

    return router
