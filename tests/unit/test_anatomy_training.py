"""Meta-training with anatomy features in the loop (hope.fewshot.anatomy_training): exact kind maps from phantom
labels, the errors a network makes, and the join in the training loss."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from hope.config import load_task
from hope.fewshot.adapt import adapt
from hope.fewshot.anatomy_episodes import anatomy_episodes, anatomy_slices
from hope.fewshot.anatomy_training import RandAnatomyErrorsd, with_anatomy_errors
from hope.fewshot.config import SliceSpec
from hope.fewshot.encoder import ConvEncoder
from hope.fewshot.episodes import build_support_set, group_by_type
from hope.fewshot.meta_train import episodes_loss, labelled_episodes
from hope.fewshot.prototypes import PrototypeSegmenter
from hope.label_kinds import KINDS, kind_index, one_hot_kinds
from hope.phantoms.tumor_types import BASE_TYPES, generate_cases


def _maps(n: int = 2, size: int = 32) -> np.ndarray:
    """``(n, K, size, size)`` exact maps: a vertebra square with a cord disc inside the canal."""
    yy, xx = np.mgrid[:size, :size]
    canal = np.hypot(yy - 20, xx - 16) < 6
    index = kind_index({"vertebra": (yy < 12) & (xx > 8) & (xx < 24), "canal": canal,
                        "cord": np.hypot(yy - 20, xx - 16) < 3})
    return np.stack([one_hot_kinds(index)] * n)


def test_kind_index_and_one_hot_follow_the_kinds_order() -> None:
    maps = _maps(1)[0]
    assert maps.shape == (len(KINDS), 32, 32)
    assert np.allclose(maps.sum(axis=0), 1.0)
    assert maps[KINDS.index("cord"), 20, 16] == 1.0  # the later kind wins inside the canal
    assert maps[KINDS.index("canal"), 20, 21] == 1.0
    assert maps[0, 31, 0] == 1.0
    with pytest.raises(ValueError, match="unknown anatomy kinds"):
        kind_index({"liver": np.ones((2, 2), bool)})


def test_errors_miss_whole_kinds_blur_and_stay_distributions() -> None:
    exact = _maps()
    errors = RandAnatomyErrorsd(keys=["support", "query"], miss_prob=1.0, tumor_miss_prob=1.0, noise=0.0,
                                sigma_range=(1.0, 1.0))
    out = errors({"support": exact, "query": torch.from_numpy(exact)})
    assert isinstance(out["query"], torch.Tensor) and isinstance(out["support"], np.ndarray)
    assert np.allclose(out["support"].sum(axis=1), 1.0, atol=1e-5)
    assert np.allclose(out["support"][:, 1:], 0.0)  # every structure missed: all background
    kept = RandAnatomyErrorsd(keys="a", miss_prob=0.0, noise=0.0, sigma_range=(1.0, 1.0))({"a": exact})["a"]
    cord = KINDS.index("cord")
    assert 0.2 < kept[0, cord, 20, 16] < 1.0  # blurred, not dropped
    assert kept[0, cord, 20, 16] > kept[0, cord, 20, 25]
    with pytest.raises(ValueError, match=r"\(N, 6, H, W\)"):
        errors({"support": exact[0], "query": exact})


def test_errors_are_drawn_per_key_and_reproducible_per_seed() -> None:
    exact = _maps()
    errors = RandAnatomyErrorsd(keys=["support", "query"], miss_prob=0.5)
    errors.set_random_state(seed=3)
    first = errors({"support": exact, "query": exact})
    errors.set_random_state(seed=3)
    again = errors({"support": exact, "query": exact})
    assert np.allclose(first["support"], again["support"]) and np.allclose(first["query"], again["query"])
    assert not np.allclose(first["support"], first["query"])


def test_phantom_tumour_cases_carry_exact_kind_maps() -> None:
    case = generate_cases(BASE_TYPES[:1], 1, with_anatomy=True)[0]
    assert case.anatomy is not None and case.anatomy.shape == (len(KINDS), *case.image.shape)
    assert np.array_equal(case.anatomy[KINDS.index("tumor")] > 0, case.mask > 0)
    assert case.anatomy[KINDS.index("vertebra")].sum() > 0 and case.anatomy[KINDS.index("canal")].sum() > 0
    assert generate_cases(BASE_TYPES[:1], 1)[0].anatomy is None


def test_training_loss_joins_the_anatomy_features() -> None:
    cases = group_by_type(generate_cases(BASE_TYPES[:2], 4, with_anatomy=True))
    subjects = anatomy_slices(load_task("spine_mr"), range(2))
    errors = RandAnatomyErrorsd(keys=["support", "query"])
    for source in (labelled_episodes(cases, 2), anatomy_episodes(subjects, SliceSpec(), max_shots=2)):
        episode = with_anatomy_errors(source, errors)(np.random.default_rng(0))
        assert episode.support.anatomy.shape[:2] == (len(episode.support), len(KINDS))
        assert episode.query.anatomy.shape[-2:] == episode.query.images.shape[-2:]
        assert torch.allclose(episode.query.anatomy.sum(dim=1), torch.ones(1), atol=1e-4)
        torch.manual_seed(0)
        joined = PrototypeSegmenter(ConvEncoder(), anatomy_weight=1.0)
        alone = PrototypeSegmenter(joined.encoder, anatomy_weight=0.0)
        assert not torch.isclose(episodes_loss(joined, [episode]), episodes_loss(alone, [episode]))
    with pytest.raises(ValueError, match="no anatomy features"):
        with_anatomy_errors(labelled_episodes(group_by_type(generate_cases(BASE_TYPES[:1], 3)), 1),
                            errors)(np.random.default_rng(0))


def test_segment_and_adaptation_join_the_anatomy_features() -> None:
    cases = generate_cases(BASE_TYPES[:1], 3, with_anatomy=True)
    support, query = build_support_set(cases[:2]), build_support_set(cases[2:])
    torch.manual_seed(0)
    segmenter = PrototypeSegmenter(ConvEncoder(), anatomy_weight=1.0).eval()
    joined = segmenter.segment(support, query.images, query.anatomy)
    blind = PrototypeSegmenter(segmenter.encoder).eval().segment(build_support_set(
        [replace(c, anatomy=None) for c in cases[:2]]), query.images)
    assert joined.shape == blind.shape and not torch.allclose(joined, blind)
    with pytest.raises(ValueError, match="both the support set and the query"):
        segmenter.segment(support, query.images)
    for shots in (support, build_support_set(cases[:1])):  # leave-one-out, and an augmented self-support
        params = adapt(segmenter, shots, steps=1, lr=0.05)
        changed = [name for name, p in segmenter.named_parameters() if not torch.equal(p, params[name])]
        assert changed
