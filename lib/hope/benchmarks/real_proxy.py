"""A tiny real-data proxy for few-shot segmentation: within-volume slice episodes on real scans.

No freely licensed scan with labelled rare tumours exists (``shared/README.md``), so this proxy segments real
*structures* (vertebrae on CT and MR, the spinal cord on MR) and one real tumour (a glioblastoma on brain MR) in
the shared data. Each structure of each case becomes a 2D axial slice stack on the few-shot grid
(:func:`~hope.fewshot.volumes.to_slices`); an episode takes ``k`` support slices and one query slice of the same
volume, at least ``min_gap`` slices away from every support slice.

The support slices are cut like :func:`~hope.fewshot.volumes.lesion_slices` (a ``support_window`` square centred
on their lesion). The query is cut to a fixed window (96 pixels, or the whole slice where smaller) centred on the
mean centroid of the *support* lesions, never on its own lesion, so the crop does not give the answer away
(:func:`query_window` only sees support masks).
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np
import SimpleITK as sitk

from hope.fewshot.config import SliceSpec, load_fewshot_task
from hope.fewshot.episodes import LabelledCase, SupportSet, build_support_set
from hope.fewshot.prototypes import PrototypeSegmenter
from hope.fewshot.volume_inference import lesion_probabilities
from hope.fewshot.volumes import lesion_slices, mask_on_slices, to_slices

QUERY_WINDOW = 96
MIN_LESION_PIXELS = 20
MIN_GAP = 2


@dataclass(frozen=True)
class RealStructure:
    """A structure of a real case: its name and the label values that form it (empty: every value above 0)."""

    name: str
    values: tuple[int, ...] = ()


@dataclass(frozen=True)
class RealCase:
    """A real scan in the shared data folder, its label map, its modality and the structures taken from it."""

    folder: str
    image: str
    label: str
    modality: Literal["CT", "MR"]
    structures: tuple[RealStructure, ...]
    source: str


def _totalseg_values(data_dir: Path, folder: str, names: Sequence[str]) -> tuple[RealStructure, ...]:
    """TotalSegmentator structures by name, their values read from the case's ``labels.json``."""
    labels = json.loads((data_dir / folder / "labels.json").read_text())
    values = {name: int(value) for value, name in labels.items()}
    return tuple(RealStructure(name, (values[name],)) for name in names if name in values)


# T11 is left out: the CT cuts it after 3 slices, too few for episodes.
CT_VERTEBRAE = ("vertebrae_T12", "vertebrae_L1", "vertebrae_L2")


def real_cases(data_dir: Path) -> tuple[RealCase, ...]:
    """The real cases of the proxy (the CT's vertebra values are read from its ``labels.json``)."""
    ct = "ct-abdomen-totalseg"
    return (
        RealCase(ct, "ct_3mm.nii.gz", "ct_3mm_seg.nii.gz", "CT", _totalseg_values(data_dir, ct, CT_VERTEBRAE),
                 "TotalSegmentator test data (CC BY 4.0 CT); labels are TotalSegmentator model output"),
        RealCase("mr-brain-tumor-pyradiomics", "brain1_image.nrrd", "brain1_label.nrrd", "MR",
                 (RealStructure("glioblastoma"),),
                 "pyradiomics test data; TCIA TCGA-GBM case TCGA-02-0003; semi-automatic tumour label"),
        RealCase("mr-cervical-cord", "t2.nii.gz", "t2_seg-manual.nii.gz", "MR", (RealStructure("spinal_cord"),),
                 "Spinal Cord Toolbox testing data; manual cord mask"),
        RealCase("mr-cervical-spine-tptbox", "sub-mri_label-6_T2w.nii.gz", "sub-mri_seg-vert_label-6_msk.nii.gz",
                 "MR", tuple(RealStructure(f"vertebra_C{v}", (v,)) for v in (5, 6, 7)),
                 "TPTBox test data; vertebra labels"),
    )


@dataclass(frozen=True)
class StructureSlices:
    """One structure of one real case on the few-shot slice grid: ``pixels`` ``(Z, H, W)`` in ``[0, 1]``, its
    binary ``mask`` ``(Z, H, W)`` and, when computed, the case's ``(Z, K, H, W)`` anatomy features."""

    name: str
    case: str
    modality: str
    pixels: np.ndarray
    mask: np.ndarray
    anatomy: np.ndarray | None = None

    def candidates(self, min_pixels: int = MIN_LESION_PIXELS) -> list[int]:
        """Slices with at least ``min_pixels`` structure pixels."""
        areas = self.mask.reshape(len(self.mask), -1).sum(axis=1)
        return [int(z) for z in np.flatnonzero(areas >= min_pixels)]


