"""Network profiles of a task (``profile``, ``profiles``, ``HOPE_NETWORK_PROFILE``) and which model versions serve."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from hope.config import PROFILE_ENV, ConfigError, load_task, parse_task
from hope.errors import InvalidInputError
from hope.models.registry import ModelRegistry, ProfileStamp
from hope.networks import build_network


def _spine() -> dict:
    return yaml.safe_load((Path(__file__).resolve().parents[2] / "configs/tasks/spine_ct.yaml").read_text())


def test_cpu_profile_is_todays_network() -> None:
    task = parse_task(_spine())
    assert task.profile == "cpu"
    assert task.network.args["init_filters"] == 8 and task.network.pretrained == "apps/hope/pretrained/spine_ct.pt"
    assert task.preprocessing.spacing == (1.5, 1.5, 1.5) and task.preprocessing.patch_size == (64, 64, 64)
    assert task.training.dataset == "Dataset" and not task.inference.amp


@pytest.mark.parametrize(("requested", "cuda", "chosen"), [
    ("auto", False, "cpu"), ("auto", True, "gpu"), ("cpu", True, "cpu"), ("gpu", False, "gpu")])
def test_profile_follows_the_device_unless_set(requested: str, cuda: bool, chosen: str) -> None:
    data = {**_spine(), "profile": requested}
    assert parse_task(data, cuda_available=cuda).profile == chosen


def test_override_wins_over_the_yaml() -> None:
    data = {**_spine(), "profile": "gpu"}
    assert parse_task(data, override="cpu", cuda_available=True).profile == "cpu"


def test_gpu_profile_is_sized_for_a_gpu() -> None:
    task = parse_task(_spine(), cuda_available=True)
    assert task.profile == "gpu" and task.network.args["init_filters"] == 32 and task.network.pretrained is None
    assert task.preprocessing.spacing == (1.0, 1.0, 1.0) and task.preprocessing.patch_size == (128, 128, 128)
    assert task.training.amp and task.training.dataset == "CacheDataset" and task.inference.amp
    assert task.preprocessing.percentiles == (0.5, 99.5)  # shared settings stay
    assert task.training.bounds == parse_task(_spine()).training.bounds
    assert task.active_profile.signature != task.profiles["cpu"].signature


def test_with_profile_switches_every_section() -> None:
    cpu = parse_task(_spine())
    gpu = cpu.with_profile("gpu")
    assert gpu == parse_task(_spine(), cuda_available=True)
    assert gpu.with_profile("cpu") == cpu
    with pytest.raises(ConfigError, match="no network profile 'tpu'"):
        cpu.with_profile("tpu")


@pytest.mark.parametrize(("change", "message"), [
    ({"profile": "fast"}, r"profile must be one of auto, cpu, gpu, got 'fast'"),
    ({"profiles": {"tpu": {}}}, r"profiles: expected a mapping with the keys cpu and/or gpu"),
    ({"profiles": {"gpu": {"labels": {}}}}, r"profiles.gpu: unknown section"),
    ({"profiles": {"gpu": {"preprocessing": {"intensity_range": [0, 1]}}}}, r"may not set \['intensity_range'\]"),
    ({"profiles": {"gpu": {"training": {"dataset": "SmartCacheDataset"}}}}, r"dataset: expected one of"),
])
def test_bad_profile_settings_are_config_errors(change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        parse_task({**_spine(), **change}, cuda_available=True)


def test_environment_variable_is_read_once_at_load(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(PROFILE_ENV, "gpu")
    assert load_task("spine_ct").profile == "gpu"
    monkeypatch.setenv(PROFILE_ENV, "huge")
    with pytest.raises(ConfigError, match=r"\$HOPE_NETWORK_PROFILE: network profile must be one of"):
        load_task("spine_ct")


def test_both_profiles_build() -> None:
    task = parse_task(_spine())
    for name in ("cpu", "gpu"):
        net = build_network(task.with_profile(name))
        assert type(net).__name__ == "SegResNet"


def _add(registry: ModelRegistry, tmp_path: Path, content: bytes, dice: float) -> str:
    weights = tmp_path / "w.pt"
    weights.write_bytes(content)
    return registry.add(weights, started_by="t", metrics={"val_mean_dice": dice}, training_data=[], params={}).version


def test_versions_serve_only_under_a_profile_with_their_signature(tmp_path: Path) -> None:
    cpu, gpu = parse_task(_spine()).profiles.values()
    models = tmp_path / "models"
    on_cpu = ModelRegistry("spine_ct", models, ProfileStamp(cpu.name, cpu.signature))
    v1 = _add(on_cpu, tmp_path, b"cpu weights", 0.5)
    on_gpu = ModelRegistry("spine_ct", models, ProfileStamp(gpu.name, gpu.signature))
    assert on_gpu.best() is None  # the cpu version does not serve on the gpu profile
    v2 = _add(on_gpu, tmp_path, b"gpu weights", 0.9)
    assert on_gpu.get(v2).profile == "gpu" and on_gpu.get(v2).signature == gpu.signature
    assert on_gpu.served_version() == v2 and on_gpu.served_path.read_bytes() == b"gpu weights"
    with pytest.raises(InvalidInputError, match="trained with the cpu network profile"):
        on_gpu.pin(v1)
    on_cpu.apply()  # back on the cpu profile: its own version serves, though the gpu one scores higher
    assert on_cpu.served_version() == v1 and on_cpu.served_path.read_bytes() == b"cpu weights"
    assert [on_cpu.servable(v) for v in on_cpu.versions()] == [True, False]


def test_a_pinned_version_of_another_profile_gives_way(tmp_path: Path) -> None:
    cpu, gpu = parse_task(_spine()).profiles.values()
    on_cpu = ModelRegistry("spine_ct", tmp_path, ProfileStamp(cpu.name, cpu.signature))
    v1 = _add(on_cpu, tmp_path, b"a", 0.1)
    on_gpu = ModelRegistry("spine_ct", tmp_path, ProfileStamp(gpu.name, gpu.signature))
    v2 = _add(on_gpu, tmp_path, b"b", 0.2)
    on_gpu.pin(v2)
    assert on_cpu.serving() is not None and on_cpu.serving().version == v1


def test_versions_older_than_profiles_count_as_cpu(tmp_path: Path) -> None:
    legacy = ModelRegistry("spine_ct", tmp_path)  # no stamp: as before profiles existed
    v1 = _add(legacy, tmp_path, b"old", 0.3)
    cpu, gpu = parse_task(_spine()).profiles.values()
    assert ModelRegistry("spine_ct", tmp_path, ProfileStamp(cpu.name, cpu.signature)).best().version == v1
    assert ModelRegistry("spine_ct", tmp_path, ProfileStamp(gpu.name, gpu.signature)).best() is None
