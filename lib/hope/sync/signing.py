"""Signed store events: HOPE's Orthanc plugin signs every ``POST /hope/events``, HOPE refuses what it cannot verify.

Without it anyone who can reach HOPE could post events: a forged "invalid" event would take a series out of the
annotation pool for good, and a few forged "SEG stored" events would start a training run.

The signature is HMAC-SHA256 over ``<timestamp>.<body>``: the Unix time the request was signed (whole seconds, in
:data:`TIMESTAMP_HEADER`) and the exact bytes of the JSON body. It is sent hex-encoded in :data:`SIGNATURE_HEADER`.
The key is a random secret, generated at first start into a file only its owner may read (HOPE reads its path from
``HOPE_EVENT_SECRET_FILE``, the plugin from ``Hope.SecretFile`` of Orthanc's configuration). A timestamp more than
:data:`MAX_SKEW_SECONDS` away from HOPE's clock is refused; a replay within that window changes nothing, because
HOPE handles each event id once.

Standard library only: Orthanc's embedded Python imports this module.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

from hope.errors import UnauthenticatedError
from hope.secretfile import SecretFileError, read_or_create

TIMESTAMP_HEADER = "X-HOPE-Timestamp"
SIGNATURE_HEADER = "X-HOPE-Signature"
#: Largest difference, in seconds, between the signer's clock and HOPE's.
MAX_SKEW_SECONDS = 300
#: Length of a generated key, in bytes (stored hex-encoded).
KEY_BYTES = 32


@dataclass(frozen=True)
class EventKey:
    """The secret shared by HOPE's Orthanc plugin (which signs) and HOPE (which verifies)."""

    secret: bytes = field(repr=False)

    @classmethod
    def load(cls, path: Path) -> EventKey:
        """The key in ``path`` (hex text); generated there at first use, readable by its owner only.

        Raises:
            SecretFileError: the file may be read by other users, cannot be read, or holds no usable key.
        """
        text = read_or_create(path, lambda: secrets.token_bytes(KEY_BYTES).hex().encode()).decode(errors="replace")
        try:
            secret = bytes.fromhex(text.strip())
        except ValueError:
            secret = b""
        if len(secret) < KEY_BYTES:
            raise SecretFileError(
                f"{path} does not hold an event key ({KEY_BYTES} or more bytes, hex-encoded): delete it to have a "
                "new one generated at the next start of Orthanc and HOPE (both must read the same file)"
            )
        return cls(secret)

    def signature(self, timestamp: str, body: bytes) -> str:
        """HMAC-SHA256 of ``<timestamp>.<body>``, hex-encoded."""
        return hmac.new(self.secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()

    def sign(self, body: bytes, now: float | None = None) -> dict[str, str]:
        """The headers that sign ``body`` (the exact bytes sent), at ``now`` (default: the current time)."""
        timestamp = str(int(time.time() if now is None else now))
        return {TIMESTAMP_HEADER: timestamp, SIGNATURE_HEADER: self.signature(timestamp, body)}

    def verify(self, body: bytes, timestamp: str | None, signature: str | None, now: float | None = None) -> None:
        """Check the headers :meth:`sign` gave for ``body``; returns nothing when they match.

        Raises:
            UnauthenticatedError: a header is missing, the timestamp is malformed or more than
                :data:`MAX_SKEW_SECONDS` from ``now``, or the signature does not match.
        """
        if not timestamp or not signature:
            raise UnauthenticatedError(
                f"unsigned event refused: an event must carry {TIMESTAMP_HEADER} and {SIGNATURE_HEADER} (HMAC-SHA256 "
                "of '<timestamp>.<body>' with the key of HOPE_EVENT_SECRET_FILE); only HOPE's Orthanc plugin, which "
                "reads that key from Hope.SecretFile, sends events"
            )
        if not timestamp.isascii() or not timestamp.isdigit():
            raise UnauthenticatedError(
                f"event refused: {TIMESTAMP_HEADER} must be the Unix time in whole seconds, got {timestamp[:32]!r}"
            )
        skew = abs((time.time() if now is None else now) - int(timestamp))
        if skew > MAX_SKEW_SECONDS:
            raise UnauthenticatedError(
                f"stale event refused: signed {skew:.0f} s away from HOPE's clock (at most {MAX_SKEW_SECONDS} s); "
                "if the plugin sent it just now, synchronise the clocks of Orthanc's and HOPE's machines (NTP)"
            )
        if not hmac.compare_digest(self.signature(timestamp, body).encode(), signature.strip().lower().encode()):
            raise UnauthenticatedError(
                "badly signed event refused: the signature does not match the body; HOPE and its Orthanc plugin "
                "must read the same key file (HOPE_EVENT_SECRET_FILE for HOPE, Hope.SecretFile for the plugin)"
            )
