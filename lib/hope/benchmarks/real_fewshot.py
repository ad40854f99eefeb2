"""Cross-patient few-shot segmentation of real structures, as ``fewshot_tumor`` serves it, against trivial baselines.

A pair takes its support from one scan and its query from another scan of the same modality and another patient,
for one structure kind (``vertebra``, ``cord``, ``thecal_sac``). The ``k`` support slices are evenly spaced
through the support scan's structure, each cut to the task's support window around it (as the support library
cuts lesions). The query is the whole query stack, every slice whole, on the serving grid
(:func:`~hope.fewshot.volumes.to_slices`): no crop around the support or the answer. Every method's answer is
thresholded at the task's threshold (0.5) and cut to its largest 3D component on the stack, as serving does on the
image grid.

Methods: the shipped encoder (``served``), the same architecture seeded and untrained (``untrained``), and two
baselines that learn nothing. With the task's ``anatomy:`` section, both networks join the anatomy features of the
supervised network of the scans' modality (:mod:`hope.fewshot.anatomy_features`), as serving does, and
``encoder_only`` is the shipped encoder without them; all three add the task's self-support pass
(``prototypes.self_support``, :meth:`~hope.fewshot.prototypes.PrototypeSegmenter.lesion_probability`).
The baselines are ``intensity`` (each query pixel goes to the nearer of the foreground and background mean
intensities of the support windows the networks see) and ``paste`` (the support masks pasted at the same relative
position of the query slice, kept where most of them agree).

Support slices are chosen among the slices with at least ``MIN_LESION_PIXELS`` structure pixels. Dice is averaged
over the query slices that hold the structure; the other query slices only count for ``empty_false_positive``: the
share of them where a method predicts anything.

CT slices are windowed with the task's HU window; MR slices with each volume's 1st-99th percentiles
(:func:`~hope.benchmarks.real_proxy.slice_spec_for`): the task's HU window has no meaning on MR.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
import torch

from hope.benchmarks.real_cases import THECAL_SAC, LoadedScan, RealScan
from hope.benchmarks.real_proxy import MIN_LESION_PIXELS, StructureSlices, dice, slice_spec_for
from hope.config import REPO_ROOT
from hope.fewshot.anatomy_features import AnatomyFeatures
from hope.fewshot.checkpoint import build_segmenter, load_segmenter
from hope.fewshot.config import FewShotDefinition, SliceSpec
from hope.fewshot.episodes import SupportSet, build_support_set
from hope.fewshot.prototypes import PrototypeSegmenter
from hope.fewshot.volume_inference import lesion_probabilities
from hope.fewshot.volumes import largest_component, lesion_cuts, mask_on_slices, to_slices
from hope.models.initial import UNTRAINED_SEED

SHOTS = (1, 5)
KINDS = ("vertebra", "cord", THECAL_SAC)
METHODS = ("served", "encoder_only", "untrained", "intensity", "paste")


@dataclass(frozen=True)
class Pair:
    """Support from ``support``, query from ``query``, for the structure ``kind``."""

    kind: str
    support: RealScan
    query: RealScan

    @property
    def name(self) -> str:
        """``kind: support -> query``."""
        return f"{self.kind}: {self.support.name} -> {self.query.name}"

    @property
    def contrast(self) -> str:
        """``CT->CT``, ``T2->T1``..."""
        return f"{self.support.contrast}->{self.query.contrast}"


def cross_patient_pairs(scans: Sequence[RealScan], kinds: Sequence[str] = KINDS) -> list[Pair]:
    """Every ordered pair of scans of one modality and two patients whose references both have a ``kind``."""
    return [Pair(kind, a, b) for kind in kinds for a in scans for b in scans
            if a.modality == b.modality and a.patient != b.patient and kind in a.kinds() & b.kinds()]


def scan_slices(loaded: LoadedScan, kinds: Iterable[str], spec: SliceSpec, anatomy: AnatomyFeatures | None = None
                ) -> dict[str, StructureSlices]:
    """The scan's slice stack on the serving grid with the mask of each of ``kinds`` it has, by kind (and the
    stack's anatomy features when ``anatomy`` is given)."""
    stack = to_slices(loaded.image, slice_spec_for(loaded.image, loaded.scan.modality, spec))
    features = anatomy.on_stack(loaded.image, loaded.scan.modality, stack) if anatomy is not None else None
    result = {}
    for kind in kinds:
        mask = loaded.kind_mask(kind)
        if mask is None:
            continue
        mask_image = sitk.GetImageFromArray(mask.astype(np.uint8))
        mask_image.CopyInformation(loaded.image)
        result[kind] = StructureSlices(kind, loaded.scan.name, loaded.scan.modality, stack.pixels,
                                       mask_on_slices(mask_image, stack), features)
    return result


