"""Model versions: a pin serves the pinned version's exact weights, whatever happened to the served file."""

from __future__ import annotations

from pathlib import Path

from hope.models.registry import ModelRegistry


def _weights(tmp_path: Path, name: str, content: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(content)
    return path


def test_pin_restores_a_served_file_replaced_behind_the_registry(tmp_path: Path) -> None:
    """``PUT /model/{model}`` used to replace the served weights while the registry still named the old version;
    pinning that version then did not restore the file."""
    registry = ModelRegistry("spine_ct", tmp_path / "models")
    registry.add(_weights(tmp_path, "a.pt", b"version one"), started_by="t", metrics={}, training_data=[], params={})
    registry.served_path.write_bytes(b"replaced behind the registry's back")
    registry.pin("v0001")
    assert registry.served_path.read_bytes() == b"version one"
    assert registry.served_version() == "v0001"


def test_apply_keeps_an_intact_served_file(tmp_path: Path) -> None:
    registry = ModelRegistry("spine_ct", tmp_path / "models")
    registry.add(_weights(tmp_path, "a.pt", b"one"), started_by="t", metrics={}, training_data=[], params={})
    before = registry.served_path.stat().st_mtime_ns
    registry.apply()
    assert registry.served_path.stat().st_mtime_ns == before
