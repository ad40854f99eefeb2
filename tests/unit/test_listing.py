"""The cached series listing: stale answers while refreshing, invalidation that sticks, one fetch at a time."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest

from hope.datastore.listing import REFRESH_COST_FACTOR, SeriesListing
from hope.errors import StoreError


class Store:
    """A listing source whose fetches can be held, counted and failed."""

    def __init__(self) -> None:
        self.value = ["a"]
        self.fetches = 0
        self.release = threading.Event()
        self.release.set()
        self.fail = False

    def fetch(self) -> list[str]:
        self.fetches += 1
        snapshot = list(self.value)
        self.release.wait(10)
        if self.fail:
            raise StoreError("store down")
        return snapshot


def _until(predicate: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 10
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_an_old_listing_is_answered_at_once_and_refreshed_behind() -> None:
    store = Store()
    listing = SeriesListing(store.fetch, max_age_s=0.0)
    assert listing.get() == ["a"]
    store.value, store.release = ["a", "b"], threading.Event()  # the next fetch hangs until released
    started = time.monotonic()
    assert listing.get() == ["a"]  # old, answered without waiting for the store
    assert time.monotonic() - started < 1.0
    store.release.set()
    _until(lambda: listing.get() == ["a", "b"], "the background refresh")


def test_after_invalidate_the_next_call_waits_for_a_fresh_listing() -> None:
    store = Store()
    listing = SeriesListing(store.fetch, max_age_s=600)
    assert listing.get() == ["a"]
    store.value = ["a", "b"]
    assert listing.get() == ["a"] and store.fetches == 1
    listing.invalidate()
    assert listing.get() == ["a", "b"] and store.fetches == 2


def test_a_fetch_started_before_an_invalidation_is_not_kept() -> None:
    store = Store()
    listing = SeriesListing(store.fetch, max_age_s=0.0)
    listing.get()
    store.release = threading.Event()
    listing.get()  # starts a background refresh that reads ["a"] and hangs
    _until(lambda: store.fetches == 2, "the refresh to start")
    store.value = ["a", "written"]
    listing.invalidate()  # a write landed while the refresh was in flight
    store.release.set()
    _until(lambda: not listing._refreshing, "the refresh to end")
    assert listing.get() == ["a", "written"]


def test_a_failed_refresh_keeps_the_last_listing_and_a_first_failure_is_raised() -> None:
    store = Store()
    listing = SeriesListing(store.fetch, max_age_s=0.0)
    listing.get()
    store.fail = True
    assert listing.get() == ["a"]
    _until(lambda: not listing._refreshing, "the refresh to fail")
    assert listing.get() == ["a"]
    listing.invalidate()
    with pytest.raises(StoreError, match="store down"):
        listing.get()


def test_concurrent_callers_share_one_fetch() -> None:
    store = Store()
    store.release = threading.Event()
    listing = SeriesListing(store.fetch, max_age_s=600)
    answers: list[list[str]] = []
    threads = [threading.Thread(target=lambda: answers.append(listing.get())) for _ in range(8)]
    for thread in threads:
        thread.start()
    _until(lambda: store.fetches == 1, "the first fetch")
    store.release.set()
    for thread in threads:
        thread.join(10)
    assert answers == [["a"]] * 8 and store.fetches == 1


def test_a_known_write_is_listed_at_once_and_a_fetch_in_flight_does_not_undo_it() -> None:
    store = Store()
    listing = SeriesListing(store.fetch, max_age_s=0.0)
    listing.get()
    store.release = threading.Event()
    listing.get()  # a background refresh reads ["a"] and hangs
    _until(lambda: store.fetches == 2, "the refresh to start")
    listing.update(lambda value: [*value, "seg"])
    assert listing.get() == ["a", "seg"]
    store.release.set()
    _until(lambda: not listing._refreshing, "the refresh to end")
    assert listing.get() == ["a", "seg"]  # the in-flight answer (without the SEG) got the SEG too


def test_a_costly_fetch_is_refreshed_less_often() -> None:
    store = Store()
    listing = SeriesListing(store.fetch, max_age_s=0.0, cost_factor=REFRESH_COST_FACTOR)
    store.release = threading.Event()
    threading.Timer(0.2, store.release.set).start()
    listing.get()  # took about 0.2 s
    assert listing.max_age_s >= 1.5
    listing.get()
    assert store.fetches == 1  # not old enough to be refreshed
