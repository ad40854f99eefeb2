"""The plugin's work: two daemon threads between Orthanc's change callback and HOPE.

* Orthanc's callback calls :meth:`PluginService.on_stable_series`, which only adds the series to the durable
  worklist and wakes the worker; ingest never waits for HOPE or for validation.
* The *worker* thread reads each queued series from Orthanc, validates it, records it in the catalog, and adds
  its event to the durable outbox (``INSERT OR IGNORE``: an event id is stored once).
* The *delivery* thread posts pending events to HOPE in order; while HOPE is down or failing it retries with a
  backoff that doubles from :data:`FIRST_RETRY_SECONDS` up to ``RetrySeconds``. Pending rows survive a restart.

Both threads stop when :meth:`PluginService.stop` is called (Orthanc's ``ORTHANC_STOPPED``).
"""

from __future__ import annotations

import threading
import time
import traceback
from collections.abc import Callable
from typing import Any, Protocol

from hope.orthanc_plugin.catalog import Catalog
from hope.orthanc_plugin.config import PluginConfig
from hope.orthanc_plugin.events import SERIES_STABLE, RestGet, build_event
from hope.orthanc_plugin.hope_client import HopeClient, HopeRejected, HopeUnavailable
from hope.orthanc_plugin.outbox import Outbox, OutboxEvent
from hope.orthanc_plugin.pseudonymize import PseudonymMap, is_original, pseudonymize_study
from hope.orthanc_plugin.views import outbox_view, series_view
from hope.orthanc_plugin.worklist import WorkItem, Worklist
from hope.sync.signing import EventKey

FIRST_RETRY_SECONDS = 0.5
MAX_WORK_ATTEMPTS = 5  # reading a series from Orthanc; e.g. a series deleted before it was processed

#: Store a series' validation JSON in Orthanc (series metadata): ``annotate(orthanc_id, validation)``.
Annotate = Callable[[str, dict[str, Any]], None]
#: ``POST`` a JSON body on Orthanc's REST API and return the parsed answer; ``DELETE`` a resource.
RestPost = Callable[[str, dict[str, Any]], Any]
RestDelete = Callable[[str], None]


class Log(Protocol):
    """Where the plugin logs (Orthanc's log in production)."""

    def info(self, message: str) -> None:
        """Log routine progress."""

    def warning(self, message: str) -> None:
        """Log a problem the plugin works around or retries."""

    def error(self, message: str) -> None:
        """Log a problem the plugin gives up on."""


def backoff(failures: int, cap: float) -> float:
    """Seconds to wait after ``failures`` consecutive failures: 0.5, 1, 2, 4 ... at most ``cap``."""
    return min(cap, FIRST_RETRY_SECONDS * 2.0 ** max(failures - 1, 0))


