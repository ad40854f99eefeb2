"""Benchmark: few-shot segmentation and grading of tumour types never seen in training.

Per seed: phantom cases of the base types (meta-training) and of the held-out types (evaluation only) are drawn;
the prototype segmenter is pretrained self-supervised on unlabelled base-type images (superpixel episodes) and
meta-trained on base-type episodes; the lesion embedder is meta-trained on base-type grade and type episodes and
its temperature fitted on held-aside base cases. Then, on held-out types, at each shot count:

* segmentation Dice of one query per episode: the meta-learned segmenter, the same after 3 first-order
  adaptation steps on the support set, the same network untrained (random init), and a supervised 2D SegResNet
  trained on base types and fine-tuned on the same k support cases;
* grading (3-way: benign / borderline / malignant, k support lesions per grade, 4 queries per grade): accuracy,
  macro one-vs-rest AUC, NLL and the nearest-type hit rate of the meta-learned grader, the untrained one, and a
  supervised grade classifier trained on base types and fine-tuned on the same support lesions.

After the seeds, a real-data proxy (:mod:`hope.benchmarks.real_proxy`, skipped when ``../shared/data`` is missing):
seed 0's meta-learned and untrained segmenters on within-volume 1- and 5-shot slice episodes of real structures.

    .venv/bin/python scripts/bench_fewshot.py --quick --json fewshot.json --plot fewshot.png   # 2 CPU cores
    .venv/bin/python scripts/bench_fewshot.py --json fewshot.json                              # GPU-sized
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from sklearn.metrics import roc_auc_score
from tqdm.auto import tqdm

from hope.benchmarks.baselines import (
    GradeClassifier,
    finetune_grader,
    finetune_segmenter,
    grade_probabilities,
    supervised_segmenter,
    train_supervised_grader,
    train_supervised_segmenter,
)
from hope.benchmarks.real_proxy import evaluate_real, load_real_structures, unlabelled_windows
from hope.config import REPO_ROOT
from hope.fewshot.adapt import adapt, segment_adapted
from hope.fewshot.config import load_fewshot_task
from hope.fewshot.encoder import ConvEncoder
from hope.fewshot.episodes import (
    GRADES,
    LabelledCase,
    SupportSet,
    group_by_type,
    sample_grading_episode,
    sample_segmentation_episode,
)
from hope.fewshot.grading import LesionEmbedder, LesionGrader
from hope.fewshot.meta_train import TrainConfig, calibrate_grader, meta_train_grader, meta_train_segmenter
from hope.fewshot.prototypes import PrototypeSegmenter
from hope.fewshot.ssl import pretrain_ssl
from hope.phantoms.tumor_types import BASE_TYPES, HELDOUT_TYPES, generate_cases, generate_unlabelled

NOTES = [
    "Tumours are 2D phantoms (hope.phantoms.tumor_types), a stand-in: no freely licensed spine scan with tumour labels "
    "exists (see shared/README.md), so these are not clinical numbers.",
    f"Held-out types ({', '.join(HELDOUT_TYPES)}) never appear in any training step, labelled or unlabelled; SSL "
    "uses unlabelled images of base types only.",
    "Baseline 'untrained': the same networks with random initialisation (same seed).",
    "Baseline 'supervised_finetuned': a small 2D MONAI SegResNet (resp. a lesion-crop grade classifier) trained "
    "supervised on all base-type cases, then fine-tuned on the same k support cases of each episode; it stands in "
    "for HOPE's supervised spine_ct tumour model (a 3D SegResNet).",
    "Grading: 3-way (benign/borderline/malignant) with k support lesions per grade from held-out types, 4 queries "
    "per grade; AUC is sklearn roc_auc_score(multi_class='ovr', average='macro') over all queries of a seed.",
    "Per-seed values are means over that seed's episodes; reported values are means over seeds (std beside).",
    "Real-data proxy (real_* keys, 'real' section): real scans and real structures from shared/data, not spine "
    "tumours: vertebrae T12-L2 on CT, C5-C7 on T2 MR, the spinal cord on T2 MR, and one real tumour, a "
    "glioblastoma on T1 post-contrast brain MR (TCIA TCGA-GBM case TCGA-02-0003, via the pyradiomics test data). "
    "Episodes are within one volume: k support slices and one query slice at least 2 slices from each, the query "
    "cut to 96 px around the supports' mean centroid (not its own). Seed 0's networks only, up to 20 episodes per "
    "structure and k; the networks saw phantom CT slices only, MR is windowed to its 1st-99th percentile. The CT "
    "vertebra labels are TotalSegmentator model output, not manual outlines.",
]
REAL_SHOTS = (1, 5)
REAL_EPISODES = 20


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one benchmark run (all steps are optimiser steps)."""

    base_per_type: int
    heldout_per_type: int
    base_val_per_type: int
    unlabelled: int
    ssl_steps: int
    meta_steps: int
    grader_steps: int
    supervised_seg_steps: int
    supervised_grade_steps: int
    finetune_steps: int
    adapt_steps: int
    episodes: int
    shots: tuple[int, ...]
    episodes_per_step: int = 4


