"""Atomic file replacement (:mod:`hope.fileio`): readers see the old content or the new, and failures leave no trace."""

from __future__ import annotations

import errno
import json
import os
import threading
from datetime import datetime
from pathlib import Path

import pytest

from hope import fileio


def _names(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_write_bytes_creates_the_folder_and_replaces_the_file(tmp_path: Path) -> None:
    dest = tmp_path / "a" / "b" / "state.bin"
    fileio.write_bytes(dest, b"first")
    fileio.write_bytes(dest, b"second")
    assert dest.read_bytes() == b"second"
    assert _names(dest.parent) == {"state.bin"}  # no temporary file left behind


def test_a_new_file_gets_the_permissions_of_a_plain_write(tmp_path: Path) -> None:
    """The umask applies, as for ``Path.write_text`` (``tempfile.mkstemp`` would force 0600)."""
    plain, atomic = tmp_path / "plain.txt", tmp_path / "atomic.txt"
    plain.write_text("x")
    fileio.write_text(atomic, "x")
    assert atomic.stat().st_mode == plain.stat().st_mode


def test_write_text_encodes_utf8(tmp_path: Path) -> None:
    dest = tmp_path / "note.txt"
    fileio.write_text(dest, "vertèbre C2 ✓")
    assert dest.read_bytes() == "vertèbre C2 ✓".encode()


def test_write_json_round_trips_with_indent_and_default(tmp_path: Path) -> None:
    dest = tmp_path / "stats.json"
    when = datetime(2024, 5, 6, 7, 8, 9)
    fileio.write_json(dest, {"when": when, "dice": [0.5]}, indent=1, default=str)
    assert json.loads(dest.read_text()) == {"when": str(when), "dice": [0.5]}
    assert dest.read_text().startswith('{\n "when"')
    fileio.write_json(dest, {"a": 1}, indent=None)
    assert dest.read_text() == '{"a": 1}'


def test_unencodable_json_leaves_the_old_file(tmp_path: Path) -> None:
    dest = tmp_path / "state.json"
    fileio.write_json(dest, {"ok": True})
    with pytest.raises(TypeError):
        fileio.write_json(dest, {"bad": object()})
    assert json.loads(dest.read_text()) == {"ok": True}
    assert _names(tmp_path) == {"state.json"}


def test_a_failure_while_writing_removes_the_temporary_file(tmp_path: Path) -> None:
    dest = tmp_path / "state.bin"
    fileio.write_bytes(dest, b"old")
    with pytest.raises(TypeError):
        fileio.write_bytes(dest, "not bytes")  # type: ignore[arg-type]  # fails inside the write
    assert dest.read_bytes() == b"old"
    assert _names(tmp_path) == {"state.bin"}


def test_a_failed_replace_removes_the_temporary_file(tmp_path: Path) -> None:
    """``os.replace`` cannot put a file over a non-empty folder: the error surfaces and nothing is left."""
    dest = tmp_path / "taken"
    dest.mkdir()
    (dest / "inside").write_text("keep")
    with pytest.raises(OSError):
        fileio.write_text(dest, "new")
    assert _names(tmp_path) == {"taken"}
    assert (dest / "inside").read_text() == "keep"


def test_copy_replaces_dest_and_keeps_src(tmp_path: Path) -> None:
    src, dest = tmp_path / "src.pt", tmp_path / "served" / "model.pt"
    src.write_bytes(os.urandom(3 << 20))  # larger than one copy chunk
    fileio.write_bytes(dest, b"old weights")
    fileio.copy(src, dest)
    assert dest.read_bytes() == src.read_bytes()
    assert _names(dest.parent) == {"model.pt"}


def test_copy_of_a_missing_file_leaves_dest(tmp_path: Path) -> None:
    dest = tmp_path / "model.pt"
    dest.write_bytes(b"old")
    with pytest.raises(FileNotFoundError):
        fileio.copy(tmp_path / "missing.pt", dest)
    assert dest.read_bytes() == b"old"
    assert _names(tmp_path) == {"model.pt"}


def test_move_on_one_file_system_renames(tmp_path: Path) -> None:
    src, dest = tmp_path / "out.nii.gz", tmp_path / "task" / "1.2.3.v0001.nii.gz"
    src.write_bytes(b"label")
    inode = src.stat().st_ino
    fileio.move(src, dest)
    assert not src.exists()
    assert dest.read_bytes() == b"label"
    assert dest.stat().st_ino == inode  # a rename, not a copy


def test_move_across_file_systems_copies_atomically_then_removes_src(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, dest = tmp_path / "out.nii.gz", tmp_path / "task" / "s.nii.gz"
    src.write_bytes(b"label")
    real_replace = os.replace

    def replace(a: str | Path, b: str | Path) -> None:
        if Path(a) == src:  # the direct rename, as if /tmp were another file system
            raise OSError(errno.EXDEV, "Invalid cross-device link")
        real_replace(a, b)

    monkeypatch.setattr(os, "replace", replace)
    fileio.move(src, dest)
    assert not src.exists()
    assert dest.read_bytes() == b"label"
    assert _names(dest.parent) == {"s.nii.gz"}


def test_move_reraises_other_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        fileio.move(tmp_path / "missing", tmp_path / "dest")
    assert not (tmp_path / "dest").exists()


def test_a_concurrent_reader_never_sees_a_partial_file(tmp_path: Path) -> None:
    dest = tmp_path / "big.bin"
    contents = [b"a" * (1 << 18), b"b" * (1 << 18)]
    fileio.write_bytes(dest, contents[0])
    seen: set[bytes] = set()
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            seen.add(dest.read_bytes())

    reader = threading.Thread(target=read)
    reader.start()
    try:
        for i in range(100):
            fileio.write_bytes(dest, contents[i % 2])
    finally:
        done.set()
        reader.join()
    assert seen <= set(contents)
    assert seen  # the reader ran
