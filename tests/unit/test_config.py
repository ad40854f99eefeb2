"""Task and server configuration parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hope.config import ConfigError, load_server_settings, load_task, parse_task
from hope.networks import build_network


def _spine() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[2] / "configs/tasks/spine_ct.yaml").read_text())


def test_spine_ct_task_loads_with_its_labels() -> None:
    task = load_task("spine_ct")
    assert list(task.labels) == ["C1", "C2", "C3", "C4", "C5", "C6", "C7", "spinal_canal", "tumor"]
    assert task.num_classes == 10
    assert task.preprocessing.patch_size == (64, 64, 64)


def test_server_settings_list_all_image_modalities() -> None:
    settings = load_server_settings()
    assert settings.tasks == ("spine_ct",)
    assert {"CT", "MR", "CR", "DX"} <= set(settings.datastore.modalities)
    assert "SEG" not in settings.datastore.modalities


def test_label_values_must_be_contiguous() -> None:
    data = _spine()
    data["labels"]["tumor"] = 12
    with pytest.raises(ConfigError, match="without gaps"):
        parse_task(data)


def test_missing_section_is_named() -> None:
    data = _spine()
    del data["network"]
    with pytest.raises(ConfigError, match="'network'"):
        parse_task(data)


def test_task_name_must_match_file(tmp_path: Path) -> None:
    (tmp_path / "tasks").mkdir()
    data = _spine()
    (tmp_path / "tasks" / "other.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="make them agree"):
        load_task("other", tmp_path)


def test_network_is_built_from_config() -> None:
    net = build_network(load_task("spine_ct"))
    assert type(net).__name__ == "SegResNet"


def test_unknown_network_is_a_config_error() -> None:
    data = _spine()
    data["network"]["name"] = "NoSuchNet"
    with pytest.raises(ConfigError, match="unknown network"):
        build_network(parse_task(data))


def test_lesion_only_labels_are_not_training_cases() -> None:
    """spine_ct trains on labels that show its structures, not on lesion-only labels or foreign ones."""
    task = load_task("spine_ct")
    assert task.training.lesion_only_labels == ("tumor",)
    assert task.trains_on(["C2", "tumor"]) and task.trains_on(["spinal_canal"])
    assert not task.trains_on(["tumor"]) and not task.trains_on([]) and not task.trains_on(["liver"])
