"""Typed configuration: task definitions (``configs/tasks/*.yaml``) and server settings (``configs/server.yaml``).

Everything that varies between tasks or deployments (labels, spacing, networks, thresholds, ports) lives in
YAML under ``configs/``; this module parses and validates it once, into frozen dataclasses, so the rest of the
code never reads raw strings.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG_DIR = REPO_ROOT / "configs"


class _HasName(Protocol):
    name: str


Named = TypeVar("Named", bound=_HasName)


class ConfigError(ValueError):
    """A configuration file is missing, malformed or inconsistent; the message says which and how to fix it."""


@dataclass(frozen=True)
class Preprocessing:
    """How images are resampled and scaled before they reach a network."""

    spacing: tuple[float, float, float]
    intensity_range: tuple[float, float]
    patch_size: tuple[int, int, int]


@dataclass(frozen=True)
class NetworkSpec:
    """A MONAI network class name (``monai.networks.nets``) and its keyword arguments."""

    name: str
    args: dict[str, Any]
    pretrained: str | None = None  # repository-relative path of shipped weights, made by scripts/pretrain_phantoms.py


@dataclass(frozen=True)
class TrainingDefaults:
    """Default training hyper-parameters; requests may override them."""

    max_epochs: int
    learning_rate: float
    val_split: float
    train_batch_size: int
    samples_per_image: int
    amp: bool
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    lesion_only_labels: tuple[str, ...] = ()  # a final label with only these structures is not trained on


@dataclass(frozen=True)
class InferenceSettings:
    """Sliding-window inference settings."""

    sw_batch_size: int
    overlap: float


@dataclass(frozen=True)
class TaskDefinition:
    """One annotation task: its labels, preprocessing, network and training defaults."""

    name: str
    description: str
    modalities: tuple[str, ...]
    labels: dict[str, int]
    preprocessing: Preprocessing
    network: NetworkSpec
    training: TrainingDefaults
    inference: InferenceSettings

    def trains_on(self, structures: Iterable[str]) -> bool:
        """Whether a final label holding ``structures`` (label names) is a training case of this task.

        A label with none of the task's structures, or only its ``lesion_only_labels`` (a lesion drawn for the
        few-shot tasks, whose other structures were never annotated, not absent), is not.
        """
        present = set(structures) & set(self.labels)
        return bool(present - set(self.training.lesion_only_labels))

    @property
    def num_classes(self) -> int:
        """Number of network output channels: background plus one per label."""
        return len(self.labels) + 1


@dataclass(frozen=True)
class DatastoreSettings:
    """How HOPE talks to the DICOMweb store."""

    modalities: tuple[str, ...]
    list_cache_seconds: float
    timeout_seconds: float


@dataclass(frozen=True)
class ServerSettings:
    """Server-wide settings: which tasks are served and how the store is reached."""

    tasks: tuple[str, ...]
    datastore: DatastoreSettings
    extra: dict[str, Any] = field(default_factory=dict)
    fewshot_tasks: tuple[str, ...] = ()


def config_dir() -> Path:
    """The configuration folder: ``$HOPE_CONFIG_DIR`` or the repository's ``configs/``."""
    return Path(os.environ.get("HOPE_CONFIG_DIR", DEFAULT_CONFIG_DIR))


def read_yaml(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path``; a :class:`ConfigError` saying what to fix when it is missing or not a mapping."""
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist; create it or set HOPE_CONFIG_DIR")
    with path.open() as f:
        data = yaml.safe_load(f)
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a YAML mapping at the top level")
    return data


def require(data: dict[str, Any], key: str, where: str) -> Any:
    """``data[key]``, or a :class:`ConfigError` naming the file (``where``) and the missing key."""
    if key not in data:
        raise ConfigError(f"{where}: missing required key '{key}'")
    return data[key]


def _triple(value: Any, where: str, cast: type) -> tuple:
    if not isinstance(value, list | tuple) or len(value) != 3:
        raise ConfigError(f"{where}: expected a list of 3 numbers, got {value!r}")
    return tuple(cast(v) for v in value)


def _labels(raw: Any, where: str) -> dict[str, int]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: 'labels' must be a non-empty mapping of name -> value")
    labels = {str(k): int(v) for k, v in raw.items()}
    values = sorted(labels.values())
    if values != list(range(1, len(values) + 1)):
        raise ConfigError(
            f"{where}: label values must be 1..{len(values)} without gaps (0 is background), got {values}"
        )
    return labels


def parse_bounds(raw: Any, where: str) -> dict[str, tuple[float, float]]:
    """Training-parameter bounds ``{name: [min, max]}`` from YAML, checked."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of parameter -> [min, max]")
    bounds = {}
    for key, pair in raw.items():
        if not isinstance(pair, list | tuple) or len(pair) != 2 or float(pair[0]) > float(pair[1]):
            raise ConfigError(f"{where}.{key}: expected [min, max] with min <= max, got {pair!r}")
        bounds[str(key)] = (float(pair[0]), float(pair[1]))
    return bounds


