"""Answering an infer request from a suggestion computed ahead of time, when one of the served model is ready."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from monailabel.interfaces.datastore import DefaultLabelTag

from hope.sync.suggestions import SuggestionCache


def precomputed_result(cache: SuggestionCache, task: str, labels: Mapping[str, int], request: Mapping[str, Any]
                       ) -> dict[str, Any] | None:
    """MONAI Label's infer answer for ``request`` from ``cache``, or ``None`` when it must be computed.

    Only a plain request qualifies: a stored series by UID, with no uploaded label and no session.
    """
    image = request.get("image")
    if not isinstance(image, str) or request.get("label") or request.get("session"):
        return None
    ready = cache.get(task, image)
    copy = cache.copy_of(task, image) if ready else None
    if ready is None or copy is None:
        return None
    params = {"label_names": dict(labels), "precomputed": True, "model_version": ready.model_version}
    return {"label": str(copy), "tag": DefaultLabelTag.ORIGINAL, "file": str(copy), "params": params}
