"""HTTP to HOPE with the standard library: post signed store events, read per-series state."""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from typing import Any

from hope.sync.signing import EventKey

#: HOPE refuses an event it cannot parse with these; sending it again cannot succeed. A 401 (the signature was
#: refused: another key, or clocks apart) is not among them: the event stays pending until the setup is fixed.
REJECTING_STATUSES = frozenset({400, 422})
STATE_TIMEOUT_SECONDS = 2.0


class HopeUnavailable(Exception):
    """HOPE could not be reached, timed out, or answered with an error that may pass (5xx, 404, ...)."""


class HopeRejected(Exception):
    """HOPE answered 400 or 422: the request itself is wrong."""


class HopeClient:
    """HOPE's ``/hope/events`` and ``/hope/state`` at ``base_url``; events are signed with ``key``."""

    def __init__(self, base_url: str, timeout_seconds: float, key: EventKey) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_seconds = timeout_seconds
        self.key = key

    def post_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /hope/events``, signed; HOPE's answer, e.g. ``{"accepted": true, "duplicate": false}``.

        Raises :class:`HopeRejected` or :class:`HopeUnavailable`.
        """
        body = json.dumps(dict(event)).encode()
        answer = self._request("POST", "/hope/events", body, self.timeout_seconds, self.key.sign(body))
        if not isinstance(answer, dict):
            raise HopeUnavailable(f"POST {self.base_url}/hope/events answered {answer!r}, not a JSON object")
        return answer

    def series_state(self) -> dict[str, dict[str, Any]]:
        """``GET /hope/state``'s ``series``: SeriesInstanceUID -> ``{"suggestion_model_version", "final", ...}``.

        Waits at most :data:`STATE_TIMEOUT_SECONDS`; raises :class:`HopeUnavailable`.
        """
        answer = self._request("GET", "/hope/state", None, min(self.timeout_seconds, STATE_TIMEOUT_SECONDS))
        series = answer.get("series") if isinstance(answer, dict) else None
        if not isinstance(series, dict):
            raise HopeUnavailable(f"GET {self.base_url}/hope/state answered without a 'series' object")
        return series

    def _request(
        self, method: str, path: str, body: bytes | None, timeout: float, headers: Mapping[str, str] | None = None
    ) -> Any:
        url = f"{self.base_url}{path}"
        request = urllib.request.Request(
            url, data=body, method=method, headers={"Accept": "application/json", **(headers or {})}
        )
        if body is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                data = response.read()
        except urllib.error.HTTPError as exc:
            detail = exc.read(500).decode(errors="replace")
            error = HopeRejected if exc.code in REJECTING_STATUSES else HopeUnavailable
            raise error(f"{method} {url} answered HTTP {exc.code}: {detail}") from exc
        except (OSError, http.client.HTTPException) as exc:  # URLError, refused, reset, timeout
            raise HopeUnavailable(f"{method} {url} failed: {exc}") from exc
        try:
            return json.loads(data)
        except ValueError as exc:
            raise HopeUnavailable(f"{method} {url} answered something that is not JSON: {data[:200]!r}") from exc
