"""Model versions: a short content hash of the served weights file, cached by modification time."""

from __future__ import annotations

import hashlib
from pathlib import Path

_cache: dict[Path, tuple[float, int, str]] = {}


def model_version(path: Path) -> str | None:
    """The first 12 hex digits of the SHA-256 of ``path``, or ``None`` when it does not exist."""
    try:
        stat = path.stat()
    except FileNotFoundError:
        return None
    cached = _cache.get(path)
    if cached and cached[0] == stat.st_mtime and cached[1] == stat.st_size:
        return cached[2]
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:12]
    _cache[path] = (stat.st_mtime, stat.st_size, digest)
    return digest
