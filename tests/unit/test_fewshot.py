"""Few-shot core: phantom tumour types, episodes, prototypes, grading, fast adaptation and SSL episodes."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hope.fewshot.adapt import adapt, segment_adapted
from hope.fewshot.encoder import ConvEncoder
from hope.fewshot.episodes import (
    GRADES,
    LabelledCase,
    build_support_set,
    group_by_type,
    sample_grading_episode,
    sample_segmentation_episode,
    sample_type_episode,
)
from hope.fewshot.grading import LesionEmbedder, LesionGrader, crop_lesion, fit_temperature
from hope.fewshot.prototypes import PrototypeSegmenter, class_scores, local_prototypes, masked_average_pooling
from hope.fewshot.ssl import SuperpixelEpisodes, augment, superpixels
from hope.phantoms.tumor_types import BASE_TYPES, HELDOUT_TYPES, TUMOR_TYPES, generate_cases, render_case

SIZE = 32  # small phantoms keep the tests fast


@pytest.fixture(scope="module")
def cases_by_type() -> dict[str, list[LabelledCase]]:
    """Six 32x32 cases of every type."""
    return group_by_type(generate_cases(list(TUMOR_TYPES), 6, seed=0, size=SIZE))


def _tiny_segmenter() -> PrototypeSegmenter:
    torch.manual_seed(0)
    return PrototypeSegmenter(ConvEncoder(channels=(4, 8), out_channels=8, dilations=(1,)), local_window=2)


# --- phantoms ---------------------------------------------------------------------------------------------------


def test_same_seed_same_case_and_seeds_differ() -> None:
    kind = TUMOR_TYPES["chordoma"]
    a, b, c = render_case(kind, 3), render_case(kind, 3), render_case(kind, 4)
    np.testing.assert_array_equal(a.image, b.image)
    np.testing.assert_array_equal(a.mask, b.mask)
    assert not np.array_equal(a.image, c.image)
    assert a.image.dtype == np.float32 and a.mask.dtype == np.uint8 and a.image.shape == (64, 64)
    assert a.tumor_type == "chordoma" and a.grade == "malignant" and a.mask.any()


def test_split_is_disjoint_and_held_out_types_cover_every_grade() -> None:
    assert not set(BASE_TYPES) & set(HELDOUT_TYPES)
    assert set(BASE_TYPES) | set(HELDOUT_TYPES) == set(TUMOR_TYPES) and len(TUMOR_TYPES) >= 8
    for split in (BASE_TYPES, HELDOUT_TYPES):
        assert {TUMOR_TYPES[t].grade for t in split} == set(GRADES)


def _lesion_stats(name: str, n: int = 12) -> tuple[float, float, float]:
    """Mean lesion intensity, mean lesion centroid row, mean isoperimetric ratio (1 for a disc)."""
    intensity, row, compactness = [], [], []
    for case in generate_cases([name], n, seed=1):
        mask = case.mask > 0
        intensity.append(case.image[mask].mean())
        row.append(np.nonzero(mask)[0].mean())
        edges = np.count_nonzero(np.diff(mask, axis=0)) + np.count_nonzero(np.diff(mask, axis=1))
        compactness.append(4 * math.pi * mask.sum() / edges**2)
    return float(np.mean(intensity)), float(np.mean(row)), float(np.mean(compactness))


def test_types_differ_in_location_and_shape_not_just_intensity() -> None:
    stats = {name: _lesion_stats(name) for name in TUMOR_TYPES}
    # grade is not a function of intensity: both benign and malignant types include bright and dark lesions
    by_grade = {g: [stats[t][0] for t in TUMOR_TYPES if TUMOR_TYPES[t].grade == g] for g in GRADES}
    assert max(by_grade["benign"]) > min(by_grade["malignant"]) + 0.2
    assert max(by_grade["malignant"]) > min(by_grade["benign"]) + 0.2
    # location: posterior-element lesions lie behind (higher rows than) vertebral-body lesions
    assert stats["osteoid_osteoma"][1] > stats["enostosis"][1] + 8
    # shape: spiculated lesions are far less compact than round ones
    assert stats["blastic_metastasis"][2] < 0.8 * stats["enostosis"][2]


# --- episodes ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shots", [1, 3])
def test_segmentation_episode_sizes_and_disjoint(cases_by_type: dict[str, list[LabelledCase]], shots: int) -> None:
    episode = sample_segmentation_episode(cases_by_type, shots, 2, np.random.default_rng(0))
    assert episode.support.images.shape == (shots, 1, SIZE, SIZE) and episode.support.masks.shape[0] == shots
    assert episode.query.images.shape == (2, 1, SIZE, SIZE)
    assert set(episode.support.tumor_types) == {episode.tumor_type}
    flat = torch.cat([episode.support.images, episode.query.images]).flatten(1)
    assert len({tuple(row.tolist()) for row in flat}) == shots + 2  # no case is both support and query


def test_base_episodes_never_contain_held_out_types(cases_by_type: dict[str, list[LabelledCase]]) -> None:
    base_only = {t: cases_by_type[t] for t in BASE_TYPES}
    rng = np.random.default_rng(1)
    seen = {sample_segmentation_episode(base_only, 1, 1, rng).tumor_type for _ in range(60)}
    seen |= {sample_segmentation_episode(cases_by_type, 1, 1, rng, types=BASE_TYPES).tumor_type for _ in range(60)}
    grading = [sample_grading_episode(base_only, 2, 1, rng) for _ in range(10)]
    seen |= {c.tumor_type for e in grading for c in (*e.support, *e.query)}
    assert seen <= set(BASE_TYPES) and not seen & set(HELDOUT_TYPES)


def test_grading_and_type_episodes(cases_by_type: dict[str, list[LabelledCase]]) -> None:
    rng = np.random.default_rng(2)
    episode = sample_grading_episode(cases_by_type, 2, 3, rng)
    assert episode.classes == GRADES and episode.label == "grade"
    assert len(episode.support) == 2 * len(GRADES) and len(episode.query) == 3 * len(GRADES)
    assert sorted(episode.targets(episode.support)) == [0, 0, 1, 1, 2, 2]
    typed = sample_type_episode(cases_by_type, 4, 1, 2, rng)
    assert len(typed.classes) == 4 and len(typed.support) == 4 and len(typed.query) == 8
    assert {c.tumor_type for c in typed.query} == set(typed.classes)
    with pytest.raises(ValueError, match="needs 7"):
        sample_segmentation_episode(cases_by_type, 5, 2, rng)


def test_support_set_rejects_empty_masks(cases_by_type: dict[str, list[LabelledCase]]) -> None:
    case = cases_by_type["enostosis"][0]
    empty = LabelledCase(case.image, np.zeros_like(case.mask), case.tumor_type, case.grade)
    with pytest.raises(ValueError, match="non-empty"):
        build_support_set([case, empty])


# --- prototypes -------------------------------------------------------------------------------------------------


def test_masked_average_pooling_exact() -> None:
    features = torch.arange(8, dtype=torch.float32).reshape(1, 2, 2, 2)  # channel 0: 0..3, channel 1: 4..7
    mask = torch.tensor([[[[1.0, 0.0], [1.0, 0.5]]]])
    expected = torch.tensor([[(0 + 2 + 0.5 * 3) / 2.5, (4 + 6 + 0.5 * 7) / 2.5]])
    torch.testing.assert_close(masked_average_pooling(features, mask), expected, atol=1e-4, rtol=0)


def test_local_prototypes_exact() -> None:
    features = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    mask = torch.zeros(1, 1, 4, 4)
    mask[..., :2, :2] = 1.0  # exactly the top-left 2x2 window
    mask[..., 3, 3] = 1.0  # a quarter of the bottom-right window: below the threshold
    protos = local_prototypes(features, mask, window=2, min_fraction=0.9)
    torch.testing.assert_close(protos, torch.tensor([[(0 + 1 + 4 + 5) / 4]]), atol=1e-4, rtol=0)


def test_class_scores_is_scaled_cosine_for_one_prototype() -> None:
    features = torch.tensor([[1.0, 1.0], [1.0, 0.0]]).T.reshape(1, 2, 1, 2)  # pixel a: (1, 1), pixel b: (1, 0)
    scores = class_scores(features, torch.tensor([[0.0, 3.0]]), scale=20.0)
    torch.testing.assert_close(scores, torch.tensor([[[20 / math.sqrt(2), 0.0]]]), atol=1e-4, rtol=0)


def _two_feature_slices() -> tuple[torch.Tensor, torch.Tensor]:
    """Features of two 8 x 8 query slices, a lesion square (rows and columns 2-5) of feature (1, 0) on (0, 1), and
    first-pass probabilities that find rows 2-4 of it on the first slice (0.9) and nothing on the second (0.45)."""
    features = torch.zeros(2, 2, 8, 8)
    features[:, 1] = 1.0
    features[:, 0, 2:6, 2:6], features[:, 1, 2:6, 2:6] = 1.0, 0.0
    lesion = torch.full((2, 8, 8), 0.1)
    lesion[0, 2:5, 2:6], lesion[1, 2:5, 2:6] = 0.9, 0.45
    return features, torch.stack([1.0 - lesion, lesion], dim=1)


def test_self_support_finds_what_the_first_pass_missed_in_the_query_s_own_features() -> None:
    features, first = _two_feature_slices()
    segmenter = PrototypeSegmenter(torch.nn.Identity(), scale=20.0, self_support=1.0)
    own = segmenter.with_self_support(first, features)[:, 1]
    # the first slice's own prototypes: (1, 0) under its 12 lesion pixels; the other 52 pixels average to
    # (4, 48) / 52, so the missed row 5 of the square (cosine 1 against 0.083) becomes lesion too
    assert bool((own[0, 2:6, 2:6] > 0.99).all()) and float(own[0][features[0, 1] > 0].max()) < 0.01
    torch.testing.assert_close(own[1], first[1, 1])  # no lesion above 0.5: nothing to take prototypes from
    segmenter.self_support = 0.5
    half = segmenter.with_self_support(first, features)[0, 1]
    torch.testing.assert_close(half, 0.5 * first[0, 1] + 0.5 * own[0], atol=1e-5, rtol=0)
    with pytest.raises(ValueError, match="self_support"):
        PrototypeSegmenter(torch.nn.Identity(), self_support=1.5)


def test_self_support_is_served_and_not_trained(cases_by_type: dict[str, list[LabelledCase]]) -> None:
    """``segment`` (what serving calls) adds the self-support pass; the match that training optimises does not."""
    segmenter = _tiny_segmenter().eval()
    episode = sample_segmentation_episode(cases_by_type, 3, 2, np.random.default_rng(3))
    support, query = episode.support, episode.query.images
    with torch.no_grad():
        first = segmenter(support.images, support.masks, query)
        plain = segmenter.segment(support, query)
        segmenter.self_support = 0.5
        torch.testing.assert_close(segmenter(support.images, support.masks, query), first)
        served = segmenter.segment(support, query)
        expected = segmenter.with_self_support(first.softmax(dim=1), segmenter.encoder(query))[:, 1]
    torch.testing.assert_close(served, expected)
    assert (served - plain).abs().max() > 0.01


def test_segmenter_prediction_shape(cases_by_type: dict[str, list[LabelledCase]]) -> None:
    segmenter = _tiny_segmenter()
    episode = sample_segmentation_episode(cases_by_type, 3, 2, np.random.default_rng(3))
    logits = segmenter(episode.support.images, episode.support.masks, episode.query.images)
    assert logits.shape == (2, 2, SIZE, SIZE)
    probability = segmenter.segment(episode.support, episode.query.images)
    assert probability.shape == (2, SIZE, SIZE) and probability.min() >= 0 and probability.max() <= 1


# --- grading ----------------------------------------------------------------------------------------------------


def test_grading_probabilities_and_nearest_types(cases_by_type: dict[str, list[LabelledCase]]) -> None:
    torch.manual_seed(0)
    grader = LesionGrader(LesionEmbedder(dim=8, channels=(4, 8)), temperature=2.0)
    support = [cases_by_type[t][0] for t in ("enostosis", "giant_cell_tumour", "chordoma", "plasmacytoma")]
    queries = [cases_by_type["chordoma"][0], cases_by_type["haemangioma"][1]]
    results = grader.fit(support).predict(queries, top_types=3)
    for result in results:
        assert set(result.probabilities) == set(GRADES)
        assert sum(result.probabilities.values()) == pytest.approx(1.0, abs=1e-5)
        assert result.grade == max(result.probabilities, key=result.probabilities.get)
        assert len(result.nearest_types) == 3
        assert [p for _, p in result.nearest_types] == sorted((p for _, p in result.nearest_types), reverse=True)
    assert results[0].nearest_types[0][0] == "chordoma"  # a support lesion is nearest to its own type
    np.testing.assert_allclose(grader.probabilities(queries).sum(axis=1), 1.0, atol=1e-5)


def test_fit_temperature_recovers_the_scale() -> None:
    generator = torch.Generator().manual_seed(0)
    true_logits = 2.0 * torch.randn(4000, 3, generator=generator)
    targets = torch.multinomial(true_logits.softmax(dim=1), 1, generator=generator).squeeze(1)
    assert fit_temperature(3.0 * true_logits, targets) == pytest.approx(3.0, rel=0.15)


def test_crop_lesion_is_centred_and_sized(cases_by_type: dict[str, list[LabelledCase]]) -> None:
    crop = crop_lesion(cases_by_type["haemangioma"][0], size=24)
    assert crop.image.shape == crop.mask.shape == (24, 24) and crop.grade == "benign"
    ys, xs = np.nonzero(crop.mask)
    assert abs(ys.mean() - 12) <= 1.5 and abs(xs.mean() - 12) <= 1.5


# --- fast adaptation --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shots", [1, 2])
def test_adaptation_step_is_functional(cases_by_type: dict[str, list[LabelledCase]], shots: int) -> None:
    segmenter = _tiny_segmenter()
    before = {k: v.clone() for k, v in segmenter.state_dict().items()}
    episode = sample_segmentation_episode(cases_by_type, shots, 1, np.random.default_rng(4))
    params = adapt(segmenter, episode.support, steps=1, lr=0.1)
    for name, value in segmenter.state_dict().items():  # the module is not mutated
        torch.testing.assert_close(value, before[name], atol=0, rtol=0)
    assert any(not torch.equal(params[n], p) for n, p in segmenter.named_parameters())
    adapted = segment_adapted(segmenter, params, episode.support, episode.query.images)
    assert adapted.shape == (1, SIZE, SIZE)
    assert not torch.allclose(adapted, segmenter.segment(episode.support, episode.query.images))


# --- self-supervision -------------------------------------------------------------------------------------------


def test_superpixel_episodes(cases_by_type: dict[str, list[LabelledCase]]) -> None:
    images = np.stack([cases_by_type[t][0].image for t in BASE_TYPES])
    labels = superpixels(images[0])
    assert labels.shape == images[0].shape and labels.min() == 0 and labels.max() >= 2
    episodes = SuperpixelEpisodes(images, max_shots=3, min_pixels=10, max_fraction=0.2)
    assert episodes.candidates and all(10 <= m.sum() <= 0.2 * SIZE * SIZE for _, m in episodes.candidates)
    first, again = episodes(np.random.default_rng(5)), episodes(np.random.default_rng(5))
    torch.testing.assert_close(first.query.images, again.query.images)  # seeded
    k = len(first.support)
    assert 1 <= k <= 3 and first.support.images.shape == (k, 1, SIZE, SIZE) and len(first.query) == 1
    assert all(m.any() for m in first.support.masks) and first.query.masks.any()
    assert set(torch.unique(first.query.masks).tolist()) <= {0.0, 1.0}
    assert not torch.equal(first.support.images[0], first.query.images[0])  # independently augmented


def test_augment_keeps_shapes_and_binary_masks() -> None:
    images, masks = torch.rand(3, 1, 16, 16), (torch.rand(3, 1, 16, 16) > 0.5).float()
    out_images, out_masks = augment(images, masks, np.random.default_rng(0))
    assert out_images.shape == images.shape and out_masks.shape == masks.shape
    assert set(torch.unique(out_masks).tolist()) <= {0.0, 1.0}