QUICK = BenchConfig(
    base_per_type=30, heldout_per_type=20, base_val_per_type=10, unlabelled=160, ssl_steps=120, meta_steps=120,
    grader_steps=150, supervised_seg_steps=150, supervised_grade_steps=100, finetune_steps=10, adapt_steps=3,
    episodes=50, shots=(1, 5),
)
FULL = BenchConfig(
    base_per_type=150, heldout_per_type=60, base_val_per_type=30, unlabelled=2000, ssl_steps=3000,
    meta_steps=3000, grader_steps=2000, supervised_seg_steps=3000, supervised_grade_steps=2000, finetune_steps=30,
    adapt_steps=5, episodes=100, shots=(1, 3, 5, 10), episodes_per_step=8,
)
GRADE_QUERIES = 4


def _dice(probability: torch.Tensor, mask: torch.Tensor) -> float:
    """Dice of ``probability > 0.5`` against a binary mask (both ``(H, W)``-shaped up to singleton dims)."""
    pred, truth = probability.squeeze().cpu() > 0.5, mask.squeeze().cpu() > 0.5
    return float(2 * (pred & truth).sum() / (pred.sum() + truth.sum()).clamp(min=1))


def evaluate_segmentation(
    methods: dict[str, Callable[[SupportSet, torch.Tensor, int], torch.Tensor]],
    cases_by_type: dict[str, list[LabelledCase]],
    shots: int,
    episodes: int,
    seed: int,
    progress: bool,
) -> dict[str, float]:
    """Mean query Dice of each method over the same ``episodes`` 1-way ``shots``-shot episodes."""
    rng = np.random.default_rng([seed, shots, 1])
    scores: dict[str, list[float]] = {name: [] for name in methods}
    for index in tqdm(range(episodes), desc=f"seg {shots}-shot", disable=not progress, leave=False):
        episode = sample_segmentation_episode(cases_by_type, shots, 1, rng)
        for name, method in methods.items():
            scores[name].append(_dice(method(episode.support, episode.query.images, index), episode.query.masks))
    return {name: float(np.mean(values)) for name, values in scores.items()}


