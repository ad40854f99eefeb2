"""The first model version of a task: shipped weights when the repository has them, else a seeded network.

Nothing is downloaded. Supervised and few-shot tasks differ only in what they ship and how an untrained network is
written, which the caller passes in.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from hope.models.registry import ModelRegistry

logger = logging.getLogger(__name__)

#: The seed of a task's untrained first version (and of the untrained baselines the benchmarks compare with).
UNTRAINED_SEED = 0


def ensure_first_version(
    registry: ModelRegistry,
    *,
    shipped: Path | None,
    shipped_by: str,
    shipped_note: Callable[[dict[str, Any]], str],
    shipped_metrics: Callable[[dict[str, Any]], dict[str, float]],
    write_untrained: Callable[[Path], None],
) -> None:
    """Keep a first version in ``registry`` unless it has one that may serve (of the profile in effect), then serve
    the right version.

    Args:
        registry: the task's model versions.
        shipped: the repository's pretrained weights (a ``.json`` report beside them gives metrics), or ``None``.
        shipped_by: who made the shipped weights (the script), recorded as the version's author.
        shipped_note: the version's note from the shipped report's JSON, when the shipped weights are kept.
        shipped_metrics: the version's metrics from the shipped report's JSON (``{}`` without a report).
        write_untrained: writes a seeded, untrained network to the given path, when nothing is shipped.
    """
    if registry.best() is None:
        if shipped is not None and shipped.exists():
            report = shipped.with_suffix(".json")
            found = json.loads(report.read_text()) if report.exists() else {}
            registry.add(shipped, started_by=shipped_by, metrics=shipped_metrics(found), training_data=[], params={},
                         note=shipped_note(found))
            logger.info(f"{registry.task}: kept the shipped pretrained model {shipped} as the first version")
        else:
            torch.manual_seed(UNTRAINED_SEED)
            with tempfile.TemporaryDirectory() as tmp:
                weights = Path(tmp) / "model.pt"
                write_untrained(weights)
                registry.add(weights, started_by="hope", metrics={}, training_data=[], params={},
                             note="seeded initial model, untrained")
            logger.warning(f"{registry.task}: no shipped weights at {shipped}; serving a seeded, untrained network")
    registry.apply()
