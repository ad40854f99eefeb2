"""Ignite handlers that report training progress and publish a finished model atomically."""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any

from monai.engines.workflow import Engine, Events
from monailabel.tasks.train.handler import prepare_stats

from hope import fileio
from hope.models.registry import ModelRegistry, Promotion

logger = logging.getLogger(__name__)


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss; the run is aborted and nothing is published."""


class LossGuard:
    """Abort the run on a non-finite loss, with a message that says what to change."""

    def attach(self, engine: Engine) -> None:
        """Check the loss after every iteration."""
        engine.add_event_handler(Events.ITERATION_COMPLETED, self)

    def __call__(self, engine: Engine) -> None:
        output = engine.state.output
        items = output if isinstance(output, list) else [output]
        for item in items:
            loss = item.get("loss") if isinstance(item, dict) else None
            value = float(loss) if loss is not None else 0.0
            if not math.isfinite(value):
                raise DivergenceError(
                    f"training diverged: loss is {value} at epoch {engine.state.epoch}, iteration "
                    f"{engine.state.iteration}; lower the learning rate or check the labels. "
                    "The served model was left unchanged."
                )


class ProgressAndPublish:
    """After every epoch, log a one-line progress report and append to ``train_stats.json``.

    Only when the whole run completes is the best checkpoint kept as a new model version in the task's
    :class:`~hope.models.registry.ModelRegistry`, with the decision ``decide`` makes on whether it serves; the
    registry then serves the best (or the pinned) version atomically. A failed or stopped run leaves the served
    model untouched.

    Args:
        stats_path: where the progress report (``train_stats.json``) goes.
        registry: the task's versions.
        best_checkpoint: the run's best checkpoint, kept when the run completes.
        start_ts: when the run started (Unix time).
        trainer: the run's trainer.
        evaluator: the run's evaluator on its own validation split, if it has one.
        started_by: who started the run.
        training_data: what the run trains on (:func:`~hope.models.validation_set.label_ref`).
        params: the run's training parameters.
        run: the training request's :data:`~hope.models.registry.RUN_KEY`.
        decide: decides whether the kept version serves (:class:`~hope.models.promotion.PromotionJudge`).
    """

    def __init__(
        self,
        *,
        stats_path: Path,
        registry: ModelRegistry,
        best_checkpoint: Path,
        start_ts: float,
        trainer: Engine,
        evaluator: Engine | None,
        started_by: str,
        training_data: list[str],
        params: dict[str, Any],
        run: str,
        decide: Callable[[str, Path], Promotion],
    ) -> None:
        self.stats_path = stats_path
        self.registry = registry
        self.best_checkpoint = best_checkpoint
        self.start_ts = start_ts
        self.trainer = trainer
        self.evaluator = evaluator
        self.started_by = started_by
        self.training_data = training_data
        self.params = params
        self.run = run
        self.decide = decide
        self.history: list[dict[str, Any]] = []

    def attach(self) -> None:
        """Hook the epoch report on the evaluator (or trainer) and publication on the trainer's completion."""
        (self.evaluator or self.trainer).add_event_handler(Events.EPOCH_COMPLETED, self.report)
        self.trainer.add_event_handler(Events.COMPLETED, self.publish)

    def _metrics(self) -> dict[str, float]:
        merged: dict[str, float] = {}
        for engine in (self.trainer, self.evaluator):
            if engine is not None:
                merged.update({k: float(v) for k, v in engine.state.metrics.items() if isinstance(v, int | float)})
        return merged

    def report(self, _engine: Engine) -> None:
        """Write the stats file (with the per-epoch history) and log epoch, loss and Dice per label."""
        output = self.trainer.state.output
        loss = float(output[0]["loss"]) if isinstance(output, list) and output else float("nan")
        metrics = self._metrics()
        self.history.append({"epoch": self.trainer.state.epoch, "loss": loss, **metrics})
        stats = prepare_stats(self.start_ts, self.trainer, self.evaluator)
        stats["history"] = self.history
        fileio.write_json(self.stats_path, stats, default=str)
        dice = ", ".join(f"{k.replace('_mean_dice', '')}={v:.3f}" for k, v in metrics.items())
        logger.info(f"epoch {self.trainer.state.epoch}/{self.trainer.state.max_epochs} loss={loss:.4f} {dice}")

    def publish(self, _engine: Engine) -> None:
        """Keep the best checkpoint of this run as a new model version, with the decision on whether it serves."""
        if not self.best_checkpoint.exists():
            raise FileNotFoundError(f"training finished without a checkpoint at {self.best_checkpoint}")
        version = self.registry.add(
            self.best_checkpoint,
            started_by=self.started_by,
            metrics=self._metrics(),
            training_data=self.training_data,
            params=self.params,
            run=self.run,
            decide=self.decide,
        )
        reason = version.promotion.reason if version.promotion is not None else "kept without a decision."
        logger.info(f"kept model {version.version}: {reason} Serving {self.registry.served_version()}.")
