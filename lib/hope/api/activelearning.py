"""``POST /activelearning/{strategy}``: MONAI Label's next-sample route, for known strategies, off the event loop.

MONAI Label 0.8.5 answers an unknown strategy with a 500 and runs the selection inside an ``async def``. HOPE's
route answers 404 with the strategies it has, then runs MONAI Label's own selection in a worker thread. With
sign-in on, the sample is leased to the signed-in user (the client's ``client_id`` is ignored).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from monailabel.endpoints.activelearning import sample

from hope.api.identity import current_identity
from hope.auth.identity import Identity
from hope.errors import NotFoundError


def build_router(strategies: Callable[[], Collection[str]]) -> APIRouter:
    """The route, for the strategies ``strategies()`` names."""
    router = APIRouter(tags=["ActiveLearning"])

    @router.post("/activelearning/{strategy}", summary="The next series to annotate, leased to the caller")
    def next_sample(strategy: str, identity: Annotated[Identity, Depends(current_identity)],
                    params: dict[str, Any] | None = None) -> Any:
        known = strategies()
        if strategy not in known:
            raise NotFoundError(f"no active-learning strategy {strategy!r}; strategies: {', '.join(sorted(known))}")
        if identity.verified:  # leases and rejected labels go to the signed-in user, not to a claimed client id
            params = {**(params or {}), "client_id": identity.user}
        return sample(strategy, params, None)

    return router
