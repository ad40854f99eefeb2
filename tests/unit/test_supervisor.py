"""The launcher's supervision: a service that exits is restarted with back-off, and each event is logged."""

from __future__ import annotations

import logging
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from hope.processes.process import ManagedProcess, free_port, http_ok
from hope.processes.supervisor import Backoff, Supervisor, describe_exit

BACKOFF = Backoff(first=1.0, cap=8.0, stable_after=100.0)


class FakeClock:
    """Seconds that pass only when told to."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeService:
    """A service whose process exits when told to; ``fail_starts`` of its next starts fail."""

    def __init__(self, clock: FakeClock, name: str = "Fake") -> None:
        self.name = name
        self.clock = clock
        self.alive = False
        self.code: int | None = None
        self.starts: list[float] = []
        self.stops = 0
        self.fail_starts = 0

    def start(self, timeout: float) -> None:
        self.starts.append(self.clock.now)
        if self.fail_starts:
            self.fail_starts -= 1
            self.code = 1
            raise RuntimeError(f"{self.name} exited with code 1")
        self.alive, self.code = True, None

    def running(self) -> bool:
        return self.alive

    def exit_code(self) -> int | None:
        return self.code

    def stop(self) -> None:
        self.stops += 1

    def log_tail(self, lines: int) -> str:
        return "the last words"

    def crash(self, code: int = -9) -> None:
        self.alive, self.code = False, code


def _started(clock: FakeClock, *names: str) -> tuple[Supervisor, list[FakeService]]:
    supervisor = Supervisor(BACKOFF, clock=clock)
    services = [FakeService(clock, name) for name in names or ("Fake",)]
    for service in services:
        supervisor.start(service, timeout=5)
    return supervisor, services


def _tick(supervisor: Supervisor, clock: FakeClock, seconds: float, step: float = 0.5) -> None:
    """Check every ``step`` seconds for ``seconds`` seconds, as :meth:`Supervisor.run` does."""
    for _ in range(int(seconds / step)):
        clock.advance(step)
        supervisor.check()


def test_backoff_doubles_up_to_its_cap() -> None:
    assert [BACKOFF.delay(n) for n in range(1, 7)] == [1, 2, 4, 8, 8, 8]


def test_exit_codes_are_described_with_their_signal() -> None:
    assert describe_exit(-9) == "code -9 (SIGKILL)"
    assert describe_exit(3) == "code 3"
    assert describe_exit(None) == "unknown code"


def test_a_crashed_service_is_restarted_after_the_first_wait_and_logged(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    supervisor, (service,) = _started(clock)
    _tick(supervisor, clock, 200)
    assert service.starts == [0.0], "a running service is left alone"

    caplog.set_level(logging.INFO, logger="hope.supervisor")
    service.crash(-9)
    _tick(supervisor, clock, 0.5)
    assert service.stops == 1, "what the crashed process left behind is stopped"
    assert "Fake exited with code -9 (SIGKILL) after 200 s up; restarting it in 1 s" in caplog.text
    assert "the last words" in caplog.text
    _tick(supervisor, clock, 0.5)
    assert len(service.starts) == 1, "not before the wait is over"
    _tick(supervisor, clock, 0.5)
    assert service.starts[1:] == [201.5]
    assert "Fake is back" in caplog.text


def test_exits_in_a_row_double_the_wait_until_the_cap_and_a_stable_run_resets_it() -> None:
    clock = FakeClock()
    supervisor, (service,) = _started(clock)
    waits = []
    for _ in range(5):
        service.crash(1)
        _tick(supervisor, clock, 0.5)
        crashed = clock.now
        _tick(supervisor, clock, 20)
        waits.append(service.starts[-1] - crashed)
    assert waits == [1.0, 2.0, 4.0, 8.0, 8.0]

    _tick(supervisor, clock, BACKOFF.stable_after)
    service.crash(1)
    _tick(supervisor, clock, 0.5)
    crashed = clock.now
    _tick(supervisor, clock, 20)
    assert service.starts[-1] - crashed == 1.0


def test_a_failed_restart_is_logged_and_tried_again_later(caplog: pytest.LogCaptureFixture) -> None:
    clock = FakeClock()
    supervisor, (service,) = _started(clock)
    caplog.set_level(logging.INFO, logger="hope.supervisor")
    service.fail_starts = 2
    service.crash(-11)
    _tick(supervisor, clock, 30)
    assert [t - service.starts[1] for t in service.starts[1:]] == [0.0, 2.0, 6.0]  # waits of 1, then 2, then 4 s
    assert caplog.text.count("Fake did not restart (Fake exited with code 1); trying again in") == 2
    assert service.running()
    assert service.stops == 3, "each failed start is cleaned up too"


def test_services_are_supervised_independently() -> None:
    clock = FakeClock()
    supervisor, (orthanc, hope) = _started(clock, "Orthanc", "HOPE server")
    orthanc.crash()
    _tick(supervisor, clock, 5)
    assert len(orthanc.starts) == 2 and hope.starts == [0.0] and hope.stops == 0


def test_a_first_start_that_fails_is_not_supervised() -> None:
    clock = FakeClock()
    supervisor = Supervisor(BACKOFF, clock=clock)
    service = FakeService(clock)
    service.fail_starts = 1
    with pytest.raises(RuntimeError, match="exited with code 1"):
        supervisor.start(service, timeout=5)
    _tick(supervisor, clock, 20)
    assert service.starts == [0.0]


def test_a_real_process_that_is_killed_comes_back(tmp_path: Path) -> None:
    """A :class:`ManagedProcess` (a small HTTP server) under a supervisor with the real clock."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/"
    service = ManagedProcess("http.server", [sys.executable, "-m", "http.server", "--bind", "127.0.0.1", str(port)],
                             tmp_path / "http.log", url, cwd=tmp_path)
    supervisor = Supervisor(Backoff(first=0.2, cap=1.0))
    supervisor.start(service, timeout=30)
    try:
        assert service.process is not None
        first = service.process.pid
        service.process.kill()
        deadline = time.monotonic() + 30
        while not (service.running() and service.process.pid != first and http_ok(url)):
            assert time.monotonic() < deadline, "the killed process did not come back"
            supervisor.check()
            time.sleep(0.1)
    finally:
        service.stop()


def test_stopping_an_exited_process_kills_what_it_left_in_its_group(tmp_path: Path) -> None:
    """As a killed HOPE server leaves its training run behind."""
    service = ManagedProcess("shell", ["unused"], tmp_path / "log", "http://127.0.0.1:1/")
    service.process = subprocess.Popen(["sh", "-c", "sleep 120 & echo $!; exit 3"], stdout=subprocess.PIPE,
                                       text=True, start_new_session=True)
    assert service.process.stdout is not None
    leftover = psutil.Process(int(service.process.stdout.readline()))
    service.process.wait(timeout=10)
    assert service.exit_code() == 3 and not service.running()
    service.stop()
    _, alive = psutil.wait_procs([leftover], timeout=10)
    assert not alive, "the process group's leftover still runs"
