"""Bounded inference: at most ``http.infer_workers`` inferences run at once, ``http.infer_queue`` more wait.

A request beyond those is refused at once with :class:`~hope.errors.OverloadedError` (503 with ``Retry-After``)
instead of queueing without bound. Inferences run on the pool's own worker threads, started at ``http.infer_nice``
(Linux's per-thread nice value, inherited by the threads torch starts from them): on a busy CPU the scheduler
serves the event loop and the other routes (``GET /info/``, listings, saves) first (measured with 8 annotators on 2
cores, ``scripts/bench_team.py --quick``: ``GET /info/`` p95 289 ms -> 258 ms; the rest of the gap was listings
fetched again after every save, see :mod:`hope.datastore.listing`).
HOPE's routes are plain ``def`` routes, which Starlette runs in AnyIO's default thread pool; an admitted request
holds that thread, idle, while its inference waits and runs.

AnyIO's default thread limiter has 40 tokens, shared by every plain ``def`` route (``GET /info/``,
``GET /datastore/``, label uploads...). Admitted inferences hold up to ``workers + queue`` of them, so with a
large ``http.infer_queue`` they would take every token and every other request would wait behind them.
:func:`serving_pool` therefore widens the limiter by ``workers + queue`` at start-up: the other routes keep all
the tokens they had, however the pool is sized. (Capping ``workers + queue`` below 40 instead would have tied a
deployment setting to an AnyIO default; a thread that waits on the pool's semaphore costs no CPU.)
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TypeVar

import anyio.to_thread

from hope.config.server import HttpSettings
from hope.errors import OverloadedError

T = TypeVar("T")

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class PoolLoad:
    """How many inferences are running, and how many are admitted and waiting for a worker."""

    running: int
    waiting: int


class InferencePool:
    """Runs at most ``workers`` calls at once, lets ``queue`` more wait, and refuses the rest.

    Args:
        workers: calls that run at once (``http.infer_workers``, at least 1), each on a thread of the pool.
        queue: calls admitted to wait for a worker (``http.infer_queue``).
        retry_after_s: when a refused client should try again (``http.retry_after_seconds``).
        nice: how much lower the workers' CPU priority is than the server's (``http.infer_nice``; 0: the same).
    """

    def __init__(self, workers: int, queue: int, retry_after_s: int, nice: int = 0) -> None:
        if workers < 1 or queue < 0:
            raise ValueError(f"an inference pool needs workers >= 1 and queue >= 0, got {workers} and {queue}")
        self.workers = workers
        self.queue = queue
        self.retry_after_s = retry_after_s
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hope-infer",
                                            initializer=_lower_priority, initargs=(nice,))
        self._lock = threading.Lock()
        self._admitted = 0
        self._running = 0

    def run(self, call: Callable[[], T]) -> T:
        """``call()`` on a worker thread once one is free; its result, or its exception, on the calling thread.

        Raises:
            OverloadedError: ``workers`` calls are running and ``queue`` more are waiting already.
        """
        self._admit()
        try:
            return self._executor.submit(self._counted, call).result()
        finally:
            with self._lock:
                self._admitted -= 1

    def _counted(self, call: Callable[[], T]) -> T:
        self._count_running(1)
        try:
            return call()
        finally:
            self._count_running(-1)

    def load(self) -> PoolLoad:
        """The calls running and waiting now."""
        with self._lock:
            return PoolLoad(running=self._running, waiting=self._admitted - self._running)

    def _admit(self) -> None:
        with self._lock:
            if self._admitted >= self.workers + self.queue:
                raise OverloadedError(
                    f"the server is busy: all {self.workers} inference worker(s) are running and {self.queue} more "
                    f"request(s) are waiting (http.infer_workers, http.infer_queue); try again in "
                    f"{self.retry_after_s} s", self.retry_after_s)
            self._admitted += 1
            logger.info(f"inference admitted: {self._admitted} of {self.workers + self.queue} places taken "
                        f"({self.workers} worker(s), {self.queue} queue place(s))")

    def _count_running(self, change: int) -> None:
        with self._lock:
            self._running += change


def serving_pool(http: HttpSettings) -> InferencePool:
    """The pool sized by ``http``, with AnyIO's default thread limiter widened by what it admits.

    Call it on the server's event loop (MONAI Label's start-up mounts the routes there), once.
    """
    pool = InferencePool(http.infer_workers, http.infer_queue, http.retry_after_seconds, http.infer_nice)
    limiter = anyio.to_thread.current_default_thread_limiter()
    limiter.total_tokens += pool.workers + pool.queue
    return pool


def _lower_priority(nice: int) -> None:
    """Lower this thread's CPU priority by ``nice`` (Linux keeps a nice value per thread)."""
    if nice:
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), os.getpriority(os.PRIO_PROCESS, 0) + nice)
