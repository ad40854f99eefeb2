"""Supervised task definitions (``configs/tasks/<name>.yaml`` without a ``kind``): labels, preprocessing, network,
training, inference and scribble settings.

A task has two network profiles: ``cpu`` (the top-level ``preprocessing``, ``network``, ``training`` and
``inference`` sections) and ``gpu`` (the same sections with the keys of ``profiles.gpu`` replacing theirs; a
``profiles.cpu`` may amend the cpu profile the same way). Which one is in effect is chosen once, when the task is
loaded: ``HOPE_NETWORK_PROFILE`` if set, else the YAML's ``profile`` key; ``auto`` (the default) means ``gpu`` when
CUDA is available and ``cpu`` otherwise. The chosen profile's settings are the task's ``preprocessing``, ``network``,
``training`` and ``inference``, so everything downstream reads one set of settings.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

from hope.config.files import ConfigError, load_task_file, parse_bounds, require
from hope.config.interactive import InteractiveSettings, parse_interactive
from hope.config.validation import ValidationRule, parse_validation

PROFILES = ("cpu", "gpu")
PROFILE_CHOICES = ("auto", *PROFILES)
PROFILE_ENV = "HOPE_NETWORK_PROFILE"
MEASUREMENTS = ("spine",)  # what a task may measure on its labels (hope.measure)
NORMALISATIONS = ("window", "percentile")  # how intensities are scaled to [0, 1]; see Preprocessing
DATASETS = ("Dataset", "CacheDataset")  # MONAI dataset classes the trainer may use; CacheDataset keeps the
                                        # deterministic pre-processing of every case in memory between epochs
# What a profile may change in each section; everything else (labels, intensity window, bounds...) is shared.
_PROFILE_KEYS = {
    "preprocessing": {"spacing", "patch_size"},
    "training": {"amp", "dataset", "train_batch_size", "samples_per_image"},
    "inference": {"sw_batch_size", "overlap", "amp"},
}


@dataclass(frozen=True)
class Preprocessing:
    """How images are resampled and scaled before they reach a network.

    ``normalisation`` ``window`` scales the fixed ``intensity_range`` (CT: Hounsfield units) to ``[0, 1]``;
    ``percentile`` scales each volume's own ``percentiles`` (MR, whose intensities have no absolute scale) to
    ``[0, 1]``, so a bright outlier or a coil's overall gain does not move the tissues. Both clip.
    """

    spacing: tuple[float, float, float]
    intensity_range: tuple[float, float] | None  # window only
    patch_size: tuple[int, int, int]
    normalisation: str = "window"  # one of NORMALISATIONS
    percentiles: tuple[float, float] = (0.5, 99.5)  # percentile only


@dataclass(frozen=True)
class NetworkSpec:
    """A MONAI network class name (``monai.networks.nets``) and its keyword arguments."""

    name: str
    args: dict[str, Any]
    pretrained: str | None = None  # repository-relative path of shipped weights, made by scripts/pretrain_synthesis.py


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
    dataset: str = "Dataset"  # one of DATASETS
    validation: ValidationRule = field(default_factory=ValidationRule)  # the frozen validation set, promotion


@dataclass(frozen=True)
class InferenceSettings:
    """Sliding-window inference settings."""

    sw_batch_size: int
    overlap: float
    amp: bool = False  # mixed precision (CUDA only)
    largest_component: tuple[str, ...] = ()  # labels of one structure each: only their largest 3D component is kept


@dataclass(frozen=True)
class NetworkProfile:
    """The settings one profile (``cpu`` or ``gpu``) gives a task: resampling, network, training and inference."""

    name: str
    preprocessing: Preprocessing
    network: NetworkSpec
    training: TrainingDefaults
    inference: InferenceSettings

    @property
    def signature(self) -> str:
        """What the weights depend on: the network class and arguments, spacing and intensity window (a short hash).

        Two profiles with the same signature can serve each other's weights; patch size, batch sizes, AMP and the
        dataset class only change speed.
        """
        pre = self.preprocessing
        key = {"network": self.network.name, "args": self.network.args, "spacing": pre.spacing,
               "intensity_range": pre.intensity_range}
        if pre.normalisation != "window":  # keys added later: the window signatures of existing versions stay
            key |= {"normalisation": pre.normalisation, "percentiles": pre.percentiles}
        return hashlib.sha256(json.dumps(key, sort_keys=True, default=list).encode()).hexdigest()[:16]


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
    profile: str = "cpu"  # the network profile in effect: its settings are the four sections above
    profiles: dict[str, NetworkProfile] = field(default_factory=dict)  # every profile, by name
    measurements: str | None = None  # "spine": canal, cord, discs and Cobb angle (hope.measure.spine), else None

    @property
    def active_profile(self) -> NetworkProfile:
        """The profile in effect."""
        return self.profiles[self.profile]

    def with_profile(self, name: str) -> TaskDefinition:
        """This task with profile ``name`` in effect (a :class:`ConfigError` for an unknown name)."""
        if name not in self.profiles:
            raise ConfigError(f"task {self.name}: no network profile {name!r}; use one of {', '.join(PROFILES)}")
        chosen = self.profiles[name]
        return replace(self, profile=name, preprocessing=chosen.preprocessing, network=chosen.network,
                       training=chosen.training, inference=chosen.inference)

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


def _bounded_pair(section: dict[str, Any], key: str, where: str,
                  default: tuple[float, float] | None = None) -> tuple[float, float]:
    """``section[key]`` as a ``(low, high)`` pair of numbers with ``low < high`` (``default`` when absent)."""
    raw = section.get(key, default) if default is not None else require(section, key, where)
    try:
        low, high = (float(v) for v in raw)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}.{key}: expected two numbers [low, high], got {raw!r}") from exc
    if high <= low:
        raise ConfigError(f"{where}.{key}: upper bound must exceed lower bound")
    return low, high


def _overlay(base: dict[str, Any], raw: Any, section: str, where: str) -> dict[str, Any]:
    """``base`` with the keys a profile sets in ``section`` replaced; a :class:`ConfigError` for any other key."""
    if raw is None:
        return base
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}.{section}: expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - _PROFILE_KEYS[section])
    if unknown:
        raise ConfigError(f"{where}.{section}: a profile may not set {unknown}; it may set "
                          f"{sorted(_PROFILE_KEYS[section])}")
    return {**base, **raw}


def _network(raw: Any, where: str) -> NetworkSpec:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping with 'name' and 'args', got {raw!r}")
    return NetworkSpec(name=str(require(raw, "name", where)), args=dict(raw.get("args", {})),
                       pretrained=str(raw["pretrained"]) if raw.get("pretrained") else None)


def _profile(name: str, data: dict[str, Any], overrides: Any, labels: dict[str, int], where: str) -> NetworkProfile:
    """Profile ``name``: the task's sections, with ``overrides`` (its ``profiles.<name>`` mapping) applied."""
    here = f"{where}.profiles.{name}"
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, dict):
        raise ConfigError(f"{here}: expected a mapping of sections, got {overrides!r}")
    unknown = sorted(set(overrides) - {*_PROFILE_KEYS, "network"})
    if unknown:
        raise ConfigError(f"{here}: unknown section(s) {unknown}; a profile may set preprocessing, network, "
                          "training and inference")
    pre = _overlay(require(data, "preprocessing", where), overrides.get("preprocessing"), "preprocessing", here)
    train = _overlay(require(data, "training", where), overrides.get("training"), "training", here)
    infer = _overlay(data.get("inference", {}), overrides.get("inference"), "inference", here)
    net = overrides.get("network", require(data, "network", where))
    normalisation = str(pre.get("normalisation", "window"))
    if normalisation not in NORMALISATIONS:
        raise ConfigError(f"{where}.preprocessing.normalisation: expected one of {', '.join(NORMALISATIONS)}, got "
                          f"{normalisation!r}")
    window = _bounded_pair(pre, "intensity_range", f"{where}.preprocessing") if normalisation == "window" else None
    percentiles = _bounded_pair(pre, "percentiles", f"{where}.preprocessing", default=(0.5, 99.5))
    if not 0.0 <= percentiles[0] < percentiles[1] <= 100.0:
        raise ConfigError(f"{where}.preprocessing.percentiles: expected 0 <= low < high <= 100, got {percentiles}")
    lesion_only = tuple(str(n) for n in train.get("lesion_only_labels", []))
    if set(lesion_only) - set(labels):
        raise ConfigError(f"{where}.training.lesion_only_labels: {sorted(set(lesion_only) - set(labels))} are not "
                          f"labels of the task ({', '.join(labels)})")
    largest = tuple(str(n) for n in infer.get("largest_component", []))
    if set(largest) - set(labels):
        raise ConfigError(f"{where}.inference.largest_component: {sorted(set(largest) - set(labels))} are not labels "
                          f"of the task ({', '.join(labels)})")
    dataset = str(train.get("dataset", "Dataset"))
    if dataset not in DATASETS:
        raise ConfigError(f"{here}.training.dataset: expected one of {', '.join(DATASETS)}, got {dataset!r}")
    return NetworkProfile(
        name=name,
        preprocessing=Preprocessing(
            spacing=_triple(require(pre, "spacing", where), f"{here}.preprocessing.spacing", float),
            intensity_range=window,
            patch_size=_triple(require(pre, "patch_size", where), f"{here}.preprocessing.patch_size", int),
            normalisation=normalisation,
            percentiles=percentiles,
        ),
        network=_network(net, f"{here}.network" if "network" in overrides else f"{where}.network"),
        training=TrainingDefaults(
            max_epochs=int(train.get("max_epochs", 50)),
            learning_rate=float(train.get("learning_rate", 1e-3)),
            val_split=float(train.get("val_split", 0.2)),
            train_batch_size=int(train.get("train_batch_size", 1)),
            samples_per_image=int(train.get("samples_per_image", 2)),
            amp=bool(train.get("amp", True)),
            bounds=parse_bounds(train.get("bounds", {}), f"{where}.training.bounds"),
            lesion_only_labels=lesion_only,
            dataset=dataset,
            validation=parse_validation(train.get("validation"), f"{where}.training.validation"),
        ),
        inference=InferenceSettings(
            sw_batch_size=int(infer.get("sw_batch_size", 2)), overlap=float(infer.get("overlap", 0.25)),
            amp=bool(infer.get("amp", False)), largest_component=largest,
        ),
    )