def parse_task(data: dict[str, Any], where: str = "task") -> TaskDefinition:
    """Validate a task mapping (as read from YAML) into a :class:`TaskDefinition`."""
    pre = require(data, "preprocessing", where)
    net = require(data, "network", where)
    train = require(data, "training", where)
    infer = data.get("inference", {})
    lo, hi = (float(v) for v in require(pre, "intensity_range", f"{where}.preprocessing"))
    if hi <= lo:
        raise ConfigError(f"{where}.preprocessing.intensity_range: upper bound must exceed lower bound")
    labels = _labels(require(data, "labels", where), where)
    lesion_only = tuple(str(n) for n in train.get("lesion_only_labels", []))
    if set(lesion_only) - set(labels):
        raise ConfigError(f"{where}.training.lesion_only_labels: {sorted(set(lesion_only) - set(labels))} are not "
                          f"labels of the task ({', '.join(labels)})")
    return TaskDefinition(
        name=str(require(data, "name", where)),
        description=str(data.get("description", "")),
        modalities=tuple(str(m).upper() for m in data.get("modalities", ["CT"])),
        labels=labels,
        preprocessing=Preprocessing(
            spacing=_triple(require(pre, "spacing", where), f"{where}.preprocessing.spacing", float),
            intensity_range=(lo, hi),
            patch_size=_triple(require(pre, "patch_size", where), f"{where}.preprocessing.patch_size", int),
        ),
        network=NetworkSpec(
            name=str(require(net, "name", f"{where}.network")),
            args=dict(net.get("args", {})),
            pretrained=str(net["pretrained"]) if net.get("pretrained") else None,
        ),
        training=TrainingDefaults(
            max_epochs=int(train.get("max_epochs", 50)),
            learning_rate=float(train.get("learning_rate", 1e-3)),
            val_split=float(train.get("val_split", 0.2)),
            train_batch_size=int(train.get("train_batch_size", 1)),
            samples_per_image=int(train.get("samples_per_image", 2)),
            amp=bool(train.get("amp", True)),
            bounds=parse_bounds(train.get("bounds", {}), f"{where}.training.bounds"),
            lesion_only_labels=lesion_only,
        ),
        inference=InferenceSettings(
            sw_batch_size=int(infer.get("sw_batch_size", 2)), overlap=float(infer.get("overlap", 0.25))
        ),
    )


def load_task_file(name: str, parse: Callable[[dict[str, Any], str], Named], directory: Path | None = None
                   ) -> Named:
    """``parse`` ``<directory>/tasks/<name>.yaml`` (default: :func:`config_dir`); its ``name`` must be ``name``."""
    path = (directory or config_dir()) / "tasks" / f"{name}.yaml"
    task = parse(read_yaml(path), str(path))
    if task.name != name:
        raise ConfigError(f"{path}: 'name' is {task.name!r} but the file name says {name!r}; make them agree")
    return task


def load_task(name: str, directory: Path | None = None) -> TaskDefinition:
    """Load ``<directory>/tasks/<name>.yaml`` (default: :func:`config_dir`)."""
    return load_task_file(name, parse_task, directory)


def load_server_settings(directory: Path | None = None) -> ServerSettings:
    """Load ``<directory>/server.yaml`` (default: :func:`config_dir`)."""
    path = (directory or config_dir()) / "server.yaml"
    data = read_yaml(path)
    store = data.get("datastore", {})
    tasks = tuple(str(t) for t in require(data, "tasks", str(path)))
    if not tasks:
        raise ConfigError(f"{path}: 'tasks' must list at least one task")
    return ServerSettings(
        tasks=tasks,
        datastore=DatastoreSettings(
            modalities=tuple(str(m).upper() for m in store.get("modalities", ["CT", "MR", "CR", "DX"])),
            list_cache_seconds=float(store.get("list_cache_seconds", 5)),
            timeout_seconds=float(store.get("timeout_seconds", 60)),
        ),
        extra={k: v for k, v in data.items() if k not in {"tasks", "datastore", "fewshot_tasks"}},
        fewshot_tasks=tuple(str(t) for t in data.get("fewshot_tasks") or ()),
    )
