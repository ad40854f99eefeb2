"""Background scoring: fills the :class:`~hope.activelearning.scores.ScoreStore` that strategies rank by.

* :class:`UncertaintyScoring` scores every unlabelled, unflagged series that has no score under the served model
  version: MC-dropout entropy, test-time-flip variance, tumour likelihood and a diversity feature vector, all
  from the same network the task serves (:func:`score_volume` does one volume).
* :class:`SuggestionDiceScoring` records, for each series with a final label, the Dice between that label and the
  suggestion the model had made (how much the annotator had to correct).
* :func:`score_all` runs scoring methods one after the other; :class:`ScoringWorker` runs it on a background
  thread whenever it is triggered (e.g. after each new model), coalescing triggers that arrive while it runs.
"""

from __future__ import annotations

import copy
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import SimpleITK as sitk
import torch
from monai.transforms import Compose
from monailabel.interfaces.datastore import Datastore, DefaultLabelTag
from monailabel.interfaces.tasks.scoring import ScoringMethod
from monailabel.tasks.infer.basic_infer import BasicInferTask
from torch import nn

from hope.activelearning.scores import ScoreStore, SeriesScores
from hope.activelearning.uncertainty import (
    Predictor,
    dice_per_label,
    feature_vector,
    mc_dropout_probs,
    predictive_entropy,
    sample_variance,
    tta_probs,
    tumor_likelihood,
    voxel_mean,
)

logger = logging.getLogger(__name__)

# The single-axis flips of a batched 3D volume, with the identity first.
DEFAULT_FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (4,))


class ServedWeights(Protocol):
    """Where a task's served weights are and which version they are: what scoring needs from the task's model
    registry (:class:`hope.models.registry.ModelRegistry`)."""

    served_path: Path

    def served_version(self) -> str | None:
        """The version whose weights are in ``served_path``."""


@dataclass(frozen=True)
class ScoringSettings:
    """How much work one series costs: ``mc_samples + len(flips)`` forward passes.

    ``top_fraction`` reduces voxel maps to the mean of their most uncertain voxels (``None``: all voxels).
    """

    mc_samples: int = 4
    flips: tuple[tuple[int, ...], ...] = DEFAULT_FLIPS
    top_fraction: float | None = None
    tumor_kernel: int = 3


def score_volume(
    network: nn.Module,
    image: torch.Tensor,
    *,
    task: str,
    series_uid: str,
    model_version: str,
    tumor_channel: int | None,
    voxel_volume_ml: float,
    settings: ScoringSettings = ScoringSettings(),
    predictor: Predictor | None = None,
) -> SeriesScores:
    """Every uncertainty score of one preprocessed volume ``image`` ``(1, 1, *spatial)``.

    Tumour likelihood and features come from the mean of the test-time-flip predictions (no dropout).
    """
    kwargs = {"predictor": predictor} if predictor is not None else {}
    mc = mc_dropout_probs(network, image, settings.mc_samples, **kwargs)
    tta = tta_probs(network, image, settings.flips, **kwargs)
    mean = tta.mean(dim=0)
    tumor = tumor_volume = None
    if tumor_channel is not None:
        tumor = tumor_likelihood(mean, tumor_channel, settings.tumor_kernel)
        tumor_volume = float(mean[tumor_channel].sum()) * voxel_volume_ml
    return SeriesScores(
        task=task,
        series_uid=series_uid,
        model_version=model_version,
        epistemic=voxel_mean(predictive_entropy(mc), settings.top_fraction),
        tta=voxel_mean(sample_variance(tta), settings.top_fraction),
        tumour=tumor,
        tumour_volume_ml=tumor_volume,
        features=feature_vector(image[0, 0], mean).tolist(),
    )


def load_weights(template: nn.Module, path: Path, device: torch.device) -> nn.Module:
    """A private copy of ``template`` with the weights of ``path`` (a state dict, or a checkpoint with ``model``)."""
    network = copy.deepcopy(template).to(device)
    state = torch.load(path, map_location=device, weights_only=True)
    network.load_state_dict(state.get("model", state))
    return network.eval()


def _read_label(path: str) -> np.ndarray:
    return sitk.GetArrayFromImage(sitk.ReadImage(path))


