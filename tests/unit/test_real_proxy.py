"""The real-data few-shot proxy: real slice stacks, within-volume episodes, query windows placed by supports only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from hope.benchmarks import real_proxy
from hope.benchmarks.real_proxy import (
    MIN_GAP,
    StructureSlices,
    build_episode,
    evaluate_real,
    load_case,
    query_window,
    real_cases,
    sample_episodes,
)
from hope.fewshot.checkpoint import build_segmenter
from hope.fewshot.config import load_fewshot_task

SPEC = load_fewshot_task("fewshot_tumor").slices


def _cord_case(shared_data: Path) -> real_proxy.RealCase:
    return next(c for c in real_cases(shared_data) if c.folder == "mr-cervical-cord")


def test_query_window_follows_support_centroids() -> None:
    mask = np.zeros((200, 150), np.uint8)
    mask[8:13, 8:13] = 1  # centroid (10, 10): the window is pushed inside the slice
    assert query_window([mask], (200, 150)) == (slice(0, 96), slice(0, 96))
    other = np.zeros_like(mask)
    other[100:103, 70:73] = 1  # mean of (10, 10) and (101, 71) is (55.5, 40.5)
    assert query_window([mask, other], (200, 150)) == (slice(8, 104), slice(0, 96))
    assert query_window([mask[:60, :52]], (60, 52)) == (slice(0, 60), slice(0, 52))


def test_query_window_ignores_the_query_lesion() -> None:
    """A query whose lesion moved away from the supports' is not recentred on it."""
    pixels = np.zeros((6, 200, 200), np.float32)
    mask = np.zeros((6, 200, 200), np.uint8)
    mask[:3, 20:40, 20:40] = 1
    mask[5, 150:170, 150:170] = 1
    episode = build_episode(StructureSlices("moving", "synthetic", "CT", pixels, mask), [0, 1, 2], 5, SPEC)
    assert episode.window == (slice(0, 96), slice(0, 96))
    assert episode.query_mask.sum() == 0 and episode.query_coverage == 0.0
    assert tuple(episode.support.images.shape) == (3, 1, SPEC.support_window, SPEC.support_window)


def test_real_cord_episodes(shared_data: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (cord,) = load_case(_cord_case(shared_data), shared_data, SPEC)
    assert cord.pixels.shape == cord.mask.shape and cord.pixels.ndim == 3
    assert cord.pixels.min() >= 0.0 and cord.pixels.max() <= 1.0
    assert len(cord.candidates()) >= 10

    seen: list[list[np.ndarray]] = []
    original = real_proxy.query_window

    def spy(support_masks: list[np.ndarray], shape: tuple[int, int], size: int = 96) -> tuple[slice, slice]:
        seen.append(list(support_masks))
        return original(support_masks, shape, size)

    monkeypatch.setattr(real_proxy, "query_window", spy)
    episodes = sample_episodes(cord, 2, 2, np.random.default_rng(0), SPEC)
    assert len(episodes) == 2 and len(seen) == 2
    for episode, masks in zip(episodes, seen, strict=True):
        assert all(abs(z - episode.query_z) >= MIN_GAP for z in episode.support_z)
        assert len(masks) == len(episode.support_z) == 2
        for mask, z in zip(masks, episode.support_z, strict=True):
            np.testing.assert_array_equal(mask, cord.mask[z])
        assert tuple(episode.support.images.shape) == (2, 1, SPEC.support_window, SPEC.support_window)
        assert episode.query_image.shape == episode.query_mask.shape == cord.mask.shape[1:]  # slice < 96 px

    torch.manual_seed(0)
    segmenter = build_segmenter(load_fewshot_task("fewshot_tumor")).eval()
    result = evaluate_real({"untrained": segmenter}, shared_data, shots=(1, 5), episodes=2,
                           cases=[_cord_case(shared_data)])
    assert result["structures"]["spinal_cord"]["modality"] == "MR"
    for k in ("1", "5"):
        scores = result["shots"][k]["structures"]["spinal_cord"]
        assert scores["episodes"] == 2 and scores["shots_used"] == int(k)
        assert 0.0 <= scores["dice"]["untrained"] <= 1.0
        assert result["shots"][k]["mean"]["untrained"] == scores["dice"]["untrained"]


def test_unlabelled_windows_are_cut_inside_the_body() -> None:
    """Self-supervision crops have the asked size and are centred on bright (body) pixels, never on air only."""
    pixels = np.zeros((3, 50, 60), np.float32)
    pixels[:, 20:30, 40:50] = 0.8
    structure = real_proxy.StructureSlices("s", "case", "MR", pixels, np.zeros_like(pixels, dtype=np.uint8))
    crops = real_proxy.unlabelled_windows([structure, structure], 5, 16, np.random.default_rng(0))
    assert crops.shape == (5, 16, 16)
    assert all(c[8, 8] == pytest.approx(0.8) for c in crops)
