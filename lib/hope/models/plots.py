"""PNG plots admins would rather see than read: training curves and Dice per model version."""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402 - the backend must be chosen first

from hope.models.registry import ModelVersion  # noqa: E402


def training_report_png(task: str, history: Sequence[dict[str, Any]], versions: Sequence[ModelVersion]) -> bytes:
    """Two panels: loss and mean Dice per epoch of the latest run; per kept version, its mean Dice on the frozen
    validation set when its promotion decision scored it (0 when not), red when it was not promoted."""
    fig, (curves, per_version) = plt.subplots(1, 2, figsize=(11, 4))
    if history:
        epochs = [h["epoch"] for h in history]
        curves.plot(epochs, [h.get("loss") for h in history], "o-", label="training loss")
        for key in ("train_mean_dice", "val_mean_dice"):
            if any(key in h for h in history):
                curves.plot(epochs, [h.get(key) for h in history], "s-", label=key.replace("_", " "))
        curves.set_xlabel("epoch")
        curves.legend()
    else:
        curves.text(0.5, 0.5, "no training run yet", ha="center", va="center")
    curves.set_title(f"{task}: latest training run")
    names = [v.version for v in versions]
    scores = [v.score or 0.0 for v in versions]
    per_version.bar(names, scores, color=["tab:blue" if v.promoted else "tab:red" for v in versions])
    per_version.set_ylim(0, 1)
    per_version.set_ylabel("mean Dice on the frozen validation set")
    per_version.set_title(f"{task}: model versions")
    per_version.tick_params(axis="x", rotation=45)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return buffer.getvalue()
