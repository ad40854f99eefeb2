"""Model versions: a pin serves the pinned version's exact weights, whatever happened to the served file; a version
serves unpinned only when its promotion decision (or the lack of one) lets it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hope.models.registry import FrozenSetRef, ModelRegistry, Promotion


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


def _decision(promoted: bool) -> Promotion:
    return Promotion(promoted=promoted, reason="as the test decides", frozen_set=FrozenSetRef(cases=2, fingerprint="f"))


def test_versions_kept_before_decisions_existed_load_and_count_as_promoted(tmp_path: Path) -> None:
    """A meta.json written before versions recorded their run and decision still loads; such a version serves."""
    registry = ModelRegistry("spine_ct", tmp_path / "models")
    old = registry.root / "v0001"
    old.mkdir()
    (old / "model.pt").write_bytes(b"old weights")
    (old / "meta.json").write_text(json.dumps({"version": "v0001", "created": "2025-01-01T00:00:00+00:00",
                                               "started_by": "t", "metrics": {"train_mean_dice": 0.9}}))
    loaded = registry.get("v0001")
    assert loaded.promotion is None and loaded.promoted and loaded.run == "" and loaded.score is None
    registry.apply()
    assert registry.served_version() == "v0001"


def test_a_refused_version_is_kept_and_listed_with_its_decision_but_does_not_serve(tmp_path: Path) -> None:
    registry = ModelRegistry("spine_ct", tmp_path / "models")
    registry.add(_weights(tmp_path, "a.pt", b"one"), started_by="t", metrics={}, training_data=[], params={})
    refused = registry.add(_weights(tmp_path, "b.pt", b"two"), started_by="t", metrics={}, training_data=[],
                           params={}, run="run-2", decide=lambda version, weights: _decision(False))
    assert registry.served_version() == "v0001" and registry.served_path.read_bytes() == b"one"
    listed = registry.versions()[-1]
    assert listed.version == refused.version == "v0002" and listed.run == "run-2"
    assert listed.promotion == _decision(False) and not listed.promoted
    promoted = registry.add(_weights(tmp_path, "c.pt", b"three"), started_by="t", metrics={}, training_data=[],
                            params={}, decide=lambda version, weights: _decision(True))
    assert registry.served_version() == promoted.version == "v0003"


def test_a_failing_decision_keeps_nothing(tmp_path: Path) -> None:
    registry = ModelRegistry("spine_ct", tmp_path / "models")
    registry.add(_weights(tmp_path, "a.pt", b"one"), started_by="t", metrics={}, training_data=[], params={})

    def fails(version: str, weights: Path) -> Promotion:
        raise RuntimeError("scoring failed")

    with pytest.raises(RuntimeError, match="scoring failed"):
        registry.add(_weights(tmp_path, "b.pt", b"two"), started_by="t", metrics={}, training_data=[], params={},
                     decide=fails)
    assert [v.version for v in registry.versions()] == ["v0001"]
    assert sorted(p.name for p in registry.root.iterdir()) == ["served_version", "v0001"]  # no half-kept version
    assert registry.served_version() == "v0001"
