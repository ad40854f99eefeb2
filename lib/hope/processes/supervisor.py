"""Keep services running: restart one that exits, with exponential back-off, and log each event.

A service that exits is restarted after :attr:`Backoff.first` seconds; each further exit soon after a (re)start,
and each restart that fails, doubles the wait up to :attr:`Backoff.cap`. A service that stayed up for
:attr:`Backoff.stable_after` seconds before it exited starts again from the first wait.
"""

from __future__ import annotations

import logging
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn, Protocol

logger = logging.getLogger("hope.supervisor")


class Service(Protocol):
    """What :class:`Supervisor` needs of a service (:class:`hope.processes.process.ManagedProcess` is one)."""

    name: str

    def start(self, timeout: float) -> None:
        """Start the service and return once it is ready; raise ``RuntimeError`` or ``OSError`` if it is not."""

    def running(self) -> bool:
        """Whether the service is alive."""

    def exit_code(self) -> int | None:
        """The exit status of the service's process once it has exited (negative: killed by that signal)."""

    def stop(self) -> None:
        """Stop the service and whatever it left behind."""

    def log_tail(self, lines: int) -> str:
        """The last ``lines`` lines of the service's log."""


@dataclass(frozen=True)
class Backoff:
    """Seconds to wait before a restart: ``first``, doubled for each exit in a row, at most ``cap``.

    An exit counts as "in a row" unless the service had stayed up for ``stable_after`` seconds.
    """

    first: float = 1.0
    cap: float = 60.0
    stable_after: float = 120.0

    def delay(self, failures: int) -> float:
        """The wait before restart number ``failures`` (1, 2, ...) of a row."""
        return float(min(self.cap, self.first * 2 ** max(failures - 1, 0)))


def describe_exit(code: int | None) -> str:
    """``code 3``, ``code -9 (SIGKILL)``, or ``unknown code``: how a process ended, for the log."""
    if code is None:
        return "unknown code"
    if code < 0:
        try:
            return f"code {code} ({signal.Signals(-code).name})"
        except ValueError:
            return f"code {code}"
    return f"code {code}"


@dataclass
class _Watch:
    service: Service
    start_timeout: float
    up_since: float
    failures: int = 0
    restart_at: float | None = None


class Supervisor:
    """Starts services and restarts those that exit (see the module's documentation for the waits).

    ``clock``: seconds, monotonic (replaceable in tests). Restarts happen in :meth:`check`, in the calling thread;
    :meth:`run` calls it every second until interrupted.
    """

    def __init__(self, backoff: Backoff | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.backoff = backoff or Backoff()
        self.clock = clock
        self._watches: list[_Watch] = []

    def start(self, service: Service, timeout: float) -> None:
        """Start ``service`` (waiting at most ``timeout`` s for it to be ready) and restart it whenever it exits.

        A service that does not start the first time is not supervised: the error (``RuntimeError`` or
        ``OSError``, with the service's log) propagates, as a wrong configuration is not fixed by retrying.
        """
        service.start(timeout=timeout)
        self._watches.append(_Watch(service, timeout, up_since=self.clock()))

    def check(self) -> None:
        """Notice the services that exited since the last check, and restart those whose wait is over."""
        for watch in self._watches:
            if watch.restart_at is None:
                if not watch.service.running():
                    self._exited(watch)
            elif self.clock() >= watch.restart_at:
                self._restart(watch)

    def run(self, interval: float = 1.0) -> NoReturn:
        """:meth:`check` every ``interval`` seconds, until an exception (``KeyboardInterrupt`` on Ctrl-C) ends it."""
        while True:
            self.check()
            time.sleep(interval)

    def _exited(self, watch: _Watch) -> None:
        service, now = watch.service, self.clock()
        uptime = now - watch.up_since
        watch.failures = 1 if uptime >= self.backoff.stable_after else watch.failures + 1
        delay = self.backoff.delay(watch.failures)
        watch.restart_at = now + delay
        code = service.exit_code()
        service.stop()  # what the process left behind in its process group (a training run of the HOPE server)
        logger.warning(
            f"{service.name} exited with {describe_exit(code)} after {uptime:.0f} s up; restarting it in "
            f"{delay:g} s (exit {watch.failures} in a row). The end of its log:\n{service.log_tail(lines=15)}"
        )

    def _restart(self, watch: _Watch) -> None:
        service = watch.service
        logger.info(f"restarting {service.name} ...")
        try:
            service.start(timeout=watch.start_timeout)
        except (RuntimeError, OSError) as exc:
            service.stop()
            watch.failures += 1
            delay = self.backoff.delay(watch.failures)
            watch.restart_at = self.clock() + delay
            logger.error(f"{service.name} did not restart ({exc}); trying again in {delay:g} s")
            return
        watch.up_since, watch.restart_at = self.clock(), None
        logger.info(f"{service.name} is back (after {watch.failures} exit(s) in a row)")