def _grade_scores(probabilities: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Accuracy, macro one-vs-rest AUC and mean NLL of ``(N, n_grades)`` probabilities."""
    return {
        "acc": float((probabilities.argmax(1) == targets).mean()),
        "auc": float(roc_auc_score(targets, probabilities, multi_class="ovr", average="macro")),
        "nll": float(-np.log(probabilities[np.arange(len(targets)), targets] + 1e-12).mean()),
    }


def evaluate_grading(
    graders: dict[str, LesionGrader],
    supervised: GradeClassifier | None,
    finetune_steps: int,
    cases_by_type: dict[str, list[LabelledCase]],
    shots: int,
    episodes: int,
    seed: int,
    progress: bool,
) -> dict[str, dict[str, float]]:
    """Grade scores of each prototype grader and (if given) the fine-tuned supervised classifier, same episodes."""
    rng = np.random.default_rng([seed, shots, 2])
    probabilities: dict[str, list[np.ndarray]] = {name: [] for name in graders}
    if supervised is not None:
        probabilities["supervised_finetuned"] = []
    type_hits: dict[str, list[bool]] = {name: [] for name in graders}
    targets: list[int] = []
    for index in tqdm(range(episodes), desc=f"grade {shots}-shot", disable=not progress, leave=False):
        episode = sample_grading_episode(cases_by_type, shots, GRADE_QUERIES, rng)
        targets += episode.targets(episode.query)
        for name, grader in graders.items():
            results = grader.fit(episode.support).predict(episode.query, top_types=1)
            probabilities[name].append(np.array([[r.probabilities[g] for g in GRADES] for r in results]))
            type_hits[name] += [r.nearest_types[0][0] == c.tumor_type for r, c in zip(results, episode.query,
                                                                                       strict=True)]
        if supervised is not None:
            tuned = finetune_grader(supervised, episode.support, finetune_steps, seed=index)
            probabilities["supervised_finetuned"].append(grade_probabilities(tuned, episode.query))
    y = np.asarray(targets)
    scores = {name: _grade_scores(np.concatenate(p), y) for name, p in probabilities.items()}
    for name, hits in type_hits.items():
        scores[name]["type_top1"] = float(np.mean(hits))
    return scores


def run_seed(seed: int, config: BenchConfig, device: torch.device, progress: bool) -> dict[str, object]:
    """Train everything for one seed and evaluate it; returns flat metrics, timings and the two prototype
    segmenters (meta-learned and untrained) for the real-data proxy."""
    timings: dict[str, float] = {}
    start = time.perf_counter()
    base_cases = generate_cases(BASE_TYPES, config.base_per_type, seed=10 * seed)
    base = group_by_type(base_cases)
    base_val = group_by_type(generate_cases(BASE_TYPES, config.base_val_per_type, seed=10 * seed + 1))
    heldout = group_by_type(generate_cases(HELDOUT_TYPES, config.heldout_per_type, seed=10 * seed + 2))
    unlabelled = generate_unlabelled(config.unlabelled, BASE_TYPES, seed=seed)
    timings["data_s"] = time.perf_counter() - start

    def train(steps: int) -> TrainConfig:
        return TrainConfig(steps=steps, episodes_per_step=config.episodes_per_step, seed=seed)

    torch.manual_seed(seed)
    untrained_segmenter = PrototypeSegmenter(ConvEncoder()).to(device).eval()
    segmenter = PrototypeSegmenter(ConvEncoder()).to(device)
    segmenter.load_state_dict(untrained_segmenter.state_dict())
    start = time.perf_counter()
    pretrain_ssl(segmenter, unlabelled, train(config.ssl_steps), max_shots=3, progress=progress)
    timings["ssl_s"] = time.perf_counter() - start
    start = time.perf_counter()
    meta_train_segmenter(segmenter, base, train(config.meta_steps), progress=progress)
    timings["meta_train_seg_s"] = time.perf_counter() - start

    torch.manual_seed(seed)
    untrained_embedder = LesionEmbedder().to(device).eval()
    embedder = LesionEmbedder().to(device)
    embedder.load_state_dict(untrained_embedder.state_dict())
    start = time.perf_counter()
    meta_train_grader(embedder, base, train(config.grader_steps), progress=progress)
    graders = {
        "heldout": LesionGrader(embedder, calibrate_grader(embedder, base_val, seed=seed)),
        "untrained": LesionGrader(untrained_embedder, calibrate_grader(untrained_embedder, base_val, seed=seed)),
    }
    timings["meta_train_grade_s"] = time.perf_counter() - start

    torch.manual_seed(seed)
    start = time.perf_counter()
    supervised_seg = supervised_segmenter().to(device)
    train_supervised_segmenter(supervised_seg, base_cases, TrainConfig(steps=config.supervised_seg_steps, seed=seed),
                               progress=progress)
    supervised_grade = GradeClassifier().to(device)
    train_supervised_grader(supervised_grade, base_cases,
                            TrainConfig(steps=config.supervised_grade_steps, seed=seed), progress=progress)
    timings["supervised_train_s"] = time.perf_counter() - start

    def finetuned(support: SupportSet, query: torch.Tensor, index: int) -> torch.Tensor:
        tuned = finetune_segmenter(supervised_seg, support.to(device), config.finetune_steps, seed=index)
        with torch.no_grad():
            return tuned(query.to(device)).softmax(dim=1)[:, 1]

    def adapted(support: SupportSet, query: torch.Tensor, index: int) -> torch.Tensor:
        params = adapt(segmenter, support, steps=config.adapt_steps, seed=index)
        return segment_adapted(segmenter, params, support, query)

    seg_methods = {
        "heldout": lambda s, q, _: segmenter.segment(s, q),
        "adapted": adapted,
        "untrained": lambda s, q, _: untrained_segmenter.segment(s, q),
        "supervised_finetuned": finetuned,
    }
    metrics: dict[str, float] = {}
    timings["eval_seg_s"] = timings["eval_grade_s"] = 0.0
    for shots in config.shots:
        start = time.perf_counter()
        dice = evaluate_segmentation(seg_methods, heldout, shots, config.episodes, seed, progress)
        metrics |= {f"seg_dice_{shots}shot_{name}": value for name, value in dice.items()}
        base_dice = evaluate_segmentation({"base": seg_methods["heldout"]}, base_val, shots, config.episodes, seed,
                                          progress)
        metrics[f"seg_dice_{shots}shot_base"] = base_dice["base"]
        timings["eval_seg_s"] += time.perf_counter() - start
        start = time.perf_counter()
        grades = evaluate_grading(graders, supervised_grade, config.finetune_steps, heldout, shots, config.episodes,
                                  seed, progress)
        for name, scores in grades.items():
            metrics |= {f"grade_{key}_{shots}shot_{name}": value for key, value in scores.items()}
        timings["eval_grade_s"] += time.perf_counter() - start
    start = time.perf_counter()
    base_grades = evaluate_grading({"base": graders["heldout"]}, None, 0, base_val, max(config.shots),
                                   config.episodes, seed, progress)
    metrics[f"grade_acc_{max(config.shots)}shot_base"] = base_grades["base"]["acc"]
    metrics["grade_temperature"] = graders["heldout"].temperature
    timings["eval_grade_s"] += time.perf_counter() - start
    segmenters = {"meta_learned": segmenter, "untrained": untrained_segmenter}
    return {"metrics": metrics, "timings": timings, "segmenters": segmenters}


def summarise(per_seed: Sequence[dict[str, object]]) -> tuple[dict[str, float], dict[str, float]]:
    """Mean and standard deviation over seeds of every metric."""
    keys = per_seed[0]["metrics"].keys()
    values = {k: [run["metrics"][k] for run in per_seed] for k in keys}
    return ({k: float(np.mean(v)) for k, v in values.items()}, {k: float(np.std(v)) for k, v in values.items()})


def criteria(mean: dict[str, float], chance: float) -> dict[str, bool]:
    """The floors of the CPU protocol (shared/notes/fewshot.md, section 6a)."""
    return {
        "seg_dice_1shot_heldout>=0.45": mean["seg_dice_1shot_heldout"] >= 0.45,
        "seg_dice_1shot_heldout>=untrained+0.20": mean["seg_dice_1shot_heldout"]
        >= mean["seg_dice_1shot_untrained"] + 0.20,
        "seg_dice_5shot_heldout>seg_dice_1shot_heldout": mean["seg_dice_5shot_heldout"]
        > mean["seg_dice_1shot_heldout"],
        "grade_acc_5shot_heldout>=chance+0.15": mean["grade_acc_5shot_heldout"] >= chance + 0.15,
        "grade_acc_5shot_heldout>untrained": mean["grade_acc_5shot_heldout"] > mean["grade_acc_5shot_untrained"],
    }


def print_table(mean: dict[str, float], std: dict[str, float], shots: Sequence[int], chance: float) -> None:
    """Held-out results by method and shot count."""
    columns = [f"{k}-shot" for k in shots]
    print(f"\n{'held-out types':<42}" + "".join(f"{c:>16}" for c in columns))
    rows = [
        ("seg Dice, meta-learned", "seg_dice_{k}shot_heldout"),
        ("seg Dice, meta-learned + adaptation", "seg_dice_{k}shot_adapted"),
        ("seg Dice, untrained", "seg_dice_{k}shot_untrained"),
        ("seg Dice, supervised fine-tuned", "seg_dice_{k}shot_supervised_finetuned"),
        ("seg Dice, meta-learned on base types", "seg_dice_{k}shot_base"),
        ("grade acc, meta-learned", "grade_acc_{k}shot_heldout"),
        ("grade acc, untrained", "grade_acc_{k}shot_untrained"),
        ("grade acc, supervised fine-tuned", "grade_acc_{k}shot_supervised_finetuned"),
        ("grade AUC, meta-learned", "grade_auc_{k}shot_heldout"),
        ("grade AUC, untrained", "grade_auc_{k}shot_untrained"),
        ("grade AUC, supervised fine-tuned", "grade_auc_{k}shot_supervised_finetuned"),
        ("grade NLL, meta-learned (calibrated)", "grade_nll_{k}shot_heldout"),
        ("nearest type top-1, meta-learned", "grade_type_top1_{k}shot_heldout"),
    ]
    for label, key in rows:
        cells = [
            f"{mean[key.format(k=k)]:.3f} ± {std[key.format(k=k)]:.3f}" if key.format(k=k) in mean else "-"
            for k in shots
        ]
        print(f"{label:<42}" + "".join(f"{c:>16}" for c in cells))
    print(f"{'grade chance':<42}{chance:>16.3f}")


REAL_SUFFIX = {"meta_learned": "", "untrained": "_untrained", "meta_learned_ssl_real": "_ssl_real"}


def real_metrics(real: dict[str, Any]) -> dict[str, float]:
    """The flat ``real_seg_dice_<k>shot[_untrained|_ssl_real]`` keys: means over structures of the real proxy."""
    return {f"real_seg_dice_{k}shot{REAL_SUFFIX[method]}": value
            for k, result in real["shots"].items() for method, value in result["mean"].items()}


def ssl_on_real(segmenter: PrototypeSegmenter, data_dir: Path, config: BenchConfig, progress: bool
                ) -> PrototypeSegmenter:
    """A copy of ``segmenter`` after SSL superpixel episodes on unlabelled crops of the real scans (as the admin
    refresh does on the store's studies; no label is used)."""
    spec = load_fewshot_task("fewshot_tumor").slices
    structures = load_real_structures(data_dir, spec)
    crops = unlabelled_windows(structures, config.unlabelled, spec.support_window, np.random.default_rng(0))
    tuned = copy.deepcopy(segmenter)
    pretrain_ssl(tuned, crops, TrainConfig(steps=config.ssl_steps, episodes_per_step=config.episodes_per_step,
                                           lr=3e-4, seed=0), max_shots=3, progress=progress)
    return tuned.eval()


def _cell(value: float | None) -> str:
    return f"{'-':>15}" if value is None else f"{value:>15.3f}"


def print_real_table(real: dict[str, Any]) -> None:
    """Real-data proxy Dice by structure, method and shot count, with each row's number of episodes."""
    shots = list(real["shots"])
    methods = list(next(iter(real["shots"].values()))["mean"])
    short = {"meta_learned": "meta", "untrained": "untr.", "meta_learned_ssl_real": "+SSL"}
    header = "".join("".join(f"{f'{k}-shot {short[m]}':>15}" for m in methods) + f"{'(eps)':>7}" for k in shots)
    print(f"\n{'real structures, seed-0 networks':<34}{'':>4}" + header)
    for name, info in real["structures"].items():
        cells = []
        for k in shots:
            result = real["shots"][k]["structures"].get(name)
            if result is None:
                cells.append(f"{'skipped':>15}" + f"{'-':>15}" * (len(methods) - 1) + f"{'':>7}")
            else:
                cells.append("".join(f"{result['dice'][m]:>15.3f}" for m in methods) + f"{result['episodes']:>7}")
        print(f"{name:<34}{info['modality']:>4}" + "".join(cells))
    means = ["".join(_cell(real["shots"][k]["mean"][m]) for m in methods) + f"{'':>7}" for k in shots]
    print(f"{'mean over structures':<38}" + "".join(means))
    for k in shots:
        for name, reason in real["shots"][k]["skipped"].items():
            print(f"  {k}-shot skipped for {name}: {reason}")


def plot(mean: dict[str, float], std: dict[str, float], shots: Sequence[int], path: Path) -> None:
    """Held-out Dice against the number of shots, one line per method."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, label in [("heldout", "meta-learned"), ("adapted", "meta-learned + adaptation"),
                        ("supervised_finetuned", "supervised, fine-tuned"), ("untrained", "untrained")]:
        keys = [f"seg_dice_{k}shot_{name}" for k in shots]
        ax.errorbar(shots, [mean[k] for k in keys], yerr=[std[k] for k in keys], marker="o", capsize=3, label=label)
    ax.set_xlabel("support cases (shots)")
    ax.set_ylabel("held-out Dice")
    ax.set_xticks(list(shots))
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("Few-shot segmentation of unseen tumour types (phantoms)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    """Parse arguments, run every seed, print the table, write JSON and the plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small run for 2 CPU cores (a few minutes)")
    parser.add_argument("--seeds", type=int, default=3, help="training seeds (default 3)")
    parser.add_argument("--episodes", type=int, help="evaluation episodes per seed and shot count")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG of Dice against shots here")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    args = parser.parse_args()

    torch.set_num_threads(min(2, torch.get_num_threads()))
    config = QUICK if args.quick else FULL
    if args.episodes:
        config = BenchConfig(**{**asdict(config), "episodes": args.episodes})
    device = torch.device(args.device)
    seeds = list(range(args.seeds))
    start = time.perf_counter()
    per_seed = [run_seed(seed, config, device, not args.no_progress)
                for seed in tqdm(seeds, desc="seeds", disable=args.no_progress)]
    wall = time.perf_counter() - start
    mean, std = summarise(per_seed)
    chance = 1.0 / len(GRADES)
    checks = criteria(mean, chance)
    print_table(mean, std, config.shots, chance)
    real_dir = Path(os.environ.get("HOPE_SHARED_DATA", REPO_ROOT.parent / "shared" / "data"))
    real: dict[str, Any]
    if real_dir.is_dir():
        start = time.perf_counter()
        segmenters = dict(per_seed[0]["segmenters"])
        segmenters["meta_learned_ssl_real"] = ssl_on_real(segmenters["meta_learned"], real_dir, config,
                                                          not args.no_progress)
        real = evaluate_real(segmenters, real_dir, REAL_SHOTS, REAL_EPISODES, seed=seeds[0])
        real["wall_s"] = time.perf_counter() - start
        print_real_table(real)
    else:
        real = {"skipped": f"shared data folder {real_dir} is missing"}
        print(f"\nreal-data proxy skipped: {real['skipped']}")
    print(f"\nwall time {wall:.0f} s on {device} ({torch.get_num_threads()} threads)"
          + (f", real-data proxy {real['wall_s']:.0f} s" if "wall_s" in real else ""))
    for name, ok in checks.items():
        print(f"  {'PASS' if ok else 'FAIL'}  {name}")
    if args.plot:
        plot(mean, std, config.shots, args.plot)
    if args.json:
        result = {
            **mean,
            **(real_metrics(real) if "shots" in real else {}),
            "grade_chance": chance,
            "std": std,
            "criteria": checks,
            "criteria_met": all(checks.values()),
            "seeds": seeds,
            "episodes": config.episodes,
            "shots": list(config.shots),
            "base_types": list(BASE_TYPES),
            "heldout_types": list(HELDOUT_TYPES),
            "mode": "quick" if args.quick else "full",
            "config": asdict(config),
            "device": str(device),
            "threads": torch.get_num_threads(),
            "wall_s": wall,
            "timings": [run["timings"] for run in per_seed],
            "per_seed": [run["metrics"] for run in per_seed],
            "real": real,
            "notes": NOTES,
        }
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
