"""``POST /infer/{model}``: MONAI Label's inference route, with its input checked first and off the event loop.

MONAI Label 0.8.5's route answers 500 to a request without an image ("Neither Image nor File ..."), to invalid
JSON in ``params``, and to an unknown model, and it runs the whole inference inside an ``async def``, so one long
request stalled every other request of the server. HOPE's route refuses bad input with a 4xx and the reason, then
runs MONAI Label's own request handling in a worker thread (a plain ``def`` route). Sessions are not served.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Collection
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, File, Form, UploadFile
from monailabel.endpoints.infer import ResultType, run_inference

from hope.api.params import parse_params
from hope.errors import InvalidInputError, NotFoundError


def build_router(served: Callable[[], Collection[str]]) -> APIRouter:
    """The route, for the models ``served()`` names."""
    router = APIRouter(tags=["Infer"])

    @router.post("/infer/{model}", summary="Run inference of a served model on a stored series (image=<uid>)")
    def infer(
        background_tasks: BackgroundTasks,
        model: str,
        image: str = "",
        params: Annotated[str, Form()] = "{}",
        file: Annotated[UploadFile | None, File()] = None,
        label: Annotated[UploadFile | None, File()] = None,
        output: ResultType | None = None,
    ) -> Any:
        known = served()
        if model not in known:
            raise NotFoundError(f"no model named {model!r}; this server serves: {', '.join(sorted(known))}")
        if not image and not file:
            raise InvalidInputError("no image: give image=<SeriesInstanceUID> of a stored series (or upload a file)")
        return run_inference(background_tasks, model, image, "", json.dumps(parse_params(params)), file, label, output)

    return router