def slice_spec_for(image: sitk.Image, modality: str, spec: SliceSpec) -> SliceSpec:
    """``spec`` for CT; for MR the same with the image's 1st and 99th intensity percentiles as its window."""
    if modality == "CT":
        return spec
    lo, hi = np.percentile(sitk.GetArrayViewFromImage(image), [1, 99])
    return replace(spec, intensity_range=(float(lo), float(max(hi, lo + 1e-3))))


def load_case(case: RealCase, data_dir: Path, spec: SliceSpec) -> list[StructureSlices]:
    """The slice stack of one real case with each of its structures' masks on it (empty structures left out)."""
    image = sitk.ReadImage(str(data_dir / case.folder / case.image))
    label = sitk.ReadImage(str(data_dir / case.folder / case.label))
    stack = to_slices(image, slice_spec_for(image, case.modality, spec))
    values = sitk.GetArrayFromImage(label)
    structures = []
    for structure in case.structures:
        binary = values > 0 if not structure.values else np.isin(values, structure.values)
        if not binary.any():
            continue
        mask_image = sitk.GetImageFromArray(binary.astype(np.uint8))
        mask_image.CopyInformation(label)
        structures.append(StructureSlices(structure.name, case.folder, case.modality, stack.pixels,
                                          mask_on_slices(mask_image, stack)))
    return structures


def load_real_structures(data_dir: Path, spec: SliceSpec, cases: Sequence[RealCase] | None = None
                         ) -> list[StructureSlices]:
    """Every structure of ``cases`` (default: :func:`real_cases`) as slice stacks."""
    return [s for case in (real_cases(data_dir) if cases is None else cases) for s in load_case(case, data_dir, spec)]


