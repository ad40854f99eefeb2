"""``POST /train/fewshot_tumor``: refresh the few-shot encoder on the store, then publish it as a new version.

Two phases, both episodic (:mod:`hope.fewshot.meta_train`), starting from the served weights:

1. self-supervised: superpixel pseudo-label episodes (SSL-ALPNet) on slices of every image series in the store,
   labelled or not, so the encoder follows the studies as they arrive;
2. meta-training: 1-way episodes of the recorded tumour types that have at least two labelled cases (support and
   query from the case records and final labels, as at inference).

Progress (phase, step, loss) is written to ``<model_dir>/<task>/train_stats.json`` after every step, and the run's
losses become the new version's metrics. Nothing is published when a run fails.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from monailabel.interfaces.datastore import Datastore
from monailabel.interfaces.tasks.train import TrainTask

from hope import fileio
from hope.fewshot.checkpoint import load_segmenter, save_checkpoint
from hope.fewshot.config import FewShotDefinition
from hope.fewshot.episodes import LabelledCase
from hope.fewshot.meta_train import TrainConfig, meta_train_segmenter
from hope.fewshot.ssl import pretrain_ssl
from hope.fewshot.support_library import SupportLibrary
from hope.fewshot.volumes import to_slices
from hope.models.registry import ModelRegistry

logger = logging.getLogger(__name__)


def store_slices(images: list[sitk.Image], definition: FewShotDefinition, per_series: int,
                 rng: np.random.Generator) -> np.ndarray:
    """``(N, W, W)`` unlabelled training slices: ``per_series`` evenly spaced slices of each image, each cut to a
    random ``support_window`` square (edge-padded when the slice is smaller)."""
    window = definition.slices.support_window
    out = []
    for image in images:
        pixels = to_slices(image, definition.slices).pixels
        for z in np.unique(np.linspace(0, len(pixels) - 1, per_series).round().astype(int)):
            padded = np.pad(pixels[z], [(0, max(0, window - n)) for n in pixels[z].shape], mode="edge")
            top = int(rng.integers(0, padded.shape[0] - window + 1))
            left = int(rng.integers(0, padded.shape[1] - window + 1))
            out.append(padded[top : top + window, left : left + window])
    return np.stack(out).astype(np.float32) if out else np.zeros((0, window, window), np.float32)


class FewShotTrainer(TrainTask):
    """Refreshes the ``fewshot_tumor`` encoder: SSL on the store's slices, then meta-training on recorded types.

    ``list_images()`` lists the store's image series of the task's modalities and ``load_image(uid)`` reads one.
    """

    def __init__(
        self,
        definition: FewShotDefinition,
        registry: ModelRegistry,
        library: SupportLibrary,
        list_images: Callable[[], list[str]],
        load_image: Callable[[str], sitk.Image],
    ) -> None:
        super().__init__(f"Refresh the {definition.name} encoder (SSL on the store, meta-training on case records)")
        self.definition = definition
        self.registry = registry
        self.library = library
        self.list_images = list_images
        self.load_image = load_image
        self.stats_path = registry.root.parent / "train_stats.json"

    def config(self) -> dict[str, Any]:
        """Default parameters (published in ``/info/``; a request may override them within the task's bounds)."""
        return dict(self.definition.training.defaults)

    def stats(self) -> dict[str, Any]:
        """The last run's progress."""
        return json.loads(self.stats_path.read_text()) if self.stats_path.exists() else {}

    def _progress(self, record: dict[str, Any]) -> Callable[[int, float], None]:
        def report(step: int, loss: float) -> None:
            record.update(step=step + 1, loss=round(loss, 5))
            if (step + 1) % 10 == 0 or step + 1 == record["steps"]:
                record["history"].append({"epoch": len(record["history"]) + 1, "loss": record["loss"],
                                          "phase": record["phase"]})
            fileio.write_json(self.stats_path, record, default=str)

        return report

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Train and publish; returns the new version and the final losses."""
        params = {**self.config(), **{k: v for k, v in request.items() if k in self.config()}}
        rng = np.random.default_rng(int(params["seed"]))
        start = time.time()
        series = self.list_images()
        unlabelled = store_slices([self.load_image(uid) for uid in series], self.definition,
                                  int(params["slices_per_series"]), rng)
        cases = self.library.cases()
        by_type: dict[str, list[LabelledCase]] = defaultdict(list)
        counts: dict[str, int] = defaultdict(int)
        for case in cases:
            by_type[case.tumor_type].extend(case.slices)
            counts[case.tumor_type] += 1
        meta_types = {t: by_type[t] for t, n in counts.items() if n >= 2}
        segmenter = load_segmenter(self.registry.served_path, self.definition)
        record: dict[str, Any] = {"task": self.definition.name, "status": "RUNNING", "history": [],
                                  "series": len(series), "slices": len(unlabelled),
                                  "meta_types": sorted(meta_types), "started_by": request.get("started_by")}
        metrics: dict[str, float] = {}
        lr = float(params["learning_rate"])
        phases = [("ssl", int(params["ssl_steps"]) if len(unlabelled) >= 2 else 0),
                  ("meta", int(params["meta_steps"]) if meta_types else 0)]
        for phase, steps in phases:
            if not steps:
                continue
            record.update(phase=phase, steps=steps, step=0)
            config = TrainConfig(steps=steps, lr=lr, seed=int(params["seed"]))
            if phase == "ssl":
                losses = pretrain_ssl(segmenter, unlabelled, config, max_shots=3, progress=False,
                                      callback=self._progress(record))
            else:
                shots = max(1, min(5, min(len(v) for v in meta_types.values()) - 1))
                losses = meta_train_segmenter(segmenter, meta_types, config, max_shots=shots, progress=False,
                                              callback=self._progress(record))
            metrics[f"{phase}_loss"] = float(np.mean(losses[-10:]))
        if not metrics:
            raise RuntimeError("nothing to train on: the store has fewer than 2 image slices and no recorded type "
                               "with 2 labelled cases; store studies first")
        with tempfile.TemporaryDirectory() as tmp:
            trained_on = {"series": series, "meta_types": sorted(meta_types), "cases": [c.summary() for c in cases]}
            weights = save_checkpoint(Path(tmp) / "model.pt", self.definition, segmenter, trained_on)
            version = self.registry.add(weights, started_by=str(request.get("started_by") or "admin"),
                                        metrics=metrics, training_data=[c.label_uid for c in cases],
                                        params=params, note="refreshed on the store (SSL + meta-training)")
        record.update(status="COMPLETED", version=version.version, seconds=round(time.time() - start, 1), **metrics)
        fileio.write_json(self.stats_path, record, default=str)
        logger.info(f"{self.definition.name}: published {version.version} ({metrics})")
        return record
