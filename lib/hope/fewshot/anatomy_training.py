"""Anatomy features for meta-training: drawn from phantom label maps, with the errors a supervised network makes.

Serving joins the encoder's features with the kind probabilities of a supervised network
(:mod:`hope.fewshot.anatomy_features`). An encoder meta-trained without them learns to do alone what the anatomy
features already do, and on real MR an untrained encoder joined with them did as well as the trained one
(``scripts/bench_real.py``). Meta-training with them in the loop lets the encoder learn what they leave out.

A phantom's label map gives exact kind maps, which would teach the encoder to lean on the anatomy part entirely.
The networks are not exact on real scans: they blur borders, and miss a structure in a whole scan (``spine_mr``
sees no cord in the SCT T2 scan, whose field of view is a few centimetres around the cord). So every episode's
support and query features get errors of their own (:class:`RandAnatomyErrorsd`): a kind missed (its mass moved to
background) for the whole set, blur, and smooth noise.

Measured (``scripts/bench_real.py --tasks ''``): 2,000 such steps from the encoder meta-trained without them
lifted real MR 5-shot from 0.20 to 0.25 (an untrained encoder joined with the features: 0.23), and lowered CT
5-shot from 0.60 to 0.50 and the phantom chordoma of ``test_fewshot_flow.py`` from 0.73 to 0.65.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Mapping

import numpy as np
import torch
from monai.config import KeysCollection
from monai.transforms import MapTransform, RandomizableTransform
from scipy import ndimage

from hope.fewshot.episodes import SegmentationEpisode
from hope.fewshot.meta_train import EpisodeSource
from hope.label_kinds import KINDS


class RandAnatomyErrorsd(RandomizableTransform, MapTransform):
    """Give exact ``(N, K, H, W)`` kind maps the errors of a supervised network, each key its own.

    For each key (a support set's or a query's slices): each kind but background is missed with ``miss_prob``
    (``tumor_miss_prob`` for ``tumor``) on every slice of the key, its mass moved to background; then every map is
    blurred in-plane with a Gaussian of a sigma drawn from ``sigma_range`` (pixels), mixed with smooth positive
    noise (a share drawn from ``(0, noise)``), and renormalised to sum to 1 at each pixel.

    Args:
        keys: the ``(N, K, H, W)`` arrays or tensors to degrade.
        miss_prob: the probability, per key and kind, that the network misses the kind.
        tumor_miss_prob: the same for ``tumor``: real lesions are rare in what the networks learnt from.
        sigma_range: in-plane blur, pixels.
        noise: the largest share of noise mixed in.
        prob: the probability of degrading a key at all.
        allow_missing_keys: do not raise if a key is missing.
    """

    def __init__(
        self,
        keys: KeysCollection,
        miss_prob: float = 0.15,
        tumor_miss_prob: float = 0.6,
        sigma_range: tuple[float, float] = (0.5, 2.0),
        noise: float = 0.3,
        prob: float = 1.0,
        allow_missing_keys: bool = False,
    ) -> None:
        RandomizableTransform.__init__(self, prob)
        MapTransform.__init__(self, keys, allow_missing_keys)
        for name, value in (("miss_prob", miss_prob), ("tumor_miss_prob", tumor_miss_prob), ("noise", noise)):
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability or share in [0, 1], got {value}")
        if not 0.0 <= sigma_range[0] <= sigma_range[1]:
            raise ValueError(f"sigma_range must be (low, high) with 0 <= low <= high, got {sigma_range}")
        self.miss = np.full(len(KINDS), miss_prob)
        self.miss[0] = 0.0
        self.miss[KINDS.index("tumor")] = tumor_miss_prob
        self.sigma_range = sigma_range
        self.noise = noise

    def __call__(self, data: Mapping[Hashable, torch.Tensor | np.ndarray]) -> dict[Hashable, torch.Tensor | np.ndarray]:
        """Degrade each key with errors drawn for it alone."""
        d = dict(data)
        for key in self.key_iterator(d):
            self.randomize(None)
            if self._do_transform:
                d[key] = self._degrade(d[key])
        return d

    def _degrade(self, maps: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
        array = np.asarray(maps.cpu() if isinstance(maps, torch.Tensor) else maps, dtype=np.float32).copy()
        if array.ndim != 4 or array.shape[1] != len(KINDS):
            raise ValueError(f"anatomy maps must be (N, {len(KINDS)}, H, W), got {array.shape}")
        missed = np.flatnonzero(self.R.random_sample(len(KINDS)) < self.miss)
        array[:, 0] += array[:, missed].sum(axis=1)
        array[:, missed] = 0.0
        sigma = self.R.uniform(*self.sigma_range)
        array = ndimage.gaussian_filter(array, (0, 0, sigma, sigma))
        share = self.R.uniform(0.0, self.noise)
        noise = ndimage.gaussian_filter(self.R.random_sample(array.shape), (0, 0, 3.0, 3.0))
        array = (1.0 - share) * array + share * noise / noise.sum(axis=1, keepdims=True)
        array /= array.sum(axis=1, keepdims=True)
        return torch.from_numpy(array.astype(np.float32)) if isinstance(maps, torch.Tensor) else array


def with_anatomy_errors(source: EpisodeSource, errors: RandAnatomyErrorsd) -> EpisodeSource:
    """``source``'s episodes (whose support and query sets carry exact kind maps) with ``errors`` given to each
    set's anatomy features, drawn from the episode's generator."""

    def sample(rng: np.random.Generator) -> SegmentationEpisode:
        episode = source(rng)
        if episode.support.anatomy is None or episode.query.anatomy is None:
            raise ValueError(f"an episode of {episode.tumor_type!r} has no anatomy features to give errors to")
        errors.set_random_state(seed=int(rng.integers(2**31)))
        out = errors({"support": episode.support.anatomy, "query": episode.query.anatomy})
        return SegmentationEpisode(episode.tumor_type, dataclasses.replace(episode.support, anatomy=out["support"]),
                                   dataclasses.replace(episode.query, anatomy=out["query"]))

    return sample

