"""Bookkeeping of HTTP load benchmarks: timed calls per route, their statistics, and saved labels against SEGs.

A load benchmark records every request it makes as a :class:`Call` (from any number of client threads, through
a :class:`CallLog`); :func:`route_stats` turns them into counts and latency percentiles per route, and
:func:`label_audit` compares the series whose final label was saved with the SEG series found in the store.
"""

from __future__ import annotations

import threading
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

#: ``status`` of a request that got no HTTP answer (connection refused or reset, timeout).
NO_ANSWER = 0


@dataclass(frozen=True)
class Call:
    """One request: its route (``"GET /info/"``), HTTP status (:data:`NO_ANSWER` if none) and duration.

    ``retry_after``: the answer carried a ``Retry-After`` header (a 503 with it is a refusal by the server's
    inference pool, which the client retries, not a failure).
    """

    route: str
    status: int
    seconds: float
    retry_after: bool = False

    @property
    def outcome(self) -> str:
        """``ok`` (1xx-3xx), ``refused_503`` (503 with Retry-After), ``errors_4xx``, ``errors_5xx`` or ``no_answer``."""
        if self.status == NO_ANSWER:
            return "no_answer"
        if self.status == 503 and self.retry_after:
            return "refused_503"
        if self.status >= 500:
            return "errors_5xx"
        if self.status >= 400:
            return "errors_4xx"
        return "ok"


OUTCOMES = ("ok", "refused_503", "errors_4xx", "errors_5xx", "no_answer")


class CallLog:
    """Calls recorded by concurrent client threads."""

    def __init__(self) -> None:
        self._calls: list[Call] = []
        self._lock = threading.Lock()

    def add(self, call: Call) -> None:
        """Record ``call``."""
        with self._lock:
            self._calls.append(call)

    def calls(self) -> list[Call]:
        """A copy of every call recorded so far, in order."""
        with self._lock:
            return list(self._calls)


def percentile_ms(seconds: Sequence[float], q: float) -> float | None:
    """The ``q``-th percentile (0-100, linear interpolation) of ``seconds``, in milliseconds; ``None`` if empty."""
    return float(np.percentile(np.asarray(seconds, dtype=float), q) * 1000.0) if len(seconds) else None


def route_stats(calls: Iterable[Call]) -> dict[str, dict[str, Any]]:
    """Per route, in order of first call: ``requests``, a count per outcome (:data:`OUTCOMES`), and ``p50_ms``,
    ``p95_ms``, ``max_ms`` over the answered ``ok`` calls only (a refusal answers at once and would flatter the
    latency; an error is counted, not timed)."""
    by_route: dict[str, list[Call]] = defaultdict(list)
    for call in calls:
        by_route[call.route].append(call)
    stats = {}
    for route, route_calls in by_route.items():
        outcomes = Counter(call.outcome for call in route_calls)
        ok = [call.seconds for call in route_calls if call.outcome == "ok"]
        stats[route] = {
            "requests": len(route_calls),
            **{outcome: outcomes[outcome] for outcome in OUTCOMES},
            "p50_ms": percentile_ms(ok, 50),
            "p95_ms": percentile_ms(ok, 95),
            "max_ms": max(ok) * 1000.0 if ok else None,
        }
    return stats


def label_audit(saved: Iterable[str], seg_references: Iterable[str]) -> dict[str, Any]:
    """Saved final labels against the SEG series in the store.

    Args:
        saved: the image series of each label save answered 200 (a series saved twice is listed twice).
        seg_references: the image series each SEG series in the store references, one entry per SEG series.

    Returns:
        ``labels_saved`` (distinct series), ``saved_again`` (saves of a series saved before: work done twice),
        ``labels_found`` (saved series with at least one SEG), ``labels_lost`` (saved series without a SEG),
        ``lost_series`` (their UIDs, sorted), ``extra_segs`` (SEG series beyond one per saved series) and
        ``unexpected_segs`` (SEG series of series this run never saved).
    """
    saves = list(saved)
    saved_series = set(saves)
    per_series = Counter(seg_references)
    lost = sorted(saved_series - set(per_series))
    return {
        "labels_saved": len(saved_series),
        "saved_again": len(saves) - len(saved_series),
        "labels_found": len(saved_series) - len(lost),
        "labels_lost": len(lost),
        "lost_series": lost,
        "extra_segs": sum(count - 1 for uid, count in per_series.items() if uid in saved_series),
        "unexpected_segs": sum(count for uid, count in per_series.items() if uid not in saved_series),
    }
