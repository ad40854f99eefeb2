"""``GET /info/``: MONAI Label's app information, off the event loop.

MONAI Label 0.8.5 answers it from an ``async def`` route, so while an inference or a listing held the event loop
no client could even learn what the server serves. HOPE's route is a plain ``def`` (run in a worker thread) that
answers exactly what MONAI Label's does, computed at each request by the same function. Who may ask is the
access guard's to decide (:mod:`hope.server.policy`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from monailabel.endpoints.info import app_info


def build_router() -> APIRouter:
    """``GET /info/``, answered as MONAI Label answers it."""
    router = APIRouter(tags=["App"])

    @router.get("/info/", summary="The app: its name, version, labels, models, trainers and strategies")
    def info() -> Any:
        return app_info()

    return router
