"""The store's series listing, cached: a listing past its age is served while a fresh one is fetched behind it.

Listing a store of thousands of series takes a QIDO round trip and seconds of parsing. Asking for it on a request
path every ``list_cache_seconds`` made ``GET /info/``, next samples and listings wait behind Orthanc now and then,
and every request that found the cache expired asked again at the same moment. Here:

* a listing older than its age is still answered, and one thread fetches a fresh one in the background
  (stale-while-revalidate), so time alone never makes a request wait for the store;
* :meth:`SeriesListing.invalidate` (after HOPE's own writes and the store's events) makes the next call fetch
  synchronously, so what HOPE just wrote is listed at once; a fetch that started before the invalidation is not
  kept, so it cannot bring back a listing without that write;
* :meth:`SeriesListing.update` applies a write HOPE knows the outcome of (a SEG it stored, a series a store event
  reported) to the listing it holds, so the write is listed at once without asking the store again; a fetch in
  flight gets the same change applied to its answer, so it neither loses the write nor is thrown away;
* only one thread fetches at a time; the others wait for its answer;
* a refresh costs the store what listing it costs, and that grows with the store (Orthanc 1.10 lists 10,000 series
  by QIDO-RS in about a minute): with a ``cost_factor`` (:data:`REFRESH_COST_FACTOR` for the store's listing), a
  listing is refreshed no sooner than that many times the last fetch took, so listing takes at most about a
  tenth of the store's time. Store events (HOPE's plugin) keep the listing current in between.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Generic, TypeVar

from hope.errors import StoreError

logger = logging.getLogger(__name__)
T = TypeVar("T")
#: The store's listing is refreshed no sooner than this many times the duration of its last fetch.
REFRESH_COST_FACTOR = 10.0


class SeriesListing(Generic[T]):
    """A cached listing fetched by ``fetch``; fresh for ``max_age_s`` seconds (or ``cost_factor`` times as long as
    the last fetch took, when that is longer), then refreshed in the background."""

    def __init__(self, fetch: Callable[[], T], max_age_s: float, cost_factor: float = 0.0) -> None:
        self._fetch = fetch
        self._max_age_s = max_age_s
        self._cost_factor = cost_factor
        self._lock = threading.Lock()
        self._fetching = threading.Lock()
        self._value: T | None = None
        self._fetched_at = 0.0
        self._fetch_s = 0.0
        self._generation = 0  # bumped by invalidate(): a fetch that started before it is not kept
        self._changes: list[Callable[[T], T]] | None = None  # while a fetch is in flight: updates to apply to it
        self._refreshing = False

    def invalidate(self) -> None:
        """Forget the listing: the next call fetches it before answering."""
        with self._lock:
            self._value = None
            self._generation += 1

    def update(self, change: Callable[[T], T]) -> None:
        """Apply ``change`` to the listing held (nothing when there is none: the next call fetches it anyway), and
        to the answer of a fetch in flight (it may predate the write); the listing keeps its age."""
        with self._lock:
            if self._value is not None:
                self._value = change(self._value)
            if self._changes is not None:
                self._changes.append(change)

    @property
    def max_age_s(self) -> float:
        """The age after which the listing is refreshed: the configured one, or more for a costly fetch."""
        return max(self._max_age_s, self._cost_factor * self._fetch_s)

    def get(self) -> T:
        """The listing; fetched now when there is none, refreshed in the background when it is old.

        Raises:
            StoreError: there is no listing yet and the store could not be listed.
        """
        with self._lock:
            value, generation = self._value, self._generation
            stale = value is not None and time.monotonic() - self._fetched_at >= self.max_age_s
            if stale and not self._refreshing:
                self._refreshing = True
                threading.Thread(target=self._refresh, args=(generation,), name="hope-listing", daemon=True).start()
        if value is not None:
            return value
        with self._fetching:  # one fetch at a time; a caller that waited here may find it done
            with self._lock:
                if self._value is not None:
                    return self._value
                generation = self._generation
            return self._fetch_and_store(generation)

    def _fetch_and_store(self, generation: int) -> T:
        """Fetch (the caller holds ``_fetching``) and keep the answer, with the updates made meanwhile applied,
        unless the listing was invalidated meanwhile (this answer may predate a write)."""
        with self._lock:
            self._changes = []
        start = time.monotonic()
        try:
            value = self._fetch()
        except BaseException:
            with self._lock:
                self._changes = None
            raise
        with self._lock:
            for change in self._changes or []:
                value = change(value)
            self._changes = None
            if generation == self._generation:
                self._value, self._fetched_at = value, time.monotonic()
                self._fetch_s = self._fetched_at - start
        return value

    def _refresh(self, generation: int) -> None:
        try:
            with self._fetching:
                self._fetch_and_store(generation)
        except StoreError as exc:
            logger.warning(f"the store's listing could not be refreshed ({exc.reason}); the last one is served and "
                           "the next request after its age tries again")
        finally:
            with self._lock:
                self._refreshing = False
