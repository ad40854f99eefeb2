"""Few-shot task definitions (``configs/tasks/fewshot_tumor.yaml``, ``configs/tasks/tumor_grade.yaml``).

A few-shot task has no label map of its own: its lesions are the ``lesion_label`` of the final SEGs in the store
(the ``tumor`` label of ``spine_ct``), and its classes come from the case records (``configs/cases.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hope.config.files import ConfigError, flag, load_task_file, number, parse_bounds, require, section

Kind = Literal["fewshot_segmentation", "lesion_grading"]
KINDS: tuple[str, ...] = ("fewshot_segmentation", "lesion_grading")


@dataclass(frozen=True)
class SliceSpec:
    """How 3D series become the 2D slices the few-shot networks see.

    Slices are axial, resampled in-plane to ``pixel_spacing_mm`` and windowed from ``intensity_range`` (HU) to
    ``[0, 1]``. A support case contributes its ``support_slices_per_case`` slices with the largest lesion area,
    each cut to a square centred on the lesion: ``support_window`` pixels, or ``support_context`` times the
    lesion's extent when that is larger (:func:`hope.fewshot.volumes.support_size`).
    """

    pixel_spacing_mm: float = 1.0
    intensity_range: tuple[float, float] = (-260.0, 740.0)
    support_window: int = 64
    support_context: float = 2.0
    support_slices_per_case: int = 3


@dataclass(frozen=True)
class FewShotInference:
    """How a few-shot task answers a request (the ``inference:`` section)."""

    threshold: float = 0.5  # lesion probability above which a voxel is lesion
    keep_largest_component: bool = True  # keep only the largest connected lesion (3D)
    batch_slices: int = 16  # query slices encoded at once
    max_adapt_steps: int = 10  # the request parameter adapt_steps is capped here
    adapt_lr: float = 0.01  # learning rate of those adaptation steps
    top_types: int = 3  # nearest known tumour types listed by a grade
    segment_with: str | None = None  # the task that finds a lesion when a grading request gives none


@dataclass(frozen=True)
class FewShotNetwork:
    """The ``network:`` section: keyword arguments of each part (encoder, prototypes, embedder)."""

    encoder: dict[str, Any] = field(default_factory=dict)
    prototypes: dict[str, Any] = field(default_factory=dict)
    embedder: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class FewShotAnatomy:
    """The ``anatomy:`` section: anatomy features joined to the encoder's (:mod:`hope.fewshot.anatomy_features`).

    ``tasks`` names, per modality, the supervised task whose shipped network (trained on contrast-randomised
    synthesis) gives the features; ``weight`` is their share of the cosine similarity against the encoder's (both
    parts are unit vectors before the anatomy part is scaled by it). ``cache_series`` is how many series' features
    a server keeps (the latest used), so that grading a series just segmented does not run the network again.
    """

    weight: float
    tasks: dict[str, str]
    cache_series: int = 2


@dataclass(frozen=True)
class FewShotTraining:
    """Defaults of an admin-started refresh (``POST /train/<task>``) and the bounds a request must keep to."""

    defaults: dict[str, Any] = field(default_factory=dict)
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class FewShotDefinition:
    """One few-shot task: what it is, where its lesions come from, its network and its inference settings."""

    name: str
    kind: Kind
    description: str
    modalities: tuple[str, ...]
    lesion_label: str
    slices: SliceSpec
    network: FewShotNetwork
    pretrained: str | None
    inference: FewShotInference = field(default_factory=FewShotInference)
    training: FewShotTraining | None = None  # None: the task has no trainer
    anatomy: FewShotAnatomy | None = None  # None: the encoder's features alone


def _positive(value: Any, where: str, cast: type = float) -> Any:
    number = cast(value)
    if number <= 0:
        raise ConfigError(f"{where}: must be positive, got {value!r}")
    return number


def parse_fewshot_task(data: dict[str, Any], where: str = "task") -> FewShotDefinition:
    """Validate a few-shot task mapping (as read from YAML) into a :class:`FewShotDefinition`."""
    kind = str(require(data, "kind", where))
    if kind not in KINDS:
        raise ConfigError(f"{where}: kind must be one of {', '.join(KINDS)}, got {kind!r}")
    raw = data.get("slices", {})
    lo, hi = (float(v) for v in raw.get("intensity_range", SliceSpec.intensity_range))
    if hi <= lo:
        raise ConfigError(f"{where}.slices.intensity_range: upper bound must exceed lower bound")
    slices = SliceSpec(
        pixel_spacing_mm=_positive(raw.get("pixel_spacing_mm", SliceSpec.pixel_spacing_mm), f"{where}.slices"),
        intensity_range=(lo, hi),
        support_window=_positive(raw.get("support_window", SliceSpec.support_window), f"{where}.slices", int),
        support_context=_positive(raw.get("support_context", SliceSpec.support_context), f"{where}.slices"),
        support_slices_per_case=_positive(
            raw.get("support_slices_per_case", SliceSpec.support_slices_per_case), f"{where}.slices", int
        ),
    )
    network = dict(require(data, "network", where))
    pretrained = network.pop("pretrained", None)
    return FewShotDefinition(
        name=str(require(data, "name", where)),
        kind=kind,  # type: ignore[arg-type]
        description=str(data.get("description", "")),
        modalities=tuple(str(m).upper() for m in data.get("modalities", ["CT"])),
        lesion_label=str(require(data, "lesion_label", where)),
        slices=slices,
        network=_network(network, f"{where}.network"),
        pretrained=str(pretrained) if pretrained else None,
        inference=_inference(section(data, "inference", where), f"{where}.inference"),
        training=_training(data["training"], f"{where}.training") if data.get("training") else None,
        anatomy=_anatomy(data["anatomy"], f"{where}.anatomy") if data.get("anatomy") else None,
    )


def _anatomy(raw: dict[str, Any], where: str) -> FewShotAnatomy:
    unknown = sorted(set(raw) - {"weight", "tasks", "cache_series"})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: tasks, weight, cache_series")
    tasks = section(raw, "tasks", where)
    if not tasks:
        raise ConfigError(f"{where}.tasks: name a supervised task per modality, e.g. {{CT: spine_ct, MR: spine_mr}}")
    return FewShotAnatomy(weight=number(raw, "weight", 1.0, where, low=0.0),
                          tasks={str(m).upper(): str(t) for m, t in tasks.items()},
                          cache_series=number(raw, "cache_series", 2, where, cast=int, low=0))


def _network(raw: dict[str, Any], where: str) -> FewShotNetwork:
    unknown = sorted(set(raw) - {"encoder", "prototypes", "embedder"})
    if unknown:
        raise ConfigError(f"{where}: unknown part(s) {unknown}; the parts are encoder, prototypes and embedder")
    return FewShotNetwork(**{part: section(raw, part, where) for part in raw})


def _inference(raw: dict[str, Any], where: str) -> FewShotInference:
    unknown = sorted(set(raw) - set(FewShotInference.__dataclass_fields__))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; known: {sorted(FewShotInference.__dataclass_fields__)}")
    d = FewShotInference()
    return FewShotInference(
        threshold=number(raw, "threshold", d.threshold, where, low=0.0, high=1.0),
        keep_largest_component=flag(raw, "keep_largest_component", d.keep_largest_component, where),
        batch_slices=number(raw, "batch_slices", d.batch_slices, where, cast=int, low=1),
        max_adapt_steps=number(raw, "max_adapt_steps", d.max_adapt_steps, where, cast=int, low=0),
        adapt_lr=number(raw, "adapt_lr", d.adapt_lr, where, low=0.0),
        top_types=number(raw, "top_types", d.top_types, where, cast=int, low=1),
        segment_with=str(raw["segment_with"]) if raw.get("segment_with") else None,
    )


def _training(raw: dict[str, Any], where: str) -> FewShotTraining:
    defaults = {k: v for k, v in raw.items() if k != "bounds"}
    bounds = parse_bounds(raw.get("bounds", {}), f"{where}.bounds")
    outside = [k for k, (lo, hi) in bounds.items() if k in defaults and not lo <= float(defaults[k]) <= hi]
    if outside:
        raise ConfigError(f"{where}: defaults {outside} lie outside their bounds")
    return FewShotTraining(defaults, bounds)


def load_fewshot_task(name: str, directory: Path | None = None) -> FewShotDefinition:
    """Load ``<directory>/tasks/<name>.yaml`` (default: :func:`hope.config.config_dir`) as a few-shot task."""
    return load_task_file(name, parse_fewshot_task, directory)
