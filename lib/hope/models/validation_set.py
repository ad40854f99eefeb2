"""A task's frozen validation set: final labels reserved to compare model versions on, never trained on.

Membership is decided once per series, the first time a training run sees its final label, and kept in
``<model_dir>/<task>/validation/frozen_set.json``::

    {"members": {"<series UID>": "<when it joined, ISO 8601>"},
     "training": {"<series UID>": "<when it was made a training case>"}}

The rule (:class:`~hope.config.validation.ValidationRule`): a series joins when sha256 of its UID, mod 100, is
below ``share`` * 100, so the decision depends on nothing else and, once made, never changes as labels arrive. Two
exceptions keep training possible and the set clean: a label a kept version was already trained on never joins, and
a label the hash picks is a training case when fewer than ``min_training_cases`` would remain to train on. A member
whose label is edited stays a member; versions are then scored again, on its new label (the set's fingerprint
changes). A local folder store names labels by file path, so there an edited label keeps its fingerprint.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from hope import fileio
from hope.config.validation import ValidationRule

#: File name endings of label files; what precedes them is the image series the label belongs to.
LABEL_SUFFIXES = (".nii.gz", ".nii", ".nrrd")

DataItem = Mapping[str, Any]


def case_id(item: DataItem) -> str:
    """The image series of a training datalist item: both datastores name a final label's file after its image."""
    name = Path(str(item["label"])).name
    for suffix in LABEL_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    raise ValueError(f"label file {item['label']} does not end in {', '.join(LABEL_SUFFIXES)}")


def label_ref(item: DataItem) -> str:
    """What names an item's label in a version's ``training_data``: its SEG series UID (Orthanc), else its path."""
    return str(item.get("seg", item["label"]))


def picked(series_uid: str, share: float) -> bool:
    """Whether the hash rule picks ``series_uid`` for the frozen set: sha256 of the UID mod 100 < ``share`` * 100."""
    return int(hashlib.sha256(series_uid.encode()).hexdigest(), 16) % 100 < round(share * 100)


def fingerprint(items: Sequence[DataItem]) -> str:
    """A short hash of which series, with which labels, a set holds (it changes when a member's label changes)."""
    key = sorted((case_id(item), label_ref(item)) for item in items)
    return hashlib.sha256(json.dumps(key).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class Partition:
    """A training run's final labels, split by the frozen set."""

    training: list[DataItem]  # what the run may train on (and draw its own validation split from)
    frozen: list[DataItem]  # the frozen set's current members with a final label: versions are compared on them


class FrozenValidationSet:
    """The membership of one task's frozen validation set, kept in ``frozen_set.json`` in ``directory`` (the
    registry's :attr:`~hope.models.registry.ModelRegistry.validation_dir`)."""

    def __init__(self, directory: Path, rule: ValidationRule) -> None:
        self.path = directory / "frozen_set.json"
        self.rule = rule

    def _read(self) -> dict[str, dict[str, str]]:
        found = json.loads(self.path.read_text()) if self.path.exists() else {}
        return {"members": dict(found.get("members", {})), "training": dict(found.get("training", {}))}

    def partition(self, items: Sequence[DataItem], trained: Collection[str]) -> Partition:
        """Decide the series of ``items`` seen for the first time, keep the decisions, and split ``items``.

        Args:
            items: the final labels a run may use (image/label datalist items).
            trained: :func:`label_ref` of every label a kept version was trained on; those never join.
        """
        state = self._read()
        members, training = state["members"], state["training"]
        now = datetime.now(UTC).isoformat(timespec="seconds")
        new = sorted((item for item in items if case_id(item) not in members and case_id(item) not in training),
                     key=case_id)
        candidates = []
        for item in new:
            if label_ref(item) not in trained and picked(case_id(item), self.rule.share):
                candidates.append(item)
            else:
                training[case_id(item)] = now
        remaining = sum(1 for item in items if case_id(item) in training)
        for item in candidates:
            if remaining >= self.rule.min_training_cases:
                members[case_id(item)] = now
            else:
                training[case_id(item)] = now
                remaining += 1
        if new:
            fileio.write_json(self.path, state)
        return Partition(training=[item for item in items if case_id(item) in training],
                         frozen=[item for item in items if case_id(item) in members])
