"""Anatomy features for few-shot matching: where a supervised network sees each kind of spine structure.

The few-shot encoder learnt from phantom CT slices; it matches intensities more than anatomy, so a T2 support
finds nothing in a T1 query and a CT vertebra support loses to a one-line intensity rule
(``scripts/bench_real.py``). The supervised networks (``spine_ct``, ``spine_mr``) learnt from images synthesised
with random contrasts (:mod:`hope.synthesis`), and they see real cords and vertebrae in contrasts they never met.
Their softmax, summed per structure kind (:data:`KINDS`: every vertebral level is ``vertebra``), is a small
feature vector per voxel that says what anatomy is there whatever the contrast. Prototype matching joins it to the
encoder's features (:func:`hope.fewshot.prototypes.join_features`), so a support's mask describes both what its
lesion looks like and where in the anatomy it lies.

The network of the series' modality runs once per series, a sliding window as its task serves it; its kind
probabilities are resampled onto the few-shot slice stack (:class:`~hope.fewshot.volumes.SliceStack`).
"""

from __future__ import annotations

import hashlib
import json
import tempfile
import threading
from collections import OrderedDict
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.transforms import Compose

from hope.config import REPO_ROOT, TaskDefinition, load_task
from hope.fewshot.config import FewShotDefinition
from hope.fewshot.volumes import SliceStack
from hope.label_kinds import KINDS, label_kind
from hope.networks import build_network
from hope.sliding_window import served_inferer
from hope.transforms import infer_transforms

ALIASES = {"spinal_canal": "canal"}  # spine_ct's canal holds the cord too: CT does not tell them apart
LPS_FROM_RAS = np.diag([-1.0, -1.0, 1.0])


class AnatomyError(RuntimeError):
    """Anatomy features cannot be computed (no network for the modality, weights missing)."""


def kind_channels(labels: Mapping[str, int]) -> list[list[int]]:
    """For each of :data:`KINDS`, the network output channels (label values) that are of that kind.

    Channel 0 is background; a label of no listed kind (none in the shipped tasks) counts as background.
    """
    groups: list[list[int]] = [[0]] + [[] for _ in KINDS[1:]]
    for name, value in labels.items():
        kind = ALIASES.get(name, label_kind(name))
        groups[KINDS.index(kind) if kind in KINDS else 0].append(int(value))
    return groups


def pool_kinds(probabilities: torch.Tensor, groups: list[list[int]]) -> torch.Tensor:
    """``(C, ...)`` class probabilities summed into ``(len(groups), ...)`` kind probabilities."""
    return torch.stack([probabilities[g].sum(dim=0) if g else torch.zeros_like(probabilities[0]) for g in groups])


def task_grid_image(channel: np.ndarray, affine: np.ndarray) -> sitk.Image:
    """A ``(x, y, z)`` array with its RAS ``affine`` (MONAI's) as a SimpleITK (LPS) image."""
    image = sitk.GetImageFromArray(np.ascontiguousarray(channel.transpose(2, 1, 0), dtype=np.float32))
    matrix = LPS_FROM_RAS @ affine[:3, :3]
    spacing = np.linalg.norm(matrix, axis=0)
    image.SetSpacing(tuple(float(s) for s in spacing))
    image.SetDirection(tuple(float(d) for d in (matrix / spacing).ravel()))
    image.SetOrigin(tuple(float(o) for o in LPS_FROM_RAS @ affine[:3, 3]))
    return image


def shipped_definition(task: TaskDefinition) -> TaskDefinition:
    """``task`` under the network profile its shipped weights were trained with (their report's ``profile``, beside
    them), so that they load whichever profile this machine serves."""
    report = AnatomyFeatures.weights(task).with_suffix(".json")
    profile = json.loads(report.read_text()).get("profile", task.profile) if report.exists() else task.profile
    return task.with_profile(profile)


