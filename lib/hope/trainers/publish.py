"""Ignite handlers that report training progress and publish a finished model atomically."""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from monai.engines.workflow import Engine, Events
from monailabel.tasks.train.handler import prepare_stats

logger = logging.getLogger(__name__)


def atomic_copy(src: Path, dest: Path) -> None:
    """Copy ``src`` to ``dest`` so that readers of ``dest`` see the old file or the new one, never a partial one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    os.close(fd)
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(data: Any, dest: Path) -> None:
    """Write ``data`` as JSON to ``dest`` atomically."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        json.dump(data, f, indent=2, default=str)
    os.replace(tmp, dest)


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
    """After every epoch, log a one-line progress report and write ``train_stats.json``.

    Only when the whole run completes is the best checkpoint copied, atomically, to the publish path that the infer
    task serves from; a failed or stopped run leaves the served model untouched.
    """

    def __init__(
        self,
        *,
        stats_path: Path,
        publish_path: Path,
        best_checkpoint: Path,
        start_ts: float,
        trainer: Engine,
        evaluator: Engine | None,
    ) -> None:
        self.stats_path = stats_path
        self.publish_path = publish_path
        self.best_checkpoint = best_checkpoint
        self.start_ts = start_ts
        self.trainer = trainer
        self.evaluator = evaluator

    def attach(self) -> None:
        """Hook the epoch report on the evaluator (or trainer) and publication on the trainer's completion."""
        (self.evaluator or self.trainer).add_event_handler(Events.EPOCH_COMPLETED, self.report)
        self.trainer.add_event_handler(Events.COMPLETED, self.publish)

    def report(self, _engine: Engine) -> None:
        """Write the stats file and log epoch, loss and per-label Dice."""
        stats = prepare_stats(self.start_ts, self.trainer, self.evaluator)
        atomic_write_json(stats, self.stats_path)
        metrics = (stats.get("eval") or stats.get("train") or {}).get("metrics", {})
        dice = ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float))
        output = self.trainer.state.output
        loss = output[0]["loss"] if isinstance(output, list) and output else None
        logger.info(
            f"epoch {self.trainer.state.epoch}/{self.trainer.state.max_epochs} "
            f"loss={float(loss) if loss is not None else float('nan'):.4f} {dice}"
        )

    def publish(self, _engine: Engine) -> None:
        """Publish the best checkpoint of this run."""
        if not self.best_checkpoint.exists():
            raise FileNotFoundError(f"training finished without a checkpoint at {self.best_checkpoint}")
        atomic_copy(self.best_checkpoint, self.publish_path)
        logger.info(f"published model {self.best_checkpoint} -> {self.publish_path}")
