"""HTTP-mapped errors: raised anywhere in HOPE, answered by FastAPI with their status and reason."""

from __future__ import annotations

import logging

from fastapi import HTTPException

logger = logging.getLogger(__name__)


class HopeHTTPError(HTTPException):
    """Base class: an error that reaches the client as ``{"detail": reason}`` with a 4xx/5xx status."""

    status: int = 500

    def __init__(self, reason: str) -> None:
        super().__init__(status_code=self.status, detail=reason)
        self.reason = reason
        logger.info(f"answering {self.status}: {reason}")

    def __str__(self) -> str:
        return f"{self.status}: {self.reason}"


class NotFoundError(HopeHTTPError):
    """The requested series, label or model does not exist."""

    status = 404


class InvalidInputError(HopeHTTPError):
    """The request is well-formed but its content cannot be used (wrong grid, wrong values, wrong modality)."""

    status = 422


class StoreError(HopeHTTPError):
    """The DICOM store failed or refused a request; nothing was written."""

    status = 502


class ConflictError(HopeHTTPError):
    """The request is valid, but the store does not hold what it needs yet (e.g. no labelled case of a type)."""

    status = 409