class AnatomyFeatures:
    """Kind probabilities of a series on its few-shot slice stack, from the supervised network of its modality.

    The kind probabilities of the last ``cache_series`` images (by content, geometry and modality) are kept:
    grading a series just segmented, or segmenting it against another type, does not run the network again.

    Args:
        tasks: the supervised task of each modality (``{"CT": spine_ct, "MR": spine_mr}``); its shipped weights
            (``network.pretrained``) are loaded on first use.
        device: where the networks run.
        cache_series: how many images' kind probabilities are kept (0: none).
    """

    def __init__(self, tasks: Mapping[str, TaskDefinition], device: str = "cpu", cache_series: int = 0) -> None:
        if cache_series < 0:
            raise ValueError(f"cache_series is a number of series, 0 or more; got {cache_series}")
        self.tasks = {m.upper(): t for m, t in tasks.items()}
        self.device = device
        self.cache_series = cache_series
        self.computed = 0  # network passes run (the cache's misses)
        self._networks: dict[str, torch.nn.Module] = {}
        self._cache: OrderedDict[str, sitk.Image] = OrderedDict()
        self._lock = threading.Lock()
        for modality, task in self.tasks.items():
            if not self.weights(task).exists():
                raise AnatomyError(f"anatomy features for {modality}: {task.name}'s shipped weights "
                                   f"{task.network.pretrained} are missing (scripts/pretrain_synthesis.py makes them)")

    @staticmethod
    def weights(task: TaskDefinition) -> Path:
        """The shipped weights of ``task`` (its ``network.pretrained``)."""
        if not task.network.pretrained:
            raise AnatomyError(f"task {task.name} ships no pretrained weights (network.pretrained) to give anatomy "
                               "features")
        return REPO_ROOT / task.network.pretrained

    def network(self, modality: str) -> tuple[TaskDefinition, torch.nn.Module]:
        """The task and loaded network of ``modality``."""
        task = self.tasks.get(modality.upper())
        if task is None:
            raise AnatomyError(f"no anatomy network for modality {modality!r}; configured: {', '.join(self.tasks)}")
        with self._lock:
            if task.name not in self._networks:
                network = build_network(task)
                state = torch.load(self.weights(task), map_location="cpu", weights_only=True)
                network.load_state_dict(state["model"])
                self._networks[task.name] = network.to(self.device).eval()
        return task, self._networks[task.name]

    def probabilities(self, image: sitk.Image, modality: str) -> sitk.Image:
        """The kind probabilities of ``image`` as a vector image of :data:`KINDS` components, on the task grid
        (kept for the last ``cache_series`` images)."""
        key = _image_key(image, modality) if self.cache_series else None
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        result = self._compute(image, modality)
        with self._lock:
            self.computed += 1
            if key is not None:
                self._cache[key] = result
                while len(self._cache) > self.cache_series:
                    self._cache.popitem(last=False)
        return result

    @torch.no_grad()
    def _compute(self, image: sitk.Image, modality: str) -> sitk.Image:
        task, network = self.network(modality)
        with tempfile.TemporaryDirectory(prefix="hope-anatomy-") as folder:
            path = Path(folder) / "image.nii.gz"
            sitk.WriteImage(image, str(path))
            data = Compose(infer_transforms(task, self.device))({"image": str(path)})
        volume = data["image"]
        logits = served_inferer(task)(volume[None].float().to(self.device), network)[0]
        kinds = pool_kinds(logits.float().softmax(dim=0), kind_channels(task.labels)).cpu().numpy()
        affine = np.asarray(volume.affine, dtype=float)
        return sitk.Compose([task_grid_image(channel, affine) for channel in kinds])

    def on_stack(self, image: sitk.Image, modality: str, stack: SliceStack) -> np.ndarray:
        """``(Z, K, H, W)`` float32 kind probabilities of ``image`` resampled (linearly) onto ``stack``."""
        vector = sitk.Resample(self.probabilities(image, modality), stack.grid, sitk.Transform(), sitk.sitkLinear,
                               0.0, sitk.sitkVectorFloat32)
        return np.ascontiguousarray(np.moveaxis(sitk.GetArrayFromImage(vector), -1, 1), dtype=np.float32)


def _image_key(image: sitk.Image, modality: str) -> str:
    """A digest of an image's voxels, geometry and modality."""
    digest = hashlib.sha256(np.ascontiguousarray(sitk.GetArrayViewFromImage(image)).tobytes())
    digest.update(repr((modality.upper(), image.GetSize(), image.GetSpacing(), image.GetOrigin(),
                        image.GetDirection(), image.GetPixelIDValue())).encode())
    return digest.hexdigest()


def anatomy_features(definition: FewShotDefinition, device: str = "cpu") -> AnatomyFeatures | None:
    """The anatomy features a few-shot task's ``anatomy:`` section names (``None`` without one): the shipped
    networks of its supervised tasks, under the profile they were trained with (:func:`shipped_definition`)."""
    if definition.anatomy is None:
        return None
    tasks = {modality: shipped_definition(load_task(name)) for modality, name in definition.anatomy.tasks.items()}
    return AnatomyFeatures(tasks, device, definition.anatomy.cache_series)
