"""Task and server configuration parsing."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hope.config import ConfigError, load_server_settings, load_task, parse_task
from hope.fewshot.config import load_fewshot_task, parse_fewshot_task
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
    assert settings.tasks == ("spine_ct", "spine_mr")
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


def _server() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[2] / "configs/server.yaml").read_text())


def test_server_sections_are_typed() -> None:
    """Retraining, sync, active learning and demo settings are parsed once, with the values of server.yaml."""
    settings = load_server_settings()
    assert settings.retrain.enabled is True and settings.retrain.after_new_final_labels == 5
    assert settings.sync.model_poll_seconds == 2.0
    assert settings.activelearning.lease_minutes == 30.0 and settings.activelearning.background_scoring
    assert [t.tumor_type for t in settings.demo.fewshot] == ["chordoma", "aneurysmal_bone_cyst", "hemangioma"]
    assert settings.demo.cases == 6 and settings.demo.fewshot[0].labelled == 3


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("retrain", "after_new_final_labels", 0, "retrain.after_new_final_labels: must lie in"),
        ("retrain", "enabled", "yes", "retrain.enabled: expected true or false"),
        ("sync", "model_poll_seconds", "soon", "sync.model_poll_seconds: expected a float"),
        ("activelearning", "lease_minutes", -1, "activelearning.lease_minutes"),
        ("datastore", "timeout_seconds", 0, "datastore.timeout_seconds"),
        ("datastore", "stable_wait_seconds", -1, "datastore.stable_wait_seconds"),
    ],
)
def test_bad_server_setting_names_file_and_key(tmp_path: Path, section: str, key: str, value: object,
                                               message: str) -> None:
    data = _server()
    data[section][key] = value
    (tmp_path / "server.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message) as raised:
        load_server_settings(tmp_path)
    assert str(tmp_path / "server.yaml") in str(raised.value)


def test_orthanc_access_is_typed_and_closed_by_default() -> None:
    """Orthanc answers this machine only, and takes DICOM from the listed senders only (DCMTK's storescu here)."""
    access = load_server_settings().orthanc
    assert access.http_remote_access is False
    assert [(s.aet, s.host) for s in access.dicom_senders] == [("STORESCU", "127.0.0.1")]


@pytest.mark.parametrize(
    ("orthanc", "message"),
    [
        ({"http_remote_access": "no"}, r"orthanc.http_remote_access: expected true or false"),
        ({"dicom_senders": {"aet": "CT"}}, r"orthanc.dicom_senders: expected a list"),
        ({"dicom_senders": ["CT@10.0.0.5"]}, r"orthanc.dicom_senders\[0\]: expected a mapping"),
        ({"dicom_senders": [{"host": "10.0.0.5"}]}, r"orthanc.dicom_senders\[0\].*aet"),
        ({"dicom_senders": [{"aet": "A" * 17, "host": "10.0.0.5"}]}, r"dicom_senders\[0\].aet: expected an AE title"),
        ({"dicom_senders": [{"aet": "A\\B", "host": "10.0.0.5"}]}, r"dicom_senders\[0\].aet"),
        ({"dicom_senders": [{"aet": "  ", "host": "10.0.0.5"}]}, r"dicom_senders\[0\].aet"),
        ({"dicom_senders": [{"aet": "CT", "host": "ct.example"}]}, r"dicom_senders\[0\].host: expected the IP"),
    ],
)
def test_bad_orthanc_access_names_file_and_key(tmp_path: Path, orthanc: dict, message: str) -> None:
    data = _server()
    data["orthanc"] = orthanc
    (tmp_path / "server.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=message) as raised:
        load_server_settings(tmp_path)
    assert str(tmp_path / "server.yaml") in str(raised.value)


def test_unknown_server_section_is_an_error(tmp_path: Path) -> None:
    data = _server()
    data["retrian"] = {"enabled": False}
    (tmp_path / "server.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="unknown section.*retrian"):
        load_server_settings(tmp_path)


def test_fewshot_inference_and_network_are_typed() -> None:
    seg, grade = load_fewshot_task("fewshot_tumor"), load_fewshot_task("tumor_grade")
    assert seg.inference.threshold == 0.5 and seg.inference.max_adapt_steps == 10
    assert seg.network.encoder["out_channels"] == 64 and seg.network.prototypes["scale"] == 20.0
    assert grade.inference.segment_with == "fewshot_tumor" and grade.inference.top_types == 3


def test_fewshot_unknown_inference_key_is_named(tmp_path: Path) -> None:
    data = yaml.safe_load((Path(__file__).resolve().parents[2] / "configs/tasks/fewshot_tumor.yaml").read_text())
    data["inference"]["treshold"] = 0.4
    with pytest.raises(ConfigError, match=r"inference: unknown key\(s\) \['treshold'\]"):
        parse_fewshot_task(data, "fewshot_tumor.yaml")


def test_interactive_section_is_parsed_with_the_task() -> None:
    interactive = load_task("spine_ct").interactive
    assert interactive is not None and interactive.structure == "tumor" and interactive.foreground_scribble == 11


def test_largest_component_names_task_labels() -> None:
    assert "cord" in load_task("spine_mr").inference.largest_component
    assert "tumor" not in load_task("spine_mr").inference.largest_component  # a tumour may be several lesions
    data = _spine()
    data.setdefault("inference", {})["largest_component"] = ["C1", "pancreas"]
    with pytest.raises(ConfigError, match=r"largest_component: \['pancreas'\] are not labels"):
        parse_task(data)
