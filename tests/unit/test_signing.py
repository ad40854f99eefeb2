"""Signed store events and secret files: what HOPE accepts from its Orthanc plugin, and how the key is kept."""

from __future__ import annotations

import stat
import threading
from pathlib import Path

import pytest

from hope.errors import UnauthenticatedError
from hope.secretfile import SecretFileError, read_or_create
from hope.sync.signing import KEY_BYTES, MAX_SKEW_SECONDS, SIGNATURE_HEADER, TIMESTAMP_HEADER, EventKey

KEY = EventKey(bytes(range(32)))
BODY = b'{"id": "series_stable:1.2.3", "type": "series_stable", "series_uid": "1.2.3", "valid": false}'
NOW = 1_800_000_000.0


def _headers(body: bytes = BODY, key: EventKey = KEY, at: float = NOW) -> tuple[str, str]:
    signed = key.sign(body, now=at)
    return signed[TIMESTAMP_HEADER], signed[SIGNATURE_HEADER]


def test_a_signed_body_verifies_within_the_allowed_skew() -> None:
    for signed_at in (NOW, NOW - MAX_SKEW_SECONDS, NOW + MAX_SKEW_SECONDS):
        KEY.verify(BODY, *_headers(at=signed_at), now=NOW)


def test_missing_headers_are_unsigned() -> None:
    timestamp, signature = _headers()
    for headers in ((None, None), (timestamp, None), (None, signature), ("", "")):
        with pytest.raises(UnauthenticatedError, match="unsigned event refused.*HOPE_EVENT_SECRET_FILE"):
            KEY.verify(BODY, *headers, now=NOW)


def test_another_key_a_changed_body_or_a_changed_timestamp_do_not_verify() -> None:
    timestamp, signature = _headers()
    cases = [
        (BODY, *_headers(key=EventKey(b"\x01" * 32))),
        (BODY.replace(b"false", b"true "), timestamp, signature),
        (BODY + b" ", timestamp, signature),
        (BODY, str(int(NOW) - 1), signature),
        (BODY, timestamp, signature[:-1]),
        (BODY, timestamp, "é" * 64),
    ]
    for body, stamp, sig in cases:
        with pytest.raises(UnauthenticatedError, match="badly signed event refused"):
            KEY.verify(body, stamp, sig, now=NOW)


def test_stale_and_future_timestamps_are_refused() -> None:
    for signed_at in (NOW - MAX_SKEW_SECONDS - 1, NOW + MAX_SKEW_SECONDS + 1, 0):
        with pytest.raises(UnauthenticatedError, match="stale event refused.*NTP"):
            KEY.verify(BODY, *_headers(at=signed_at), now=NOW)


@pytest.mark.parametrize("timestamp", ["1.5e9", "-1", "now", "١٢٣"])
def test_a_malformed_timestamp_is_refused(timestamp: str) -> None:
    with pytest.raises(UnauthenticatedError, match="whole seconds"):
        KEY.verify(BODY, timestamp, KEY.signature(timestamp, BODY), now=NOW)


def test_the_key_is_never_shown() -> None:
    assert KEY.secret.hex() not in repr(KEY)


def test_a_key_file_is_generated_once_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "secrets" / "events.key"
    key = EventKey.load(path)
    assert len(key.secret) == KEY_BYTES
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert EventKey.load(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["events.key"]  # no temporary file left


def test_concurrent_first_starts_agree_on_one_key(tmp_path: Path) -> None:
    path = tmp_path / "events.key"
    keys: list[EventKey] = []
    threads = [threading.Thread(target=lambda: keys.append(EventKey.load(path))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(keys) == 8 and len(set(keys)) == 1


def test_a_key_file_others_may_read_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "events.key"
    EventKey.load(path)
    path.chmod(0o644)
    with pytest.raises(SecretFileError, match="mode 0644.*chmod 600"):
        EventKey.load(path)


@pytest.mark.parametrize("content", [b"", b"not hex", b"ab" * 8])
def test_a_key_file_without_a_key_is_refused(tmp_path: Path, content: bytes) -> None:
    path = tmp_path / "events.key"
    read_or_create(path, lambda: content)
    with pytest.raises(SecretFileError, match="does not hold an event key.*delete it"):
        EventKey.load(path)


def test_an_unreadable_secret_file_says_so(tmp_path: Path) -> None:
    folder = tmp_path / "events.key"
    folder.mkdir(mode=0o700)
    with pytest.raises(SecretFileError, match="cannot read the secret file"):
        EventKey.load(folder)
