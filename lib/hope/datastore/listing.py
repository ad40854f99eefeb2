"""The store's series listing, cached: a listing past its age is served while a fresh one is fetched behind it.

Listing a store of thousands of series takes a QIDO round trip and seconds of parsing. Asking for it on a request
path every ``list_cache_seconds`` made ``GET /info/``, next samples and listings wait behind Orthanc now and then,
and every request that found the cache expired asked again at the same moment. Here:

* a listing older than its age is still answered, and one thread fetches a fresh one in the background
  (stale-while-revalidate), so time alone never makes a request wait for the store;
* :meth:`SeriesListing.invalidate` (after HOPE's own writes and the store's events) makes the next call fetch
  synchronously, so what HOPE just wrote is listed at once; a fetch that started before the invalidation is not
  kept, so it cannot bring back a listing without that write;
* :meth:`SeriesListing.update` applies a write HOPE knows the outcome of (a SEG it stored) to the listing it
  holds, so the write is listed at once without asking the store again;
* only one thread fetches at a time; the others wait for its answer.
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


class SeriesListing(Generic[T]):
    """A cached listing fetched by ``fetch``; fresh for ``max_age_s`` seconds, then refreshed in the background."""

    def __init__(self, fetch: Callable[[], T], max_age_s: float) -> None:
        self._fetch = fetch
        self._max_age_s = max_age_s
        self._lock = threading.Lock()
        self._fetching = threading.Lock()
        self._value: T | None = None
        self._fetched_at = 0.0
        self._generation = 0
        self._refreshing = False

    def invalidate(self) -> None:
        """Forget the listing: the next call fetches it before answering."""
        with self._lock:
            self._value = None
            self._generation += 1

    def update(self, change: Callable[[T], T]) -> None:
        """Apply ``change`` to the listing held (nothing when there is none: the next call fetches it anyway).

        A fetch in flight is not kept (it may predate the write); the listing keeps its age.
        """
        with self._lock:
            self._generation += 1
            if self._value is not None:
                self._value = change(self._value)

    def get(self) -> T:
        """The listing; fetched now when there is none, refreshed in the background when it is old.

        Raises:
            StoreError: there is no listing yet and the store could not be listed.
        """
        with self._lock:
            value, generation = self._value, self._generation
            stale = value is not None and time.monotonic() - self._fetched_at >= self._max_age_s
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
            return self._store(self._fetch(), generation)

    def _store(self, value: T, generation: int) -> T:
        with self._lock:
            if generation == self._generation:  # else invalidated meanwhile: this answer may predate a write
                self._value, self._fetched_at = value, time.monotonic()
        return value

    def _refresh(self, generation: int) -> None:
        try:
            with self._fetching:
                self._store(self._fetch(), generation)
        except StoreError as exc:
            logger.warning(f"the store's listing could not be refreshed ({exc.reason}); the last one is served and "
                           "the next request after its age tries again")
        finally:
            with self._lock:
                self._refreshing = False
