"""The ``training.validation`` section of a supervised task: its frozen validation set and the promotion rule.

A task reserves a share of its final labels as a frozen validation set that no version trains on, and a finished
training run's version serves only when it is not worse on that set than the version serving, beyond a margin
(:mod:`hope.models.validation_set`, :mod:`hope.models.promotion`).
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from hope.config.files import ConfigError


@dataclass(frozen=True)
class ValidationRule:
    """Which final labels join a task's frozen validation set, and how versions are compared on it."""

    share: float = 0.2  # a label joins when first seen if sha256(series UID) mod 100 < share * 100
    min_training_cases: int = 1  # a label the hash picks stays a training case while fewer remain to train on
    min_cases: int = 2  # below this many members, a finished run serves without a comparison
    margin: float = 0.02  # a new version serves unless its mean Dice is below the serving one's by more than this


def parse_validation(raw: Any, where: str) -> ValidationRule:
    """``training.validation`` as a :class:`ValidationRule` (defaults for missing keys); a :class:`ConfigError`
    naming the key for an unknown key or a value out of range."""
    if raw is None:
        return ValidationRule()
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping, got {raw!r}")
    unknown = sorted(set(raw) - {f.name for f in fields(ValidationRule)})
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown}; allowed: share, min_training_cases, min_cases, margin")
    defaults = ValidationRule()
    rule = ValidationRule(
        share=float(raw.get("share", defaults.share)),
        min_training_cases=int(raw.get("min_training_cases", defaults.min_training_cases)),
        min_cases=int(raw.get("min_cases", defaults.min_cases)),
        margin=float(raw.get("margin", defaults.margin)),
    )
    if not 0.0 <= rule.share <= 1.0:
        raise ConfigError(f"{where}.share: expected a share from 0 to 1, got {rule.share}")
    if rule.min_training_cases < 1:
        raise ConfigError(f"{where}.min_training_cases: at least 1 case must remain to train on, got "
                          f"{rule.min_training_cases}")
    if rule.min_cases < 1:
        raise ConfigError(f"{where}.min_cases: expected at least 1, got {rule.min_cases}")
    if not 0.0 <= rule.margin <= 1.0:
        raise ConfigError(f"{where}.margin: expected a Dice difference from 0 to 1, got {rule.margin}")
    return rule
