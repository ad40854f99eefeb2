"""Few-shot task definitions (``configs/tasks/fewshot_tumor.yaml``, ``configs/tasks/tumor_grade.yaml``).

A few-shot task has no label map of its own: its lesions are the ``lesion_label`` of the final SEGs in the store
(the ``tumor`` label of ``spine_ct``), and its classes come from the case records (``configs/cases.yaml``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from hope.config import ConfigError, load_task_file, parse_bounds, require

Kind = Literal["fewshot_segmentation", "lesion_grading"]
KINDS: tuple[str, ...] = ("fewshot_segmentation", "lesion_grading")


@dataclass(frozen=True)
class SliceSpec:
    """How 3D series become the 2D slices the few-shot networks see.

    Slices are axial, resampled in-plane to ``pixel_spacing_mm`` and windowed from ``intensity_range`` (HU) to
    ``[0, 1]``. A support case contributes its ``support_slices_per_case`` slices with the largest lesion area,
    each cut to a ``support_window`` pixel square centred on the lesion.
    """

    pixel_spacing_mm: float = 1.0
    intensity_range: tuple[float, float] = (-260.0, 740.0)
    support_window: int = 64
    support_slices_per_case: int = 3


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
    network: dict[str, Any]
    pretrained: str | None
    inference: dict[str, Any] = field(default_factory=dict)
    training: FewShotTraining | None = None  # None: the task has no trainer


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
        network=network,
        pretrained=str(pretrained) if pretrained else None,
        inference=dict(data.get("inference", {})),
        training=_training(data["training"], f"{where}.training") if data.get("training") else None,
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
