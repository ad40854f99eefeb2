"""Whether a newly kept model version serves: it is scored, with the version serving now, on the task's frozen
validation set, and serves unless its mean Dice is below the serving one's by more than the rule's margin.

Below ``min_cases`` members there is nothing to compare on, and the new version serves. Scores are cached in
``<model_dir>/<task>/validation/scores.json`` by the set's fingerprint and version::

    {"<fingerprint>": {"v0002": {"mean_dice": 0.74, "dice": {"C1": 0.81, "tumor": 0.52}}}}

so each version is scored once per membership of the set (and content of its members' labels).
"""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from hope import fileio
from hope.config.validation import ValidationRule
from hope.models.registry import FrozenSetRef, ModelRegistry, Promotion
from hope.models.validation_set import DataItem, fingerprint


@dataclass(frozen=True)
class FrozenScore:
    """A version's Dice on the frozen validation set."""

    mean_dice: float
    dice: dict[str, float]  # per structure that the members' labels hold


#: Scores the weights in a file on the frozen set.
Scorer = Callable[[Path], FrozenScore]


class ScoreCache:
    """Versions' scores on the frozen set, by the set's fingerprint, in a JSON file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def score(self, version: str, set_fingerprint: str, weights: Path, scorer: Scorer) -> FrozenScore:
        """``version``'s score on the set ``set_fingerprint``: the cached one, else ``scorer(weights)``, kept."""
        cached = json.loads(self.path.read_text()) if self.path.exists() else {}
        found = cached.get(set_fingerprint, {}).get(version)
        if found is not None:
            return FrozenScore(**found)
        score = scorer(weights)
        cached.setdefault(set_fingerprint, {})[version] = asdict(score)
        fileio.write_json(self.path, cached)
        return score


def _cases(count: int) -> str:
    return f"{count} case" if count == 1 else f"{count} cases"


class PromotionJudge:
    """Decides whether a version being kept serves; :meth:`ModelRegistry.add` calls it as ``decide``.

    Args:
        registry: the task's versions (the version serving now is compared with the new one).
        rule: the task's ``training.validation``.
        frozen: the frozen set's current members with their final labels.
        scorer: scores weights on ``frozen`` (the trainer's validation inference and Dice).
    """

    def __init__(self, registry: ModelRegistry, rule: ValidationRule, frozen: Sequence[DataItem],
                 scorer: Scorer) -> None:
        self.registry = registry
        self.rule = rule
        self.frozen = FrozenSetRef(cases=len(frozen), fingerprint=fingerprint(frozen))
        self.scorer = scorer
        self.cache = ScoreCache(registry.validation_dir / "scores.json")

    def __call__(self, candidate: str, weights: Path) -> Promotion:
        """The decision on ``candidate`` (its weights in ``weights``), with the reason in plain words."""
        served = self.registry.serving()
        if served is None:
            return self._promoted(f"no version served before {candidate}; {candidate} serves.")
        pinned = self.registry.pinned() == served.version
        serves = f"{served.version} stays pinned; {candidate} serves once it is unpinned" if pinned \
            else f"{candidate} serves"
        if self.frozen.cases < self.rule.min_cases:
            return self._promoted(f"no frozen validation set yet ({self.frozen.cases} of {self.rule.min_cases} "
                                  f"cases), so {candidate} was not compared with {served.version}; {serves}.")
        new = self.cache.score(candidate, self.frozen.fingerprint, weights, self.scorer)
        old = self.cache.score(served.version, self.frozen.fingerprint, self.registry.weights(served.version),
                               self.scorer)
        promoted = new.mean_dice >= old.mean_dice - self.rule.margin
        scored = (f"{candidate} scored {new.mean_dice:.3f} on the frozen validation set of "
                  f"{_cases(self.frozen.cases)}, {'not ' if promoted else ''}below the serving {served.version}'s "
                  f"{old.mean_dice:.3f} by more than the margin {self.rule.margin:g}")
        reason = f"{scored}; {serves}." if promoted else \
            f"{scored}; {served.version} keeps serving. Pin {candidate} to serve it anyway."
        return Promotion(
            promoted=promoted, reason=reason, frozen_set=self.frozen, margin=self.rule.margin,
            scores={candidate: new.mean_dice, served.version: old.mean_dice},
            dice={candidate: new.dice, served.version: old.dice},
        )

    def _promoted(self, reason: str) -> Promotion:
        return Promotion(promoted=True, reason=reason, frozen_set=self.frozen, margin=self.rule.margin)
