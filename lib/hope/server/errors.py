"""The HTTP edge of HOPE's domain errors: each kind of :class:`~hope.errors.HopeError` becomes one status."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from hope.errors import (
    BusyError,
    ConflictError,
    ForbiddenError,
    HopeError,
    InvalidInputError,
    NotFoundError,
    OverloadedError,
    StoreError,
    TooLargeError,
    UnauthenticatedError,
)

logger = logging.getLogger(__name__)

STATUS: dict[type[HopeError], int] = {
    NotFoundError: 404,
    InvalidInputError: 422,
    ConflictError: 409,
    BusyError: 429,
    StoreError: 502,
    UnauthenticatedError: 401,
    TooLargeError: 413,
    ForbiddenError: 403,
    OverloadedError: 503,
}


def status_of(error: HopeError) -> int:
    """The HTTP status that answers ``error`` (500 for a kind without one, which is a bug)."""
    return next((code for kind, code in STATUS.items() if isinstance(error, kind)), 500)


async def _answer(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, HopeError)
    status = status_of(error)
    logger.info(f"{request.method} {request.url.path}: answering {status}: {error.reason}")
    headers = {"Retry-After": str(error.retry_after_s)} if isinstance(error, OverloadedError) else None
    return JSONResponse({"detail": error.reason}, status_code=status, headers=headers)


def install_error_handlers(app: FastAPI) -> None:
    """Answer every :class:`HopeError` raised by a route of ``app`` as ``{"detail": reason}`` with its status."""
    app.add_exception_handler(HopeError, _answer)
