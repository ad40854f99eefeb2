"""Domain errors: plain exceptions raised anywhere in HOPE, with a reason that says what is wrong and what to do.

They know nothing of HTTP. The server's edge (:mod:`hope.server.errors`) answers each kind with its status:
:class:`NotFoundError` 404, :class:`InvalidInputError` 422, :class:`ConflictError` 409, :class:`BusyError` 429,
:class:`StoreError` 502, :class:`UnauthenticatedError` 401, :class:`ForbiddenError` 403, :class:`TooLargeError` 413
and :class:`OverloadedError` 503 (with ``Retry-After``), always as ``{"detail": reason}``.
"""

from __future__ import annotations


class HopeError(Exception):
    """Base class of the errors a client is told about; ``reason`` is the message it gets."""

    @property
    def reason(self) -> str:
        """What is wrong, and what to do about it."""
        return str(self.args[0]) if self.args else type(self).__name__


class NotFoundError(HopeError, LookupError):
    """The requested series, label, task or model does not exist."""


class InvalidInputError(HopeError, ValueError):
    """The request is well-formed but its content cannot be used (wrong grid, wrong values, wrong modality)."""


class ConflictError(HopeError):
    """The request is valid, but the store does not hold what it needs yet (e.g. no labelled case of a type)."""


class BusyError(HopeError):
    """The server is doing this already (e.g. a training run is in progress); try again later."""


class StoreError(HopeError):
    """The DICOM store failed or refused a request; nothing was written."""


class UnauthenticatedError(HopeError, PermissionError):
    """The request does not prove who sent it (e.g. a store event without a valid signature); nothing was done."""


class TooLargeError(HopeError):
    """An upload, or the volume it declares once decompressed, is larger than the server accepts; nothing was read."""


class ForbiddenError(HopeError, PermissionError):
    """The signed-in user's role does not allow this; nothing was done."""


class OverloadedError(HopeError):
    """Every worker is busy and the queue is full; try again after ``retry_after_s`` seconds."""

    def __init__(self, reason: str, retry_after_s: int) -> None:
        super().__init__(reason)
        self.retry_after_s = retry_after_s
