"""Atomic file replacement: a reader of the destination sees the old file or the new one, never a partial one.

Every writer goes through :func:`_replacing`: the content is written to a hidden temporary file in the destination's
folder (so the final :func:`os.replace` never crosses file systems), flushed and fsynced, then renamed over the
destination, and the folder is fsynced so that the rename itself survives a crash. On any failure the temporary
file is removed and the destination is left as it was. Missing parent folders are created.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO


@contextmanager
def _replacing(dest: Path) -> Iterator[BinaryIO]:
    """A binary file to write ``dest``'s new content into; it replaces ``dest`` when the block ends normally."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:12]}.tmp"
    # os.open with 0o666 lets the umask apply, as for a plain open(); tempfile.mkstemp would force 0o600.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_folder(dest.parent)


def _fsync_folder(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_bytes(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` atomically."""
    with _replacing(path) as out:
        out.write(data)


def write_text(path: Path, text: str, encoding: str = "utf-8") -> None:
    """Replace ``path`` with ``text`` atomically."""
    write_bytes(path, text.encode(encoding))


def write_json(
    path: Path, data: Any, *, indent: int | None = 2, default: Callable[[Any], Any] | None = None
) -> None:
    """Replace ``path`` with ``data`` as JSON atomically (``indent`` and ``default`` as for :func:`json.dumps`).

    ``data`` is serialised before the file is touched, so a value JSON cannot encode leaves ``path`` unchanged.
    """
    write_text(path, json.dumps(data, indent=indent, default=default))


def copy(src: Path, dest: Path) -> None:
    """Copy the content of ``src`` over ``dest`` atomically."""
    with src.open("rb") as source, _replacing(dest) as out:
        shutil.copyfileobj(source, out, length=1 << 20)


def move(src: Path, dest: Path) -> None:
    """Move ``src`` over ``dest`` atomically: a rename on one file system, else an atomic copy, then ``src`` goes."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.replace(src, dest)
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
        copy(src, dest)
        src.unlink()
