"""Contrast-randomised few-shot episodes of spine anatomy (hope.fewshot.anatomy_episodes), and meta-training on
them beside the phantom tumour types."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hope.config import load_task
from hope.fewshot.anatomy_episodes import KINDS, anatomy_episodes, anatomy_slices, mixed_episodes, random_contrast
from hope.fewshot.config import SliceSpec
from hope.fewshot.encoder import ConvEncoder
from hope.fewshot.episodes import LabelledCase, group_by_type
from hope.fewshot.meta_train import TrainConfig, episodes_loss, labelled_episodes, train_episodic
from hope.fewshot.prototypes import PrototypeSegmenter


@pytest.fixture(scope="module")
def subjects() -> list:
    return anatomy_slices(load_task("spine_mr"), range(3))


def test_every_kind_has_slices(subjects: list) -> None:
    for subject in subjects:
        assert set(subject.slices) == set(KINDS)
        for kind, slices in subject.slices.items():
            assert len(slices) > 0, kind
            assert subject.masks[kind][slices].reshape(len(slices), -1).sum(axis=1).min() > 0


def test_episodes_pair_two_subjects_in_two_contrasts(subjects: list) -> None:
    source = anatomy_episodes(subjects, SliceSpec(), max_shots=3)
    rng = np.random.default_rng(0)
    for _ in range(8):
        episode = source(rng)
        assert episode.tumor_type in KINDS
        assert 1 <= len(episode.support) <= 3 and len(episode.query) == 1
        assert episode.query.images.shape[-2:] == subjects[0].tissues.shape[-2:]  # the whole query slice
        assert float(episode.support.masks.sum()) > 0 and float(episode.query.masks.sum()) > 0
        assert float(episode.query.images.min()) >= 0.0 and float(episode.query.images.max()) <= 1.0


def test_contrast_is_random_per_seed_and_shared_within_a_stack(subjects: list) -> None:
    tissues = subjects[0].tissues[40:42][None].astype(np.float32)
    a = np.asarray(random_contrast(1)({"tissues": tissues})["image"])
    b = np.asarray(random_contrast(2)({"tissues": tissues})["image"])
    assert not np.allclose(a, b)
    assert np.allclose(a, np.asarray(random_contrast(1)({"tissues": tissues})["image"]))


def test_mixed_sources_train_with_images_of_several_sizes(subjects: list) -> None:
    square = np.zeros((64, 64), np.float32)
    square[20:40, 20:40] = 1.0
    cases = group_by_type([LabelledCase(square * 0.8 + 0.1, square, "box") for _ in range(4)])
    source = mixed_episodes([(labelled_episodes(cases, 2), 0.5), (anatomy_episodes(subjects, SliceSpec()), 0.5)])
    rng = np.random.default_rng(1)
    episodes = [source(rng) for _ in range(6)]
    assert len({e.query.images.shape[-2:] for e in episodes}) == 2
    torch.manual_seed(0)
    segmenter = PrototypeSegmenter(ConvEncoder())
    assert torch.isfinite(episodes_loss(segmenter, episodes))
    losses = train_episodic(segmenter, source, TrainConfig(steps=2, episodes_per_step=3), progress=False)
    assert len(losses) == 2 and all(np.isfinite(losses))
    with pytest.raises(ValueError, match="weights"):
        mixed_episodes([(source, 0.0)])