def _centroid(mask: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(mask)
    return float(ys.mean()), float(xs.mean())


def query_window(support_masks: Sequence[np.ndarray], shape: tuple[int, int], size: int = QUERY_WINDOW
                 ) -> tuple[slice, slice]:
    """A ``size`` square of a ``shape`` slice (the whole extent along a side shorter than ``size``), centred as
    near as the slice allows on the mean centroid of the support masks (full-slice ``(H, W)`` masks).

    Only support masks come in: the query's own mask never places its window.
    """
    centroids = np.array([_centroid(m) for m in support_masks])
    centre = centroids.mean(axis=0)
    window = []
    for c, n in zip(centre, shape, strict=True):
        side = min(size, n)
        start = int(np.clip(round(c - side / 2), 0, n - side))
        window.append(slice(start, start + side))
    return window[0], window[1]


@dataclass(frozen=True)
class RealEpisode:
    """A within-volume episode: support slices (cut around their lesion), the query slice cut to ``window``."""

    structure: str
    support_z: tuple[int, ...]
    query_z: int
    support: SupportSet
    query_image: np.ndarray
    query_mask: np.ndarray
    window: tuple[slice, slice]
    query_coverage: float  # fraction of the query slice's structure pixels inside the window


def build_episode(structure: StructureSlices, support_z: Sequence[int], query_z: int, spec: SliceSpec
                  ) -> RealEpisode:
    """The episode of the given support and query slices of ``structure``."""
    support = []
    for z in support_z:
        ((image, mask),) = lesion_slices(structure.pixels[z : z + 1], structure.mask[z : z + 1], 1,
                                         spec.support_window, spec.support_context)
        support.append(LabelledCase(image, mask, structure.name))
    window = query_window([structure.mask[z] for z in support_z], structure.mask.shape[1:])
    full = structure.mask[query_z] > 0
    query_mask = full[window].astype(np.uint8)
    return RealEpisode(structure.name, tuple(int(z) for z in support_z), int(query_z), build_support_set(support),
                       structure.pixels[query_z][window].astype(np.float32), query_mask,
                       window, float(query_mask.sum() / max(full.sum(), 1)))


def shots_available(structure: StructureSlices, min_gap: int = MIN_GAP) -> int:
    """The most support slices any candidate query has at least ``min_gap`` slices away."""
    candidates = structure.candidates()
    return max((sum(abs(z - q) >= min_gap for z in candidates) for q in candidates), default=0)


def sample_episodes(structure: StructureSlices, shots: int, episodes: int, rng: np.random.Generator,
                    spec: SliceSpec, min_gap: int = MIN_GAP) -> list[RealEpisode]:
    """Up to ``episodes`` distinct episodes of ``shots`` support slices (fewer if the structure has fewer)."""
    candidates = structure.candidates()
    eligible = {q: [z for z in candidates if abs(z - q) >= min_gap] for q in candidates}
    queries = [q for q in candidates if len(eligible[q]) >= shots]
    seen: set[tuple[int, tuple[int, ...]]] = set()
    result = []
    for _ in range(50 * episodes):
        if len(result) == episodes or not queries:
            break
        query = queries[int(rng.integers(len(queries)))]
        support = tuple(sorted(int(z) for z in rng.choice(eligible[query], shots, replace=False)))
        if (query, support) in seen:
            continue
        seen.add((query, support))
        result.append(build_episode(structure, support, query, spec))
    return result


def dice(probability: np.ndarray, mask: np.ndarray) -> float:
    """Dice of ``probability > 0.5`` against a binary mask (0 when both are empty, as in the phantom benchmark)."""
    pred, truth = probability > 0.5, mask > 0
    return float(2 * (pred & truth).sum() / max(int(pred.sum() + truth.sum()), 1))


def evaluate_real(
    segmenters: Mapping[str, PrototypeSegmenter],
    data_dir: Path,
    shots: Sequence[int] = (1, 5),
    episodes: int = 20,
    seed: int = 0,
    spec: SliceSpec | None = None,
    cases: Sequence[RealCase] | None = None,
) -> dict[str, Any]:
    """Query Dice of each segmenter on the same within-volume episodes of every real structure, per shot count.

    Returns ``{"structures": {name: {...}}, "shots": {"<k>": {"structures": {name: {"shots_used", "episodes",
    "query_coverage", "dice": {method: mean}}}, "skipped": {name: reason}, "mean": {method: mean over
    structures, None if all were skipped}}}}``. A ``k``-shot run falls back to fewer support slices when no
    query has ``k`` far enough away, and is skipped for a structure where fewer than half of ``k`` (rounded up)
    are available. ``spec`` defaults to the ``fewshot_tumor`` task's slices.
    """
    spec = spec or load_fewshot_task("fewshot_tumor").slices
    structures = load_real_structures(data_dir, spec, cases)
    result: dict[str, Any] = {"structures": {}, "shots": {}}
    for s in structures:
        result["structures"][s.name] = {"case": s.case, "modality": s.modality, "slices": int(len(s.mask)),
                                        "candidate_slices": len(s.candidates()),
                                        "max_support_slices": shots_available(s)}
    for k in shots:
        per_structure: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        for s in structures:
            used = min(k, shots_available(s))
            if used < max(1, (k + 1) // 2):
                skipped[s.name] = (f"{len(s.candidates())} slices with >= {MIN_LESION_PIXELS} pixels: at most "
                                   f"{used} support slices >= {MIN_GAP} slices from a query")
                continue
            rng = np.random.default_rng([seed, k, zlib.crc32(s.name.encode())])
            drawn = sample_episodes(s, used, episodes, rng, spec)
            scores: dict[str, list[float]] = {name: [] for name in segmenters}
            for episode in drawn:
                for name, segmenter in segmenters.items():
                    probability = lesion_probabilities(segmenter, {s.name: episode.support},
                                                       episode.query_image[None])[s.name][0]
                    scores[name].append(dice(probability, episode.query_mask))
            per_structure[s.name] = {
                "shots_used": used,
                "episodes": len(drawn),
                "query_coverage": float(np.mean([e.query_coverage for e in drawn])),
                "dice": {name: float(np.mean(v)) for name, v in scores.items()},
            }
        mean = {name: float(np.mean([v["dice"][name] for v in per_structure.values()])) if per_structure else None
                for name in segmenters}
        result["shots"][str(k)] = {"structures": per_structure, "skipped": skipped, "mean": mean}
    return result


def unlabelled_windows(structures: Sequence[StructureSlices], count: int, window: int, rng: np.random.Generator
                       ) -> np.ndarray:
    """``(count, window, window)`` unlabelled crops of the real scans (labels unused), for self-supervision.

    Each crop is centred on a random pixel brighter than 0.1 (inside the body) of a random slice of a random case,
    edge-padded at the border: what ``POST /train/fewshot_tumor`` does with the studies in the store.
    """
    stacks = list({s.case: s.pixels for s in structures}.values())
    crops = []
    for _ in range(count):
        pixels = stacks[int(rng.integers(len(stacks)))]
        image = pixels[int(rng.integers(len(pixels)))]
        ys, xs = np.nonzero(image > 0.1)
        if len(ys) == 0:
            ys, xs = np.array([image.shape[0] // 2]), np.array([image.shape[1] // 2])
        i = int(rng.integers(len(ys)))
        padded = np.pad(image, window, mode="edge")
        top, left = ys[i] + window - window // 2, xs[i] + window - window // 2
        crops.append(padded[top : top + window, left : left + window])
    return np.stack(crops).astype(np.float32)
