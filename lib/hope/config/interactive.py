"""The ``interactive:`` section of a task YAML: how scribble corrections of one structure are computed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hope.config.files import ConfigError

OUTPUT_LABELS = ("all", "selected")


@dataclass(frozen=True)
class InteractiveSettings:
    """Scribble corrections of a task (``hope.interactive``): the structure, scribble values, GraphCut settings."""

    structure: str
    background_scribble: int
    foreground_scribble: int
    intensity_range: tuple[float, float]
    num_bins: int
    lamda: float
    sigma: float
    prior_weight: float
    prior_sigma_mm: float
    scribble_radius_mm: float
    margin_mm: float
    connectivity: int
    output_label: str
    overrides: tuple[str, ...]


def parse_interactive(raw: Any, labels: Mapping[str, int], default_range: tuple[float, float] | None, where: str
                      ) -> InteractiveSettings:
    """Validate an ``interactive:`` mapping of a task with ``labels`` into :class:`InteractiveSettings`.

    Args:
        raw: the mapping as read from YAML.
        labels: the task's label names and values (scribble values must differ from them).
        default_range: the intensity window used when the section names none (the task's preprocessing window;
            ``None`` when the task normalises each volume: the section must then name one).
        where: the file and key, for error messages.
    """
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    if "intensity_range" not in raw and default_range is None:
        raise ConfigError(f"{where}: give an intensity_range (e.g. [-200, 1300] HU): the task's preprocessing "
                          "normalises each volume, so it has no fixed window to take it from")
    try:
        scribbles = raw.get("scribbles", {})
        low, high = (float(v) for v in raw.get("intensity_range", default_range))
        settings = InteractiveSettings(
            structure=str(raw["structure"]),
            background_scribble=int(scribbles["background"]),
            foreground_scribble=int(scribbles["foreground"]),
            intensity_range=(low, high),
            num_bins=int(raw.get("num_bins", 64)),
            lamda=float(raw.get("lamda", 1.0)),
            sigma=float(raw.get("sigma", 0.1)),
            prior_weight=float(raw.get("prior_weight", 0.5)),
            prior_sigma_mm=float(raw.get("prior_sigma_mm", 2.0)),
            scribble_radius_mm=float(raw.get("scribble_radius_mm", 3.0)),
            margin_mm=float(raw.get("margin_mm", 15.0)),
            connectivity=int(raw.get("connectivity", 6)),
            output_label=str(raw.get("output_label", "all")),
            overrides=tuple(str(name) for name in raw.get("overrides", [])),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc!r}; see configs/tasks/spine_ct.yaml for the expected keys") from exc
    problems = []
    unknown = sorted({settings.structure, *settings.overrides} - set(labels))
    if unknown:
        problems.append(f"structure / overrides name {unknown}, which are not labels {sorted(labels)}")
    scribble_values = {settings.background_scribble, settings.foreground_scribble}
    if len(scribble_values) != 2 or scribble_values & {0, *labels.values()} or max(scribble_values) > 255:
        problems.append("scribble values must be two different values in 1..255 that are not label values")
    if high <= low:
        problems.append("intensity_range: the upper bound must exceed the lower bound")
    if settings.num_bins < 2 or settings.lamda < 0 or settings.sigma <= 0:
        problems.append("num_bins must be >= 2, lamda >= 0 and sigma > 0")
    if not 0.0 <= settings.prior_weight <= 1.0 or settings.prior_sigma_mm <= 0:
        problems.append("prior_weight must lie in [0, 1] and prior_sigma_mm > 0")
    if settings.scribble_radius_mm < 0 or settings.margin_mm < 0:
        problems.append("scribble_radius_mm and margin_mm must be >= 0")
    if settings.connectivity not in (6, 18, 26):
        problems.append("connectivity must be 6, 18 or 26")
    if settings.output_label not in OUTPUT_LABELS:
        problems.append(f"output_label must be one of {OUTPUT_LABELS}")
    if problems:
        raise ConfigError(f"{where}: " + "; ".join(problems))
    return settings
