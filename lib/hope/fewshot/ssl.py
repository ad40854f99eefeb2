"""Self-supervised pretraining on unlabelled images with superpixel pseudo-labels (SSL-ALPNet).

Each unlabelled image is over-segmented once (Felzenszwalb); an episode takes one superpixel of one image as a
pseudo-lesion, and builds the support and the query from two independent random augmentations (affine warp,
gamma, noise) of that same image and superpixel. Segmenting the superpixel in the query from the support trains
the encoder to produce features that group pixels of one structure across deformation and contrast changes, with
no manual label.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from skimage.segmentation import felzenszwalb

from hope.fewshot.episodes import SegmentationEpisode, SupportSet
from hope.fewshot.meta_train import TrainConfig, train_episodic
from hope.fewshot.prototypes import PrototypeSegmenter


def superpixels(image: np.ndarray, scale: float = 50.0, sigma: float = 0.8, min_size: int = 20) -> np.ndarray:
    """Felzenszwalb superpixels of a 2D image: an ``int`` label map ``0..n-1`` of the image's shape."""
    return felzenszwalb(np.asarray(image, dtype=np.float64), scale=scale, sigma=sigma, min_size=min_size)


@dataclass(frozen=True)
class AugmentConfig:
    """Ranges of the random augmentation applied independently to support and query."""

    rotate: float = 0.3  # radians
    scale: float = 0.15  # relative
    translate: float = 0.08  # fraction of the image size
    gamma: tuple[float, float] = (0.7, 1.5)
    noise: float = 0.02


def augment(images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator,
            config: AugmentConfig = AugmentConfig()) -> tuple[torch.Tensor, torch.Tensor]:
    """A random affine warp (bilinear images, nearest masks), gamma and Gaussian noise, one draw per image.

    ``images`` and ``masks`` are ``(B, 1, H, W)``; images are expected in about ``[0, 1]``.
    """
    warped, warped_masks, _ = augment_with_anatomy(images, masks, None, rng, config)
    return warped, warped_masks


def augment_with_anatomy(images: torch.Tensor, masks: torch.Tensor, anatomy: torch.Tensor | None,
                         rng: np.random.Generator, config: AugmentConfig = AugmentConfig()
                         ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """:func:`augment`, with the images' ``(B, K, H, W)`` anatomy features (when given) warped alike (bilinear)."""
    n = images.shape[0]
    angle = rng.uniform(-config.rotate, config.rotate, n)
    zoom = 1.0 + rng.uniform(-config.scale, config.scale, n)
    shift = rng.uniform(-config.translate, config.translate, (n, 2)) * 2
    theta = np.zeros((n, 2, 3))
    theta[:, 0, 0], theta[:, 0, 1] = np.cos(angle) / zoom, -np.sin(angle) / zoom
    theta[:, 1, 0], theta[:, 1, 1] = np.sin(angle) / zoom, np.cos(angle) / zoom
    theta[:, :, 2] = shift
    like = {"dtype": images.dtype, "device": images.device}
    grid = F.affine_grid(torch.as_tensor(theta, **like), list(images.shape), align_corners=False)
    warped = F.grid_sample(images, grid, mode="bilinear", padding_mode="border", align_corners=False)
    warped_masks = F.grid_sample(masks, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    warped_anatomy = None if anatomy is None else F.grid_sample(anatomy.to(**like), grid, mode="bilinear",
                                                                padding_mode="border", align_corners=False)
    gamma = torch.as_tensor(rng.uniform(*config.gamma, (n, 1, 1, 1)), **like)
    noise = torch.as_tensor(rng.standard_normal(images.shape) * config.noise, **like)
    return warped.clamp(min=0.0) ** gamma + noise, warped_masks, warped_anatomy


class SuperpixelEpisodes:
    """Builds self-supervised 1-way episodes from unlabelled ``(N, H, W)`` images.

    Superpixels with ``min_pixels <= area <= max_fraction * H * W`` are the candidate pseudo-lesions. Calling the
    object with a generator returns a :class:`~hope.fewshot.episodes.SegmentationEpisode` whose support holds 1 to
    ``max_shots`` augmented copies of the image and whose query holds one more.
    """

    def __init__(self, images: np.ndarray, max_shots: int = 1, min_pixels: int = 20, max_fraction: float = 0.1,
                 augment_config: AugmentConfig = AugmentConfig()) -> None:
        self.images = torch.from_numpy(np.asarray(images, dtype=np.float32))[:, None]
        self.max_shots = max_shots
        self.augment_config = augment_config
        self.candidates: list[tuple[int, np.ndarray]] = []
        max_pixels = max_fraction * images.shape[-1] * images.shape[-2]
        for index, image in enumerate(images):
            labels = superpixels(image)
            for value, area in enumerate(np.bincount(labels.ravel())):
                if min_pixels <= area <= max_pixels:
                    self.candidates.append((index, labels == value))
        if not self.candidates:
            raise ValueError("no superpixel of a usable size in the unlabelled images")

    def __call__(self, rng: np.random.Generator) -> SegmentationEpisode:
        """One pseudo-labelled episode, drawn with ``rng`` (redrawn while a warp moves the superpixel out of view)."""
        while True:
            index, mask = self.candidates[int(rng.integers(len(self.candidates)))]
            shots = int(rng.integers(1, self.max_shots + 1))
            images = self.images[index : index + 1].expand(shots + 1, -1, -1, -1)
            masks = torch.from_numpy(mask.astype(np.float32))[None, None].expand(shots + 1, -1, -1, -1)
            images, masks = augment(images, masks, rng, self.augment_config)
            if bool(masks.flatten(1).any(dim=1).all()):
                break
        names, grades = ("superpixel",) * shots, (None,) * shots
        support = SupportSet(images[:shots], masks[:shots], names, grades)
        query = SupportSet(images[shots:], masks[shots:], names[:1], grades[:1])
        return SegmentationEpisode("superpixel", support, query)


def pretrain_ssl(
    segmenter: PrototypeSegmenter,
    unlabelled: np.ndarray,
    config: TrainConfig,
    max_shots: int = 1,
    progress: bool = True,
    callback: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Self-supervised episodic training of ``segmenter``'s encoder on unlabelled ``(N, H, W)`` images.

    Returns the loss per step. ``callback(step, loss)`` is called after each step (progress reporting).
    """
    episodes = SuperpixelEpisodes(unlabelled, max_shots=max_shots)
    return train_episodic(segmenter, episodes, config, desc="SSL (superpixels)", progress=progress,
                          callback=callback)