def _flagged(datastore: Datastore) -> set[str]:
    return set(getattr(datastore, "flagged", ()) or ())


class UncertaintyScoring(ScoringMethod):
    """Scores unlabelled series with the served model of one task (skipping series already scored by it).

    The network is a private copy (``network`` is the task's template, e.g. ``SegmentationTaskConfig.network``),
    so toggling dropout never affects concurrent inference. The run stops early, leaving the rest for the next
    run, when a newer model is published meanwhile. ``eligible(series_uid)`` keeps series the task cannot annotate
    (another modality) out. Request keys: ``device``, ``max_series`` (0: all).
    """

    def __init__(
        self,
        task: str,
        infer: BasicInferTask,
        network: nn.Module,
        model: ServedWeights,
        scores: ScoreStore,
        *,
        tumor_channel: int | None,
        spacing_mm: tuple[float, float, float],
        settings: ScoringSettings = ScoringSettings(),
        eligible: Callable[[str], bool] | None = None,
    ) -> None:
        super().__init__(f"Uncertainty, tumour likelihood and features of unlabelled series for {task}")
        self.task = task
        self.infer = infer
        self.network = network
        self.model = model
        self.scores = scores
        self.tumor_channel = tumor_channel
        self.voxel_volume_ml = float(np.prod(spacing_mm)) / 1000.0
        self.settings = settings
        self.eligible = eligible

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Score what is missing; return counts, the model version and per-series failures."""
        version = self.model.served_version()
        if version is None or not Path(self.model.served_path).exists():
            return {"task": self.task, "model_version": None, "scored": 0, "reason": "no served model"}
        flagged = _flagged(datastore)
        pool = [
            uid
            for uid in datastore.get_unlabeled_images()
            if uid not in flagged and (self.eligible is None or self.eligible(uid))
        ]
        missing = self.scores.missing(self.task, version, pool, "epistemic")
        limit = int(request.get("max_series") or 0)
        todo = missing[:limit] if limit else missing
        device = torch.device(request.get("device") or ("cuda" if torch.cuda.is_available() else "cpu"))
        network = load_weights(self.network, Path(self.model.served_path), device)
        if self.model.served_version() != version:
            return {"task": self.task, "model_version": version, "scored": 0, "reason": "model changed while loading"}
        inferer = self.infer.inferer({})
        pre = Compose(self.infer.pre_transforms({}))

        def predictor(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
            return inferer(x, net)

        scored, failed, stopped = 0, {}, False
        for uid in todo:
            if self.model.served_version() != version:
                stopped = True
                break
            try:
                image = pre({"image": datastore.get_image_uri(uid)})["image"]
                image = torch.as_tensor(image)[None].to(device)
                self.scores.put(
                    score_volume(
                        network,
                        image,
                        task=self.task,
                        series_uid=uid,
                        model_version=version,
                        tumor_channel=self.tumor_channel,
                        voxel_volume_ml=self.voxel_volume_ml,
                        settings=self.settings,
                        predictor=predictor,
                    )
                )
                scored += 1
            except Exception as exc:  # one unreadable series must not stop the others; reported in the result
                failed[uid] = f"{type(exc).__name__}: {exc}"
                logger.exception(f"scoring {self.task} on {uid} failed")
        logger.info(f"{self.task}: scored {scored} series with model {version} ({len(failed)} failed)")
        return {
            "task": self.task,
            "model_version": version,
            "scored": scored,
            "already_scored": len(pool) - len(missing),
            "stopped_for_newer_model": stopped,
            "failed": failed,
        }


def suggestion_dice(final_path: str, suggestion_path: str, labels: Mapping[str, int]) -> tuple[float, dict[str, float]]:
    """Dice of a final label file against a suggestion file on the same grid: the mean over labels present in
    either volume (1.0 when both are empty) and the Dice per label name.

    Raises:
        ValueError: the two volumes differ in shape.
    """
    final, suggested = _read_label(final_path), _read_label(suggestion_path)
    if final.shape != suggested.shape:
        raise ValueError(f"final label {final.shape} and suggestion {suggested.shape} differ in shape")
    per = dice_per_label(torch.from_numpy(final), torch.from_numpy(suggested), labels.values())
    names = {v: k for k, v in labels.items()}
    mean = float(np.mean(list(per.values()))) if per else 1.0
    return mean, {names[v]: d for v, d in per.items()}


# series UID -> (path of the suggestion the annotator started from, model version that made it), or None
SuggestionLookup = Callable[[str], tuple[str, str | None] | None]


class SuggestionDiceScoring(ScoringMethod):
    """Dice between each final label and the original suggestion of the same series, per label and mean.

    By default the suggestion is the datastore's ``original`` label (MONAI Label saves it when an infer request
    carries ``save_label``) and its version is that label's ``model_version`` info; pass ``suggestion`` to look it
    up elsewhere. Scores are stored under the suggestion's model version (``unknown`` when not recorded). The mean
    is over labels present in either volume (1.0 when both are empty).
    """

    def __init__(
        self,
        task: str,
        labels: Mapping[str, int],
        scores: ScoreStore,
        suggestion: SuggestionLookup | None = None,
    ) -> None:
        super().__init__(f"Dice of final labels against the original suggestions for {task}")
        self.task = task
        self.labels = dict(labels)
        self.scores = scores
        self.suggestion = suggestion

    @staticmethod
    def _original(datastore: Datastore, uid: str) -> tuple[str, str | None] | None:
        label_id = datastore.get_label_by_image_id(uid, DefaultLabelTag.ORIGINAL.value)
        if not label_id:
            return None
        info = datastore.get_label_info(label_id, DefaultLabelTag.ORIGINAL.value) or {}
        version = info.get("model_version") or info.get("params", {}).get("model_version")
        return datastore.get_label_uri(label_id, DefaultLabelTag.ORIGINAL.value), version

    def __call__(self, request: dict[str, Any], datastore: Datastore) -> dict[str, Any]:
        """Compute the Dice of every labelled series that has a suggestion; return them and failures."""
        result: dict[str, float] = {}
        failed: dict[str, str] = {}
        for uid in datastore.get_labeled_images():
            found = self.suggestion(uid) if self.suggestion else self._original(datastore, uid)
            if found is None:
                continue
            try:
                mean, per = suggestion_dice(datastore.get_label_uri(uid, DefaultLabelTag.FINAL.value), found[0],
                                            self.labels)
            except Exception as exc:  # reported in the result, the other series go on
                failed[uid] = f"{type(exc).__name__}: {exc}"
                continue
            self.scores.put(
                SeriesScores(
                    task=self.task,
                    series_uid=uid,
                    model_version=found[1] or "unknown",
                    dice=mean,
                    dice_per_label=per,
                )
            )
            result[uid] = mean
        return {"task": self.task, "dice": result, "failed": failed}


def score_all(
    methods: Mapping[str, ScoringMethod], datastore: Datastore, request: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Run every scoring method in turn; a failing method is logged and reported, the others still run."""
    results: dict[str, Any] = {}
    for name, method in methods.items():
        try:
            results[name] = method(dict(request or {}), datastore)
        except Exception as exc:  # background work: report, never raise into the caller's thread
            logger.exception(f"scoring method {name} failed")
            results[name] = {"error": f"{type(exc).__name__}: {exc}"}
    return results


class ScoringWorker:
    """Runs :func:`score_all` on one daemon thread; triggers during a run make exactly one more run."""

    def __init__(self, methods: Mapping[str, ScoringMethod], datastore: Datastore) -> None:
        self.methods = dict(methods)
        self.datastore = datastore
        self.last_result: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._wanted = threading.Event()
        self._stop = threading.Event()
        self._idle = threading.Event()
        self._idle.set()
        self._thread = threading.Thread(target=self._loop, name="hope-scoring", daemon=True)
        self._thread.start()

    def trigger(self) -> None:
        """Ask for a scoring run (after a new model, new series or new final labels); returns at once."""
        with self._lock:
            self._idle.clear()
            self._wanted.set()

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Block until no run is pending or running; ``False`` on timeout."""
        return self._idle.wait(timeout)

    def stop(self) -> None:
        """Stop after the current run."""
        self._stop.set()
        self._wanted.set()

    def _loop(self) -> None:
        while True:
            self._wanted.wait()
            if self._stop.is_set():
                return
            with self._lock:
                self._wanted.clear()
            self.last_result = score_all(self.methods, self.datastore)
            with self._lock:
                if not self._wanted.is_set():
                    self._idle.set()