def evenly_spaced(candidates: Sequence[int], k: int) -> list[int]:
    """``k`` of ``candidates`` (all of them when fewer), at the centres of ``k`` equal parts of the list."""
    n = len(candidates)
    return [candidates[int((i + 0.5) * n / k)] for i in range(k)] if n > k else list(candidates)


def support_set(structure: StructureSlices, slices: Sequence[int], spec: SliceSpec) -> SupportSet:
    """Slices ``slices`` of ``structure``, each cut around its structure as served support slices are
    (``spec.support_window`` and ``spec.support_context``), with their anatomy features when it has them."""
    cases = []
    for z in slices:
        one = slice(z, z + 1)
        (cut,) = lesion_cuts(structure.mask[one], 1, spec.support_window, spec.support_context)
        anatomy = None if structure.anatomy is None else structure.anatomy[one]
        cases.append(cut.case(structure.pixels[one], structure.mask[one], structure.name, anatomy=anatomy))
    return build_support_set(cases)


def intensity_rule(support: SupportSet, query: np.ndarray) -> np.ndarray:
    """``query`` pixels nearer the support's foreground mean intensity than its background mean (uint8 mask)."""
    images, masks = support.images.numpy(), support.masks.numpy() > 0.5
    foreground, background = images[masks].mean(), images[~masks].mean()
    return (np.abs(query - foreground) < np.abs(query - background)).astype(np.uint8)


