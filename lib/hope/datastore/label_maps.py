"""Which label map the store's SEGs of a series use: the one of the supervised task annotating its modality.

A SEG names its segments; HOPE's label volumes carry values. Each image modality is annotated by one supervised
task (``spine_ct`` for CT, ``spine_mr`` for MR), whose ``labels`` (name -> value) turn a SEG into a label volume
and back. Series of a modality no task annotates (CR, DX) use the first task's map.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field


@dataclass(frozen=True)
class LabelMaps:
    """Label name -> voxel value of the store's SEGs, per image modality.

    Args:
        default: the map of series whose modality has none of its own.
        by_modality: modality (``"CT"``, ``"MR"``) -> its map.
    """

    default: Mapping[str, int]
    by_modality: Mapping[str, Mapping[str, int]] = field(default_factory=dict)

    @classmethod
    def of_tasks(cls, tasks: Iterable[tuple[str, Sequence[str], Mapping[str, int]]]) -> LabelMaps:
        """The maps of supervised tasks given as ``(name, modalities, labels)``; the first one is the default.

        Raises:
            ValueError: no task, or two tasks with different labels annotate one modality (a SEG of that modality
                could then mean either).
        """
        by_modality: dict[str, Mapping[str, int]] = {}
        owners: dict[str, str] = {}
        default: Mapping[str, int] | None = None
        for name, modalities, labels in tasks:
            default = labels if default is None else default
            for modality in modalities:
                if modality in by_modality and dict(by_modality[modality]) != dict(labels):
                    raise ValueError(f"tasks {owners[modality]} and {name} both annotate {modality} with different "
                                     "labels; serve one supervised task per modality")
                by_modality[modality], owners[modality] = labels, name
        if default is None:
            raise ValueError("the store's SEGs need the label map of at least one supervised task")
        return cls(default, by_modality)

    def of(self, modality: str | None) -> dict[str, int]:
        """The map of series of ``modality`` (the default map when it has none, or the modality is unknown)."""
        return dict(self.by_modality.get(modality or "", self.default))

    def value_of(self, name: str, modalities: Sequence[str]) -> int:
        """The one voxel value label ``name`` has for every modality of ``modalities``.

        Raises:
            ValueError: a modality's map lacks ``name``, or the modalities give it different values.
        """
        values = {modality: self.of(modality).get(name) for modality in modalities}
        missing = sorted(m for m, v in values.items() if v is None)
        if missing:
            raise ValueError(f"label {name!r} is not a label of the store's {', '.join(missing)} SEGs "
                             f"({', '.join(self.of(missing[0]))})")
        if len(set(values.values())) != 1:
            raise ValueError(f"label {name!r} has different values across {', '.join(modalities)}: {values}")
        return next(iter(values.values()))  # type: ignore[return-value]
