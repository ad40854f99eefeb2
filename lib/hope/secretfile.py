"""Secret files: generated at first use, readable by their owner only (0600), refused when others may read them.

HOPE keeps two: the key HOPE's Orthanc plugin signs its events with (:mod:`hope.sync.signing`) and the HTTP
credentials between HOPE and Orthanc (:mod:`hope.processes.orthanc`). Both live in a data folder, never in the
repository. Standard library only: Orthanc's embedded Python reads the event key through this module.
"""

from __future__ import annotations

import contextlib
import os
import stat
import uuid
from collections.abc import Callable
from pathlib import Path

#: Read and write for the owner, nothing for anyone else.
OWNER_ONLY = 0o600


class SecretFileError(Exception):
    """A secret file cannot be used: other users may read it, it cannot be read, or its content is wrong."""


def read_or_create(path: Path, generate: Callable[[], bytes]) -> bytes:
    """The content of the secret file ``path``; on first use, ``generate()`` is written there first, mode 0600.

    The file is created atomically (written to a temporary file in the same folder, then hard-linked to ``path``,
    which fails if it exists), so that concurrent first starts agree on one secret and no reader sees a partial
    file. A missing folder is created, readable by the owner only.

    Raises:
        SecretFileError: other users may read or write ``path``, or it cannot be read.
    """
    if not path.exists():
        _create(path, generate())
    try:
        mode = stat.S_IMODE(path.stat().st_mode)
        if mode & 0o077:
            raise SecretFileError(
                f"{path} holds a secret but other users may read or write it (mode {mode:04o}): "
                f"run 'chmod 600 {path}', or delete it to have a new one generated at the next start"
            )
        return path.read_bytes()
    except OSError as exc:
        raise SecretFileError(f"cannot read the secret file {path}: {exc}") from exc


def _create(path: Path, content: bytes) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{uuid.uuid4().hex[:12]}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, OWNER_ONLY)
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(content)
            out.flush()
            os.fsync(out.fileno())
        with contextlib.suppress(FileExistsError):  # another process created it first: theirs is the secret
            os.link(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
