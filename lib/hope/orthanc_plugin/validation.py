"""Is a stable image series usable by HOPE? Checks on the simplified DICOM tags of its instances.

Input is what Orthanc's ``GET /series/{id}/instances-tags?simplify`` gives per instance: tag names mapped to
strings (multi-valued numbers as ``"1\\0\\0"``), with ``"PixelData": null`` when the instance has pixel data
and no ``PixelData`` key when it has none. Nothing is ever deleted: a failed check only produces a reason.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

IMAGE_MODALITIES = frozenset({"CT", "MR", "CR", "DX"})
#: Modalities HOPE segments in 3-D: they need a stack of parallel slices on one grid.
VOLUME_MODALITIES = frozenset({"CT", "MR"})
MIN_VOLUME_SLICES = 3
PIXEL_DATA_TAGS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")
ORIENTATION_TOLERANCE = 1e-4
SPACING_TOLERANCE_MM = 1e-3
POSITION_DECIMALS = 3  # positions equal when rounded to 0.001 mm are duplicates

Tags = Mapping[str, Any]
Same = Callable[[tuple[Any, ...], tuple[Any, ...]], bool]


@dataclass(frozen=True)
class Validation:
    """The verdict on one series: ``valid`` when ``reasons`` is empty."""

    reasons: tuple[str, ...] = ()

    @property
    def valid(self) -> bool:
        """Whether no check failed."""
        return not self.reasons

    def to_json(self) -> dict[str, Any]:
        """``{"valid": bool, "reasons": [str, ...]}``."""
        return {"valid": self.valid, "reasons": list(self.reasons)}


def validate_series(modality: str, instances: Sequence[Tags]) -> Validation:
    """Check the instances of an image series of ``modality`` (one of :data:`IMAGE_MODALITIES`).

    Every image modality needs pixel data in every instance. CT and MR also need at least
    :data:`MIN_VOLUME_SLICES` slices, the same Rows/Columns, PixelSpacing and ImageOrientationPatient in every
    slice, and no two slices at the same ImagePositionPatient. CR and DX images are independent 2-D images, so
    a single image is fine and their geometry is not compared.
    """
    modality = modality.upper()
    if modality not in IMAGE_MODALITIES:
        raise ValueError(f"not an image modality: {modality!r}; expected one of {sorted(IMAGE_MODALITIES)}")
    if not instances:
        return Validation(("series has no instances",))
    reasons = _pixel_data(instances)
    if modality in VOLUME_MODALITIES:
        reasons += _volume_geometry(modality, instances)
    return Validation(tuple(reasons))


def _pixel_data(instances: Sequence[Tags]) -> list[str]:
    missing = [i for i, tags in enumerate(instances) if not any(tag in tags for tag in PIXEL_DATA_TAGS)]
    if not missing:
        return []
    return [f"{len(missing)} of {len(instances)} instances have no pixel data ({_names(instances, missing)})"]


def _volume_geometry(modality: str, instances: Sequence[Tags]) -> list[str]:
    reasons = []
    if len(instances) < MIN_VOLUME_SLICES:
        reasons.append(f"only {len(instances)} slice(s); a {modality} volume needs at least {MIN_VOLUME_SLICES} slices")
    sizes = [_size(tags) for tags in instances]
    reasons += _consistent("Rows/Columns", sizes, instances, _equal)
    spacings = _numbers_of(instances, "PixelSpacing", 2)
    reasons += _consistent("PixelSpacing", spacings, instances, _close(SPACING_TOLERANCE_MM))
    orientations = _numbers_of(instances, "ImageOrientationPatient", 6)
    reasons += _consistent("ImageOrientationPatient", orientations, instances, _close(ORIENTATION_TOLERANCE))
    positions = _numbers_of(instances, "ImagePositionPatient", 3)
    missing = [i for i, p in enumerate(positions) if p is None]
    if missing:
        reasons.append(_missing_reason("ImagePositionPatient", missing, instances))
    reasons += _duplicate_positions(positions, instances)
    return reasons


def _consistent(
    name: str, values: Sequence[tuple[Any, ...] | None], instances: Sequence[Tags], same: Same
) -> list[str]:
    """A reason when some instances lack ``name`` and another when present values disagree."""
    reasons = []
    missing = [i for i, v in enumerate(values) if v is None]
    if missing:
        reasons.append(_missing_reason(name, missing, instances))
    present = {i: v for i, v in enumerate(values) if v is not None}
    if present:
        first_index, first = next(iter(present.items()))
        differing = [i for i, v in present.items() if not same(v, first)]
        if differing:
            reasons.append(
                f"inconsistent {name}: {_format(first)} in {_name(instances, first_index)} but "
                f"{_format(present[differing[0]])} in {_name(instances, differing[0])}"
                + (f" and {len(differing) - 1} more" if len(differing) > 1 else "")
            )
    return reasons


def _duplicate_positions(positions: list[tuple[float, ...] | None], instances: Sequence[Tags]) -> list[str]:
    seen: dict[tuple[float, ...], int] = {}
    duplicates: list[tuple[int, int, tuple[float, ...]]] = []
    for i, position in enumerate(positions):
        if position is None:
            continue
        key = tuple(round(v, POSITION_DECIMALS) + 0.0 for v in position)  # + 0.0 folds -0.0 into 0.0
        if key in seen:
            duplicates.append((seen[key], i, position))
        else:
            seen[key] = i
    if not duplicates:
        return []
    first, second, position = duplicates[0]
    more = f" ({len(duplicates)} duplicated slices in all)" if len(duplicates) > 1 else ""
    return [
        f"duplicate ImagePositionPatient {_format(position)} at "
        f"{_name(instances, first)} and {_name(instances, second)}{more}"
    ]


def _size(tags: Tags) -> tuple[int, int] | None:
    try:
        return int(tags["Rows"]), int(tags["Columns"])
    except (KeyError, TypeError, ValueError):
        return None


def _numbers_of(instances: Sequence[Tags], name: str, count: int) -> list[tuple[float, ...] | None]:
    return [_numbers(tags.get(name), count) for tags in instances]


def _numbers(value: Any, count: int) -> tuple[float, ...] | None:
    """``"1\\0\\0"`` (or a list of numbers) as ``count`` floats; ``None`` if absent or malformed."""
    if value is None:
        return None
    parts = value.split("\\") if isinstance(value, str) else value
    try:
        numbers = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        return None
    return numbers if len(numbers) == count else None


def _equal(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return a == b


def _close(tolerance: float) -> Same:
    """Equality of number tuples up to ``tolerance`` per component."""
    return lambda a, b: all(abs(x - y) <= tolerance for x, y in zip(a, b, strict=True))


def _missing_reason(name: str, missing: list[int], instances: Sequence[Tags]) -> str:
    return f"{len(missing)} of {len(instances)} instances lack a valid {name} ({_names(instances, missing)})"


def _name(instances: Sequence[Tags], index: int) -> str:
    """How a reason names an instance: by InstanceNumber when it has one, else by its position in the list."""
    number = instances[index].get("InstanceNumber")
    return f"instance {number}" if number not in (None, "") else f"instance #{index + 1} (no InstanceNumber)"


def _names(instances: Sequence[Tags], indices: list[int], limit: int = 3) -> str:
    shown = ", ".join(_name(instances, i) for i in indices[:limit])
    return shown + (f" and {len(indices) - limit} more" if len(indices) > limit else "")


def _format(value: tuple[float, ...] | tuple[int, ...]) -> str:
    """Rows/Columns as ``64x64``; decimal multi-values as DICOM writes them, ``1.8\\1.8``."""
    if all(isinstance(v, int) for v in value):
        return "x".join(str(v) for v in value)
    return "\\".join(f"{v:g}" for v in value)
