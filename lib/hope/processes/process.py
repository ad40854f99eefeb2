"""A child process with a readiness probe, a log file and a clean stop."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import requests


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_ok(url: str, timeout: float = 2.0, auth: tuple[str, str] | None = None) -> bool:
    """Whether ``GET url`` (with basic ``auth``, if given) answers 200."""
    try:
        return requests.get(url, timeout=timeout, auth=auth).status_code == 200
    except requests.RequestException:
        return False


def wait_until(predicate: Callable[[], bool], timeout: float, what: str, interval: float = 0.2) -> None:
    """Poll ``predicate`` until it is true, or raise ``TimeoutError`` naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


class ManagedProcess:
    """Run ``command`` with its output in ``log_path``; ``start`` returns once ``ready_url`` answers 200.

    ``ready_auth``: basic-auth credentials of ``ready_url``, when it needs them.
    """

    def __init__(
        self,
        name: str,
        command: Sequence[str],
        log_path: Path,
        ready_url: str,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        ready_auth: tuple[str, str] | None = None,
    ) -> None:
        self.name = name
        self.command = list(command)
        self.log_path = log_path
        self.ready_url = ready_url
        self.ready_auth = ready_auth
        self.env = env
        self.cwd = cwd
        self.process: subprocess.Popen | None = None
        self._stopped = False  # its process group was signalled by stop(): a second stop() must not signal a reused id

    def start(self, timeout: float = 120.0) -> None:
        """Start the process and wait until it is ready; on failure, raise with the log's tail."""
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            self.command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(self.env or {})},
            cwd=self.cwd,
            start_new_session=True,
        )
        self._stopped = False
        log.close()
        try:
            wait_until(self._ready_or_dead, timeout, f"{self.name} at {self.ready_url}")
        except TimeoutError as exc:
            self.stop()
            raise RuntimeError(f"{self.name} did not become ready: {exc}\n{self.log_tail()}") from exc
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.name} exited with code {self.process.returncode}\n{self.log_tail()}")

    def _ready_or_dead(self) -> bool:
        assert self.process is not None
        return self.process.poll() is not None or http_ok(self.ready_url, auth=self.ready_auth)

    def log_tail(self, lines: int = 40) -> str:
        """The last lines of the process log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def running(self) -> bool:
        """Whether the process is alive."""
        return self.process is not None and self.process.poll() is None

    def exit_code(self) -> int | None:
        """The process's exit status once it has exited (negative: killed by that signal), else ``None``."""
        return None if self.process is None else self.process.poll()

    def stop(self, timeout: float = 20.0) -> None:
        """SIGTERM the process group, then SIGKILL it if it has not exited within ``timeout`` s.

        If the process has exited already, SIGKILL what it left in its group (e.g. the HOPE server's training run).
        """
        if self.process is None or self._stopped:
            return
        self._stopped = True
        group = self.process.pid  # started in a new session: it leads its own process group
        if self.process.poll() is not None:
            _kill_group(group, signal.SIGKILL)
            return
        _kill_group(group, signal.SIGTERM)
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(group, signal.SIGKILL)
            self.process.wait(timeout=timeout)


def _kill_group(group: int, sig: signal.Signals) -> None:
    """Send ``sig`` to process group ``group``; an empty group is fine."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(group, sig)
