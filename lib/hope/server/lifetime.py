"""MONAI Label's task subprocesses (training, batch inference, scoring) die with the HOPE server that started them.

MONAI Label runs a training run as ``python -m monailabel.interfaces.utils.app -m train ...``, started by the
worker thread of its ``train`` executor (:mod:`monailabel.utils.async_tasks.utils`). Left alone, that process
outlives a server killed under it (SIGKILL, the OOM killer, a crash), and publishes a model minutes later.

So the first thing :class:`~hope.server.app.HopeApp` does in such a subprocess is :func:`bind_to_server`: Linux is
asked to send it SIGTERM when its parent dies (``prctl(PR_SET_PDEATHSIG)``). That signal fires when the *thread*
that started the child ends; here that is the executor's worker thread, which waits in ``_task_func`` until the
subprocess has ended, so it lives as long as the run or the server. SIGTERM's default action ends the process at
once: no Python code runs, and a model is published only when a run completes (:mod:`hope.trainers.publish`), so a
run that dies with its server publishes nothing.

A server that died before its subprocess could ask is caught too: the server writes its process id into the
environment its subprocesses inherit (:func:`mark_server`), and a subprocess whose parent is no longer that process
stops at once.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

logger = logging.getLogger(__name__)

#: The module MONAI Label runs its task subprocesses with (``python -m ...``).
TASK_MODULE = "monailabel.interfaces.utils.app"
#: The server's process id, in the environment of its task subprocesses.
SERVER_PID_VARIABLE = "HOPE_SERVER_PID"
#: ``PR_SET_PDEATHSIG`` of ``<linux/prctl.h>``.
PR_SET_PDEATHSIG = 1


def is_task_subprocess() -> bool:
    """Whether this process is one of MONAI Label's task subprocesses (``python -m`` :data:`TASK_MODULE`)."""
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    return spec is not None and spec.name == TASK_MODULE


def mark_server() -> None:
    """Record this process as the server, in the environment the task subprocesses it starts inherit."""
    os.environ[SERVER_PID_VARIABLE] = str(os.getpid())


def die_with_parent(expected_parent: int | None = None) -> None:
    """Have Linux end this process with SIGTERM when its parent process dies.

    ``expected_parent``: the process that started this one; if the parent is another process by now (the expected
    one died first, and this process was handed to another), raise ``SystemExit`` at once. Call it from the main
    thread. Elsewhere than Linux it only warns: there, a task subprocess can outlive its server.
    """
    if not sys.platform.startswith("linux"):
        logger.warning("not on Linux: this process will not stop when the HOPE server that started it dies")
        return
    # Default action, in case an ignored SIGTERM was inherited: that would make the parent-death signal a no-op.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG) failed ({os.strerror(errno)}): this process could outlive "
                             "its parent; check that the kernel allows prctl (seccomp)")
    if expected_parent is not None and os.getppid() != expected_parent:
        raise SystemExit(
            f"the process that started this one (pid {expected_parent}) is gone; stopping without publishing "
            "anything. Start the run again from the running HOPE server."
        )


def bind_to_server() -> None:
    """In a MONAI Label task subprocess: :func:`die_with_parent`, the parent being the recorded server; else nothing."""
    if not is_task_subprocess():
        return
    server = os.environ.get(SERVER_PID_VARIABLE, "")
    die_with_parent(int(server) if server.isdigit() else None)
