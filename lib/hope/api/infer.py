"""``POST /infer/{model}``: MONAI Label's inference route, with its input checked first and off the event loop.

MONAI Label 0.8.5's route answers 500 to a request without an image ("Neither Image nor File ..."), to invalid
JSON in ``params``, and to an unknown model, and it runs the whole inference inside an ``async def``, so one long
request stalled every other request of the server. HOPE's route refuses bad input with a 4xx and the reason, then
runs MONAI Label's own request handling in a worker thread (a plain ``def`` route), through the server's
:class:`~hope.server.workers.InferencePool`: ``http.infer_workers`` inferences run at once, ``http.infer_queue`` more
wait, and a request beyond those is answered 503 with ``Retry-After`` (``http.retry_after_seconds``) at once.
Sessions are not served.

An uploaded ``label`` (the current label with scribbles painted in: a NIfTI or NRRD from Slicer, a raw ``.bin`` from
OHIF; a lesion for ``tumor_grade``) went straight to SimpleITK or to MONAI Label's ``binary_to_image``: a ``.bin`` of
the wrong size or a file that is no label answered 500, a header declaring a huge volume was allocated before any
check, and the copies stayed in the temp folder whenever inference failed. HOPE's route checks it as
``PUT /datastore/label`` checks a label (:mod:`hope.datastore.label_files`: format, complete stream, size, and the
grid of the stored series ``image``; its values are the task's to judge), hands the task the checked volume as a
NIfTI file, and removes every copy when the request ends, however it ends. A label reaches a task only as an upload:
``params`` may not name one, nor the image (MONAI Label let ``params`` override both with paths on the server).
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated, Any

import SimpleITK as sitk
from fastapi import APIRouter, BackgroundTasks, File, Form, UploadFile
from monailabel.endpoints.infer import ResultType, run_inference
from monailabel.interfaces.datastore import Datastore

from hope.api.labels import write_upload
from hope.api.params import parse_params
from hope.config.server import HttpSettings
from hope.datastore.label_files import label_suffix, read_label_on_grid
from hope.errors import InvalidInputError, NotFoundError
from hope.server.workers import InferencePool


def build_router(
    served: Callable[[], Collection[str]],
    check_servable: Callable[[str, object], None],
    datastore: Datastore,
    max_upload_bytes: int,
    pool: InferencePool | None = None,
) -> APIRouter:
    """The route, for the models ``served()`` names.

    Args:
        served: the names of the served models, asked at each request.
        check_servable: refuses a model on a series it must not run on (a flagged series, another modality); run
            before an uploaded label is checked on the series (the app's ``infer`` runs it for the other requests).
        datastore: gives the stored series an uploaded label must lie on.
        max_upload_bytes: the largest label file, and decompressed label volume, accepted (``http.max_upload_mb``).
        pool: runs the inferences (the server's :func:`~hope.server.workers.serving_pool`); by default, a pool of
            :class:`~hope.config.server.HttpSettings`' default sizes.
    """
    defaults = HttpSettings()
    inferences = pool or InferencePool(defaults.infer_workers, defaults.infer_queue, defaults.retry_after_seconds)
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
        request = parse_params(params)
        reserved = sorted(RESERVED_PARAMS & set(request))
        if reserved:
            raise InvalidInputError(f"params may not set {', '.join(reserved)}: name the series with the query "
                                    "parameter image=<SeriesInstanceUID> and upload a label as the file field 'label'")
        if label is None:
            return inferences.run(lambda: run_inference(background_tasks, model, image, "", json.dumps(request), file,
                                                        None, output))
        if file is not None or not image:
            raise InvalidInputError("an uploaded label is checked on the grid of a stored series: give "
                                    "image=<SeriesInstanceUID> of that series, and no image file")
        check_servable(model, image)
        with tempfile.TemporaryDirectory(prefix="hope-infer-") as tmp:
            request["label"] = str(_checked_label(datastore, image, label, Path(tmp), max_upload_bytes))
            return inferences.run(lambda: run_inference(background_tasks, model, image, "", json.dumps(request), None,
                                                        None, output))

    return router


#: Request keys MONAI Label reads as paths or identities; a client sets them only through the route's own fields.
RESERVED_PARAMS = frozenset({"image", "label", "session", "model", "hope_series_uid"})


def _checked_label(datastore: Datastore, image_id: str, upload: UploadFile, work: Path, limit: int) -> Path:
    """The uploaded label, checked on the grid of the stored series ``image_id``, as a NIfTI file in ``work``."""
    uploaded = work / f"upload{label_suffix(upload.filename or 'label.nii.gz')}"
    write_upload(upload.file, uploaded, limit)
    uri = datastore.get_image_uri(image_id)
    if not uri or not Path(uri).is_file():
        raise NotFoundError(f"no stored series {image_id!r}; give image=<SeriesInstanceUID> of a stored series")
    label = read_label_on_grid(uploaded, sitk.ReadImage(uri), image_id, limit, work)
    checked = work / "checked.nii"
    sitk.WriteImage(label, str(checked))
    return checked
