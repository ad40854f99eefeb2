"""Task subprocesses die with their server: the parent-death signal, the late-start check, and who is bound."""

from __future__ import annotations

import importlib.machinery
import subprocess
import sys
import textwrap
import time
import types

import psutil
import pytest

from hope.server import lifetime

#: A child that binds its life to its parent's, says so, then waits (a stand-in for a training run).
CHILD = textwrap.dedent(
    """
    import os, time
    from hope.server.lifetime import die_with_parent
    die_with_parent(os.getppid())
    print("bound", flush=True)
    time.sleep(120)
    """
)


def _parent(ignore_sigterm: bool) -> str:
    """A parent that starts :data:`CHILD`, prints its pid and waits; it may pass an ignored SIGTERM on to it."""
    return textwrap.dedent(
        f"""
        import signal, subprocess, sys, time
        if {ignore_sigterm}:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # inherited by the child across exec
        child = subprocess.Popen([sys.executable, "-c", {CHILD!r}])
        print(child.pid, flush=True)
        time.sleep(120)
        """
    )


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE  # dead, not yet reaped by its new parent
    except psutil.NoSuchProcess:
        return True


@pytest.mark.parametrize("ignore_sigterm", [False, True], ids=["default", "inherited-ignored-sigterm"])
def test_a_bound_child_dies_when_its_parent_is_killed(ignore_sigterm: bool) -> None:
    parent = subprocess.Popen([sys.executable, "-c", _parent(ignore_sigterm)], stdout=subprocess.PIPE, text=True)
    assert parent.stdout is not None
    child_pid = int(parent.stdout.readline())
    try:
        assert parent.stdout.readline().strip() == "bound"
        parent.kill()
        parent.wait(timeout=10)
        deadline = time.monotonic() + 10
        while not _gone(child_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert _gone(child_pid), "the child outlived its parent"
    finally:
        if not _gone(child_pid):
            psutil.Process(child_pid).kill()
        parent.kill()


def test_a_child_whose_parent_died_before_it_bound_stops_at_once() -> None:
    """The parent it expects is not its parent any more: it exits, saying why."""
    code = "from hope.server.lifetime import die_with_parent; die_with_parent(1); print('still here')"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 1
    assert "still here" not in result.stdout
    assert "(pid 1) is gone" in result.stderr and "publishing" in result.stderr


def test_only_monailabel_task_subprocesses_are_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    bound: list[int | None] = []
    monkeypatch.setattr(lifetime, "die_with_parent", bound.append)
    monkeypatch.setenv(lifetime.SERVER_PID_VARIABLE, "4321")

    lifetime.bind_to_server()  # pytest is no task subprocess
    assert not lifetime.is_task_subprocess() and bound == []

    main = types.ModuleType("__main__")
    main.__spec__ = importlib.machinery.ModuleSpec(lifetime.TASK_MODULE, None)
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert lifetime.is_task_subprocess()
    lifetime.bind_to_server()
    assert bound == [4321]

    monkeypatch.delenv(lifetime.SERVER_PID_VARIABLE)  # started by hand, not by a HOPE server: parent-death only
    lifetime.bind_to_server()
    assert bound == [4321, None]


def test_the_server_records_its_pid_where_its_subprocesses_inherit_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(lifetime.SERVER_PID_VARIABLE, raising=False)
    lifetime.mark_server()
    code = f"import os; print(os.environ['{lifetime.SERVER_PID_VARIABLE}'], os.getppid())"
    server_pid, parent_pid = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                                            timeout=60).stdout.split()
    assert server_pid == parent_pid