def scale_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A 2D ``mask`` moved onto a slice of ``shape`` at the same relative positions (nearest neighbour)."""
    rows = ((np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]).astype(int)
    cols = ((np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]).astype(int)
    return mask[np.ix_(rows, cols)]


def paste(masks: Sequence[np.ndarray], shape: tuple[int, int]) -> np.ndarray:
    """The full-slice support ``masks`` scaled to ``shape`` (:func:`scale_mask`), kept where more than half agree."""
    return (np.mean([scale_mask(m > 0, shape) for m in masks], axis=0) > 0.5).astype(np.uint8)


def slice_scores(prediction: np.ndarray, truth: np.ndarray) -> dict[str, Any]:
    """Mean per-slice Dice over the ``(Z, H, W)`` ``truth`` slices that hold the structure (``None`` without any),
    and the share of the other slices where ``prediction`` has any pixel (``None`` without any)."""
    areas = truth.reshape(len(truth), -1).sum(axis=1)
    scored, empty = np.flatnonzero(areas > 0), np.flatnonzero(areas == 0)
    return {
        "dice": float(np.mean([dice(prediction[z], truth[z]) for z in scored])) if len(scored) else None,
        "slices_scored": len(scored),
        "empty_slices": len(empty),
        "empty_false_positive": float(np.mean([prediction[z].any() for z in empty])) if len(empty) else None,
    }


def query_block(structures: Iterable[StructureSlices], max_slices: int | None) -> slice:
    """The query slices evaluated: all, or ``max_slices`` contiguous ones centred on the structures' slices."""
    structures = list(structures)
    depth = len(structures[0].mask)
    if max_slices is None or depth <= max_slices:
        return slice(0, depth)
    candidates = sorted({z for s in structures for z in s.candidates()}) or [depth // 2]
    start = int(np.clip((candidates[0] + candidates[-1]) // 2 - max_slices // 2, 0, depth - max_slices))
    return slice(start, start + max_slices)


def fewshot_segmenters(task: FewShotDefinition, device: str, candidate: Path | None = None
                       ) -> tuple[dict[str, PrototypeSegmenter], dict[str, str]]:
    """The shipped segmenter (``served``, left out when the repository has none; ``candidate``'s weights instead
    when given), a seeded, untrained one and, when the task joins anatomy features, the served encoder without
    them (``encoder_only``), on ``device``; and where each comes from."""
    torch.manual_seed(UNTRAINED_SEED)
    segmenters = {"untrained": build_segmenter(task).eval()}
    sources = {"untrained": f"untrained, torch.manual_seed({UNTRAINED_SEED})"}
    shipped = REPO_ROOT / task.pretrained if task.pretrained else None
    if candidate is not None:
        segmenters["served"] = load_segmenter(candidate, task)
        sources["served"] = f"candidate {candidate}"
    elif shipped is not None and shipped.exists():
        segmenters["served"] = load_segmenter(shipped, task)
        sources["served"] = f"shipped {task.pretrained}"
    else:
        sources["served"] = f"no shipped encoder at {task.pretrained}"
    if task.anatomy is not None and "served" in segmenters:
        alone = copy.deepcopy(segmenters["served"])
        alone.anatomy_weight = 0.0
        segmenters["encoder_only"] = alone
        sources["encoder_only"] = f"{sources['served']}, without anatomy features"
        for name in ("served", "untrained"):
            sources[name] += f", joined with anatomy features (weight {task.anatomy.weight}: {task.anatomy.tasks})"
    self_support = task.network.prototypes.get("self_support")
    if self_support:
        for name in sources:
            sources[name] += f", self-support {self_support}"
    return {name: s.to(device) for name, s in segmenters.items()}, sources


def _post(prediction: np.ndarray, threshold: float) -> np.ndarray:
    """Serving's post-processing: threshold, then the largest 3D component."""
    return largest_component(prediction > threshold)


def _unavailable(pair: Pair, stacks: Mapping[str, Mapping[str, StructureSlices]]) -> str | None:
    """Why ``pair`` cannot be evaluated, or ``None``."""
    for role, scan in (("support", pair.support), ("query", pair.query)):
        if pair.kind not in stacks[scan.name]:
            return f"the {role} scan {scan.name} has no {pair.kind} voxels"
    if not stacks[pair.support.name][pair.kind].candidates():
        return f"the support scan {pair.support.name} has no slice with >= {MIN_LESION_PIXELS} {pair.kind} pixels"
    return None


def _support_key(pair: Pair, k: int) -> str:
    return f"{pair.name}/{k}"


def _pair_shots(pair: Pair, support: StructureSlices, truth: np.ndarray, shots: Sequence[int],
                supports: Mapping[str, SupportSet], answers: Mapping[str, Mapping[str, np.ndarray]],
                pixels: np.ndarray, threshold: float) -> dict[str, Any]:
    """The scores of every method at each shot count of one pair (``answers``: method -> support key -> stack)."""
    result = {}
    for k in shots:
        chosen = evenly_spaced(support.candidates(), k)
        key = _support_key(pair, k)
        predictions = {name: _post(by_key[key], threshold) for name, by_key in answers.items()}
        predictions["intensity"] = _post(intensity_rule(supports[key], pixels), threshold)
        pasted = paste(support.mask[chosen], pixels.shape[1:])
        predictions["paste"] = _post(np.broadcast_to(pasted, pixels.shape), threshold)
        scores = {name: slice_scores(p, truth) for name, p in predictions.items()}
        first = next(iter(scores.values()))
        result[str(k)] = {
            "shots_used": len(chosen),
            "support_slices": chosen,
            "slices_scored": first["slices_scored"],
            "empty_slices": first["empty_slices"],
            "dice": {name: s["dice"] for name, s in scores.items()},
            "empty_false_positive": {name: s["empty_false_positive"] for name, s in scores.items()},
        }
        if not first["slices_scored"]:
            result[str(k)]["dice_null_because"] = f"no evaluated query slice holds {pair.kind}"
    return result


def evaluate_fewshot(
    segmenters: Mapping[str, PrototypeSegmenter],
    scans: Sequence[LoadedScan],
    pairs: Sequence[Pair],
    task: FewShotDefinition,
    shots: Sequence[int] = SHOTS,
    max_query_slices: int | None = None,
    anatomy: AnatomyFeatures | None = None,
) -> dict[str, Any]:
    """Few-shot Dice of every method on every pair at each shot count.

    Args:
        segmenters: the networks by method name (``served``, ``untrained``); the baselines are added.
        scans: the loaded scans the pairs name.
        pairs: the pairs (:func:`cross_patient_pairs`).
        task: the few-shot task (slices, support window, threshold, batch).
        shots: support slice counts.
        max_query_slices: evaluate at most this many contiguous query slices (centred on the query's structures),
            ``None`` for the whole query stack.
        anatomy: the task's anatomy features (:func:`~hope.fewshot.anatomy_features.anatomy_features`), ``None``
            for the encoder's features alone.

    Returns:
        ``{"pairs": {pair name: {"kind", "support", "query", "contrast", "query_slices", "shots": {"<k>":
        {"shots_used", "support_slices", "slices_scored", "empty_slices", "dice": {method: mean or None},
        "empty_false_positive": {method: share or None}}}}}, "skipped": {pair name: reason}, "mean": {"<k>":
        {method: mean over pairs or None}}}``.
    """
    kinds = {p.kind for p in pairs}
    named = {scan.name for p in pairs for scan in (p.support, p.query)}
    stacks = {s.scan.name: scan_slices(s, kinds, task.slices, anatomy) for s in scans if s.scan.name in named}
    result: dict[str, Any] = {"pairs": {}, "skipped": {}, "mean": {}}
    runnable = []
    for pair in pairs:
        reason = _unavailable(pair, stacks)
        if reason:
            result["skipped"][pair.name] = reason
        else:
            runnable.append(pair)
    settings = task.inference
    for query in sorted({p.query.name for p in runnable}):
        query_pairs = [p for p in runnable if p.query.name == query]
        block = query_block([stacks[query][p.kind] for p in query_pairs], max_query_slices)
        first = stacks[query][query_pairs[0].kind]
        pixels = first.pixels[block]
        query_anatomy = None if first.anatomy is None else first.anatomy[block]
        supports = {_support_key(p, k): support_set(stacks[p.support.name][p.kind],
                                                  evenly_spaced(stacks[p.support.name][p.kind].candidates(), k),
                                                  task.slices)
                    for p in query_pairs for k in shots}
        answers = {name: lesion_probabilities(segmenter, supports, pixels, settings.batch_slices, query_anatomy)
                   for name, segmenter in segmenters.items()}
        for pair in query_pairs:
            result["pairs"][pair.name] = {
                "kind": pair.kind, "support": pair.support.name, "query": pair.query.name,
                "contrast": pair.contrast, "query_slices": [block.start, block.stop],
                "shots": _pair_shots(pair, stacks[pair.support.name][pair.kind], stacks[query][pair.kind].mask[block],
                                     shots, supports, answers, pixels, settings.threshold),
            }
    for k in shots:
        per_pair = [p["shots"][str(k)]["dice"] for p in result["pairs"].values()]
        result["mean"][str(k)] = {m: mean_present([d.get(m) for d in per_pair]) for m in METHODS}
    return result


def mean_present(values: Iterable[float | None]) -> float | None:
    """The mean of the values that are not ``None`` (``None`` when all are)."""
    present = [v for v in values if v is not None]
    return float(np.mean(present)) if present else None
