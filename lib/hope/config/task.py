"""Supervised task definitions (``configs/tasks/<name>.yaml`` without a ``kind``): labels, preprocessing, network,
training, inference and scribble settings."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hope.config.files import ConfigError, load_task_file, parse_bounds, require
from hope.config.interactive import InteractiveSettings, parse_interactive


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
    interactive: InteractiveSettings | None = None  # None: the task offers no scribble corrections

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
        interactive=parse_interactive(data["interactive"], labels, (lo, hi), f"{where}: interactive")
        if "interactive" in data else None,
    )


def load_task(name: str, directory: Path | None = None) -> TaskDefinition:
    """Load ``<directory>/tasks/<name>.yaml`` (default: :func:`config_dir`)."""
    return load_task_file(name, parse_task, directory)
