"""``PUT /datastore/label``: MONAI Label's route, with the upload bounded, handed over off the event loop, and removed.

MONAI Label 0.8.5's route copies the upload into a ``NamedTemporaryFile`` that it removes only after a successful
answer, so every failed save left its file in the temp folder for good; it reads an upload of any size; it answers
500 to invalid JSON in ``params``; and it saves inside an ``async def``, which stalls every other request meanwhile.
HOPE's route takes the same request (query ``image`` and ``tag``, form field ``params``, file ``label``: MONAI
Label's OHIF panel sends a ``label.bin``, HOPE's OHIF configuration a raw ``label.nrrd``, Slicer a ``.nii.gz`` or
``.seg.nrrd``) and:

* refuses an upload larger than ``http.max_upload_mb`` with 413: from its Content-Length before reading a byte, and
  while reading it when no length is declared or the declared one is wrong;
* writes the label into a temporary folder of its own, removed when the save ends, however it ends;
* saves in a worker thread: the datastore's ``save_label`` checks the file itself (truncation, bombs, grid, values:
  see :mod:`hope.datastore.label_files`), then the app's ``on_save_label`` runs, as in MONAI Label.
"""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from fastapi import APIRouter, Depends, Request
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData, UploadFile
from starlette.types import Message

from hope.api.identity import current_identity
from hope.api.params import parse_params
from hope.auth.identity import Identity, recorded_user
from hope.datastore.label_files import CHUNK, label_suffix
from hope.errors import InvalidInputError, TooLargeError

logger = logging.getLogger(__name__)

#: Room for the multipart framing and the ``params`` field on top of the label file itself.
FORM_OVERHEAD_BYTES = 1 << 20
_IDENTITY = Depends(current_identity)
_REQUEST_BODY = {
    "required": True,
    "content": {
        "multipart/form-data": {
            "schema": {
                "type": "object",
                "required": ["label"],
                "properties": {
                    "params": {"type": "string", "default": "{}",
                               "description": 'A JSON object, e.g. {"user": "Doe^Jane", "description": "..."}'},
                    "label": {"type": "string", "format": "binary",
                              "description": "The label on the image's grid: .nii.gz, .nii, .nrrd, .seg.nrrd or "
                                             "OHIF's .bin"},
                },
            }
        }
    },
}


def build_router(
    datastore: Datastore,
    on_save_label: Callable[[str, str], Mapping[str, Any] | None],
    max_upload_bytes: int,
    on_final_label: Callable[[str, str, bool], Mapping[str, str]] | None = None,
) -> APIRouter:
    """``PUT /datastore/label``, saving into ``datastore``.

    Args:
        datastore: where labels are saved (HOPE's Orthanc datastore writes a final label as a verified DICOM SEG).
        on_save_label: the app's callback after a save, as in MONAI Label (``image``, ``label id``); what it
            returns is part of the answer.
        max_upload_bytes: the largest label file accepted (``http.max_upload_mb``).
        on_final_label: records a saved final label (image id, who saved it, whether that is a verified
            identity): submitted for review or final, audited (:class:`hope.review.recorder.LabelRecorder`); what
            it returns is part of the answer.
    """
    router = APIRouter(tags=["Datastore"])

    @router.put("/datastore/label", summary="Save a label (tag final: a DICOM SEG in the store)",
                openapi_extra={"requestBody": _REQUEST_BODY})
    async def save_label(
        request: Request, image: str, tag: str = DefaultLabelTag.FINAL.value, identity: Identity = _IDENTITY
    ) -> dict[str, Any]:
        form = await _bounded_form(request, max_upload_bytes + FORM_OVERHEAD_BYTES)
        try:
            upload = form.get("label")
            if not isinstance(upload, UploadFile):
                raise InvalidInputError("no label file: send it as the multipart file field 'label' (with the query "
                                        "parameters image and tag, and the form field params)")
            params = parse_params(form.get("params"))
            params["user"] = recorded_user(identity, params.get("user"))
            suffix = label_suffix(upload.filename or "label.nii.gz")
            logger.info(f"saving the label of {image} for tag {tag} by {params['user']}")

            def save() -> str:
                with tempfile.TemporaryDirectory(prefix="hope-label-") as tmp:
                    path = Path(tmp) / f"label{suffix}"
                    write_upload(upload.file, path, max_upload_bytes)
                    return datastore.save_label(image, str(path), tag or DefaultLabelTag.FINAL.value, params)

            label_id = await run_in_threadpool(save)
            answer = dict(await run_in_threadpool(on_save_label, image, label_id) or {})
            if on_final_label is not None and (tag or DefaultLabelTag.FINAL.value) == DefaultLabelTag.FINAL.value:
                answer.update(await run_in_threadpool(on_final_label, image, params["user"], identity.verified))
        finally:
            await form.close()
        answer.update({"image": image, "label": label_id})
        return answer

    return router


async def _bounded_form(request: Request, limit: int) -> FormData:
    """The request's form, refused with :class:`TooLargeError` as soon as its body is known to exceed ``limit``."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLargeError(_too_large(int(declared), limit))
    received = 0

    async def receive() -> Message:
        nonlocal received
        message = await request.receive()
        received += len(message.get("body", b""))
        if received > limit:
            raise TooLargeError(_too_large(received, limit))
        return message

    return await Request(request.scope, receive).form(max_files=1)


def write_upload(source: BinaryIO, dest: Path, limit: int) -> None:
    """Copy an uploaded label into ``dest``, refused with :class:`TooLargeError` once it exceeds ``limit`` bytes."""
    written = 0
    with dest.open("wb") as out:
        while chunk := source.read(CHUNK):
            written += len(chunk)
            if written > limit:
                raise TooLargeError(_too_large(written, limit))
            out.write(chunk)


def _too_large(size: int, limit: int) -> str:
    return (f"the upload ({size} bytes or more) is larger than the {limit / (1 << 20):.1f} MB this server accepts "
            "(http.max_upload_mb in server.yaml); send the label alone, on the image's grid")