def _measurements(raw: Any, where: str) -> str | None:
    if raw is None or raw in MEASUREMENTS:
        return raw
    raise ConfigError(f"{where}.measurements: expected one of {', '.join(MEASUREMENTS)} (or none), got {raw!r}")


def select_profile(requested: str, cuda_available: bool, where: str) -> str:
    """The profile ``requested`` (``auto``, ``cpu`` or ``gpu``) means on this machine; ``auto`` follows the device."""
    if requested not in PROFILE_CHOICES:
        raise ConfigError(f"{where}: network profile must be one of {', '.join(PROFILE_CHOICES)}, got {requested!r}")
    if requested == "auto":
        return "gpu" if cuda_available else "cpu"
    return requested


def parse_task(data: dict[str, Any], where: str = "task", *, override: str | None = None,
               cuda_available: bool = False) -> TaskDefinition:
    """Validate a task mapping (as read from YAML) into a :class:`TaskDefinition`.

    The network profile in effect is ``override`` (the value of ``HOPE_NETWORK_PROFILE``) if given, else the
    mapping's ``profile`` (default ``auto``), resolved with ``cuda_available`` by :func:`select_profile`.
    """
    labels = _labels(require(data, "labels", where), where)
    raw_profiles = data.get("profiles") or {}
    if not isinstance(raw_profiles, dict) or set(raw_profiles) - set(PROFILES):
        raise ConfigError(f"{where}.profiles: expected a mapping with the keys {' and/or '.join(PROFILES)}, got "
                          f"{raw_profiles!r}")
    profiles = {name: _profile(name, data, raw_profiles.get(name), labels, where) for name in PROFILES}
    chosen = select_profile(override, cuda_available, f"${PROFILE_ENV}") if override is not None else \
        select_profile(str(data.get("profile", "auto")), cuda_available, f"{where}.profile")
    active = profiles[chosen]
    return TaskDefinition(
        name=str(require(data, "name", where)),
        description=str(data.get("description", "")),
        modalities=tuple(str(m).upper() for m in data.get("modalities", ["CT"])),
        labels=labels,
        preprocessing=active.preprocessing,
        network=active.network,
        training=active.training,
        inference=active.inference,
        interactive=parse_interactive(data["interactive"], labels, active.preprocessing.intensity_range,
                                      f"{where}: interactive") if "interactive" in data else None,
        profile=chosen,
        profiles=profiles,
        measurements=_measurements(data.get("measurements"), where),
    )


def load_task(name: str, directory: Path | None = None) -> TaskDefinition:
    """Load ``<directory>/tasks/<name>.yaml`` (default: :func:`config_dir`), with the network profile that
    ``$HOPE_NETWORK_PROFILE`` (else the YAML's ``profile``) selects on this machine."""
    import torch  # here, not at module level: the configuration package is imported where torch is not needed

    override = os.environ.get(PROFILE_ENV) or None
    return load_task_file(name, partial(parse_task, override=override, cuda_available=torch.cuda.is_available()),
                          directory)