class PluginService:
    """Worklist -> validation -> outbox -> HOPE, plus the answers of the plugin's REST routes."""

    def __init__(
        self,
        config: PluginConfig,
        rest_get: RestGet,
        log: Log,
        annotate: Annotate | None = None,
        rest_post: RestPost | None = None,
        rest_delete: RestDelete | None = None,
    ) -> None:
        self.config = config
        self.log = log
        self._rest_get = rest_get
        self._rest_post = rest_post
        self._rest_delete = rest_delete
        self._annotate = annotate
        pseudo = config.pseudonymize
        if pseudo and (rest_post is None or rest_delete is None):
            raise ValueError("pseudonymisation needs Orthanc's REST POST and DELETE")
        self.pseudonyms = PseudonymMap(pseudo.map_file) if pseudo and pseudo.map_file else None
        self.worklist = Worklist(config.database)
        self.catalog = Catalog(config.database)
        self.outbox = Outbox(config.database)
        self.hope = HopeClient(config.hope_url, config.timeout_seconds, EventKey.load(config.secret_file))
        self._stop = threading.Event()
        self._work_wake = threading.Event()
        self._delivery_wake = threading.Event()
        self._threads: list[threading.Thread] = []
        self._delivery_failures = 0

    # --- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        """Start the worker and delivery threads (daemons); queued work and pending events resume."""
        if self._threads:
            return
        self._stop.clear()
        self._threads = [
            threading.Thread(
                target=self._loop, args=("worker", self._work_wake, self._work_step), name="hope-worker", daemon=True
            ),
            threading.Thread(
                target=self._loop,
                args=("delivery", self._delivery_wake, self._delivery_step),
                name="hope-delivery",
                daemon=True,
            ),
        ]
        for thread in self._threads:
            thread.start()
        counts = self.outbox.counts()
        self.log.info(
            f"HOPE plugin started: events go to {self.config.hope_url}/hope/events; {len(self.worklist)} series "
            f"to process, {counts['pending']} events pending, state in {self.config.database}"
        )

    def stop(self) -> None:
        """Stop both threads; waits for an HTTP request in flight (at most the configured timeout)."""
        self._stop.set()
        self._work_wake.set()
        self._delivery_wake.set()
        for thread in self._threads:
            thread.join(self.config.timeout_seconds + 1.0)
            if thread.is_alive():
                self.log.warning(f"HOPE plugin: thread {thread.name} did not stop in time")
        self._threads = []
        self.log.info("HOPE plugin stopped")

    # --- Orthanc callback ------------------------------------------------------------------------------------

    def on_stable_series(self, orthanc_id: str) -> None:
        """Queue a series that became stable (a fast, durable insert) and wake the worker."""
        self.worklist.add(orthanc_id)
        self._work_wake.set()

    def on_stable_study(self, orthanc_id: str) -> None:
        """With pseudonymisation on, queue a study that became stable; otherwise nothing to do."""
        if self.config.pseudonymize is not None:
            self.worklist.add(orthanc_id, level="study")
            self._work_wake.set()

    # --- REST routes -----------------------------------------------------------------------------------------

    def series_list(self) -> list[dict[str, Any]]:
        """``GET /hope/series``: every image series the plugin has validated, with its annotation state."""
        hope_state, labelled = self._hope_state(), self.catalog.labelled()
        return [series_view(record, labelled, hope_state) for record in self.catalog.all_series()]

    def series_detail(self, series_uid: str) -> dict[str, Any] | None:
        """``GET /hope/series/<SeriesInstanceUID>``; ``None`` if the plugin has not seen that series."""
        record = self.catalog.series(series_uid)
        if record is None:
            return None
        return series_view(record, self.catalog.labelled(), self._hope_state())

    def outbox_status(self) -> dict[str, Any]:
        """``GET /hope/outbox``: events per status, delivery problems, series still to process."""
        return outbox_view(self.outbox.counts(), self.outbox.troubled(), len(self.worklist))

    def retry_event(self, event_id: str) -> bool:
        """``POST /hope/outbox/<id>/retry``: deliver a rejected event again; ``False`` unless it was rejected."""
        if not self.outbox.retry(event_id):
            return False
        self.log.info(f"HOPE plugin: rejected event {event_id} queued again for delivery")
        self._delivery_wake.set()
        return True

    def _hope_state(self) -> dict[str, dict[str, Any]] | None:
        try:
            return self.hope.series_state()
        except (HopeUnavailable, HopeRejected) as exc:
            self.log.warning(f"HOPE plugin: cannot read HOPE's state, answering from the plugin's own: {exc}")
            return None

    # --- threads -------------------------------------------------------------------------------------------

    def _loop(self, name: str, wake: threading.Event, step: Callable[[], float]) -> None:
        """Run ``step`` until stopped, then wait the seconds it returns or until ``wake`` is set.

        An unexpected error is logged with its traceback and the step is tried again later; the thread lives on.
        """
        while not self._stop.is_set():
            wake.clear()
            try:
                wait = step()
            except Exception:
                wait = self.config.retry_seconds
                self.log.error(f"HOPE plugin: {name} failed, trying again in {wait:g} s:\n{traceback.format_exc()}")
            wake.wait(wait)

    def _work_step(self) -> float:
        """Process the due series; seconds until the next one is due (at most ``RetrySeconds``)."""
        for item in self.worklist.due(time.time()):
            if self._stop.is_set():
                return 0.0
            self._process(item)
        next_due = self.worklist.next_due()
        wait = self.config.retry_seconds if next_due is None else next_due - time.time()
        return min(max(wait, 0.0), self.config.retry_seconds)

    def _process(self, item: WorkItem) -> None:
        try:
            if item.level == "study":
                self._pseudonymize(item)
                return
            if self.config.pseudonymize and is_original("series", item.orthanc_id, self._rest_get):
                self.log.info(f"HOPE plugin: series {item.orthanc_id} waits for its study's pseudonymisation")
                self.worklist.remove(item)
                return
            event = build_event(item.orthanc_id, self._rest_get)
        except Exception as exc:  # any failure of Orthanc's REST API or of its answers' shape
            self._work_failed(item, exc)
            return
        if event is None:
            self.log.info(f"HOPE plugin: series {item.orthanc_id} is neither an image series nor a SEG; ignored")
        else:
            self.catalog.record(event)
            if self.outbox.add(event):
                self.log.info(f"HOPE plugin: queued event {event['id']} (valid: {event.get('valid', '-')})")
                self._delivery_wake.set()
            else:
                self.log.info(f"HOPE plugin: event {event['id']} was queued before; not queued again")
            if event["type"] == SERIES_STABLE:
                self._store_validation(item.orthanc_id, event)
        self.worklist.remove(item)

    def _pseudonymize(self, item: WorkItem) -> None:
        assert self.config.pseudonymize and self._rest_post and self._rest_delete
        if is_original("studies", item.orthanc_id, self._rest_get):
            copy = pseudonymize_study(
                item.orthanc_id,
                self.config.pseudonymize,
                self._rest_get,
                self._rest_post,
                self._rest_delete,
                self.pseudonyms,
            )
            self.log.info(f"HOPE plugin: study {item.orthanc_id} pseudonymised as {copy}")
        self.worklist.remove(item)

    def _store_validation(self, orthanc_id: str, event: dict[str, Any]) -> None:
        if self._annotate is None:
            return
        try:
            self._annotate(orthanc_id, {"valid": event["valid"], "reasons": event["reasons"]})
        except Exception as exc:  # the plugin's own database already holds the flags
            self.log.warning(f"HOPE plugin: cannot store the validation of series {orthanc_id} in Orthanc: {exc!r}")

    def _work_failed(self, item: WorkItem, exc: Exception) -> None:
        attempts = item.attempts + 1
        if attempts >= MAX_WORK_ATTEMPTS:
            self.log.error(
                f"HOPE plugin: giving up on series {item.orthanc_id} after {attempts} failed attempts: {exc!r}"
            )
            self.worklist.remove(item)
            return
        delay = backoff(attempts, self.config.retry_seconds)
        self.log.warning(
            f"HOPE plugin: cannot read series {item.orthanc_id} (attempt {attempts} of {MAX_WORK_ATTEMPTS}), "
            f"retrying in {delay:.1f} s: {exc!r}"
        )
        self.worklist.failed(item, repr(exc), time.time() + delay)

    # --- delivery --------------------------------------------------------------------------------------------

    def _delivery_step(self) -> float:
        """Post pending events in order until none is left or HOPE is unavailable; seconds to wait then."""
        while not self._stop.is_set():
            events = self.outbox.pending()
            if not events:
                break
            for event in events:
                if self._stop.is_set():
                    return 0.0
                if not self._deliver(event):
                    self._delivery_failures += 1
                    return backoff(self._delivery_failures, self.config.retry_seconds)
        self._delivery_failures = 0
        return self.config.retry_seconds  # woken earlier when the worker queues an event

    def _deliver(self, event: OutboxEvent) -> bool:
        try:
            answer = self.hope.post_event(event.body)
        except HopeRejected as exc:
            self.outbox.mark_rejected(event.id, str(exc))
            self.log.error(f"HOPE plugin: HOPE rejected event {event.id}; it will not be sent again: {exc}")
            return True
        except HopeUnavailable as exc:
            self.outbox.mark_failed(event.id, str(exc))
            self.log.warning(f"HOPE plugin: event {event.id} stays pending (attempt {event.attempts + 1}): {exc}")
            return False
        self.outbox.mark_delivered(event.id)
        self.log.info(f"HOPE plugin: delivered event {event.id} (HOPE: duplicate={answer.get('duplicate')})")
        return True
