"""HOPE's :class:`InferencePool`: admission, the overload reason, the concurrency cap, and its counts."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from hope.errors import OverloadedError
from hope.server.workers import InferencePool, PoolLoad
from tests.integration.helpers import poll

TIMEOUT = 10.0


class Blocked:
    """Calls that block until released, counting how many run at once."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.lock = threading.Lock()
        self.running = 0
        self.most = 0

    def __call__(self) -> str:
        with self.lock:
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            assert self.release.wait(TIMEOUT), "the test never released the call"
            return "done"
        finally:
            with self.lock:
                self.running -= 1


@pytest.fixture
def blocked() -> Iterator[Blocked]:
    calls = Blocked()
    yield calls
    calls.release.set()


def _in_threads(pool: InferencePool, call: Callable[[], str], count: int
                ) -> tuple[list[threading.Thread], list[object]]:
    results: list[object] = []

    def run() -> None:
        try:
            results.append(pool.run(call))
        except Exception as error:  # noqa: BLE001 - the test inspects what each call ended with
            results.append(error)

    threads = [threading.Thread(target=run) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, results


def _wait_for(pool: InferencePool, load: PoolLoad) -> None:
    poll(lambda: pool.load() == load, TIMEOUT, f"the pool to reach {load}", interval=0.01)


def test_runs_at_most_workers_at_once_and_refuses_beyond_the_queue(blocked: Blocked) -> None:
    pool = InferencePool(workers=2, queue=1, retry_after_s=7)
    threads, results = _in_threads(pool, blocked, 3)
    _wait_for(pool, PoolLoad(running=2, waiting=1))
    with pytest.raises(OverloadedError) as refused:
        pool.run(blocked)
    assert refused.value.retry_after_s == 7
    for words in ("2 inference worker(s)", "1 more request(s) are waiting", "http.infer_workers",
                  "http.infer_queue", "try again in 7 s"):
        assert words in refused.value.reason
    blocked.release.set()
    for thread in threads:
        thread.join(TIMEOUT)
    assert results == ["done"] * 3 and blocked.most == 2
    assert pool.load() == PoolLoad(running=0, waiting=0)


def test_a_queue_of_zero_admits_only_the_workers(blocked: Blocked) -> None:
    pool = InferencePool(workers=1, queue=0, retry_after_s=1)
    threads, _ = _in_threads(pool, blocked, 1)
    _wait_for(pool, PoolLoad(running=1, waiting=0))
    with pytest.raises(OverloadedError):
        pool.run(lambda: "never")
    blocked.release.set()
    threads[0].join(TIMEOUT)
    assert pool.run(lambda: "again") == "again"


def test_a_failing_call_frees_its_place() -> None:
    pool = InferencePool(workers=1, queue=0, retry_after_s=1)

    def fail() -> str:
        raise RuntimeError("inference failed")

    for _ in range(3):
        with pytest.raises(RuntimeError, match="inference failed"):
            pool.run(fail)
        assert pool.load() == PoolLoad(running=0, waiting=0)
    assert pool.run(lambda: "still serving") == "still serving"


def test_a_refused_call_changes_no_count(blocked: Blocked) -> None:
    pool = InferencePool(workers=1, queue=1, retry_after_s=1)
    threads, _ = _in_threads(pool, blocked, 2)
    _wait_for(pool, PoolLoad(running=1, waiting=1))
    for _ in range(5):
        with pytest.raises(OverloadedError):
            pool.run(blocked)
    assert pool.load() == PoolLoad(running=1, waiting=1)
    blocked.release.set()
    for thread in threads:
        thread.join(TIMEOUT)
    assert pool.load() == PoolLoad(running=0, waiting=0)


@pytest.mark.parametrize(("workers", "queue"), [(0, 1), (1, -1)])
def test_a_pool_needs_a_worker(workers: int, queue: int) -> None:
    with pytest.raises(ValueError, match="workers >= 1 and queue >= 0"):
        InferencePool(workers, queue, 1)
