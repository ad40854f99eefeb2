"""Pretrain the few-shot networks (tasks ``fewshot_tumor`` and ``tumor_grade``) on phantom base tumour types.

Nothing is downloaded: the weights are generated here from the project's seeded phantom generator
(:mod:`hope.phantoms.tumor_types`). Only the base types (``BASE_TYPES``) are trained on, labelled or unlabelled, so
the served model meets the held-out types (``HELDOUT_TYPES``) as new types, as it will meet a real rare tumour.

* segmentation: self-supervised superpixel pretraining on unlabelled base-type images, then episodic
  meta-training on labelled base-type cases (as ``scripts/bench_fewshot.py`` trains it) mixed, with
  ``--anatomy-share``, with contrast-randomised episodes of spine anatomy whose support and query come from two
  phantom subjects in two random contrasts (:mod:`hope.fewshot.anatomy_episodes`), so that the encoder learns to
  match anatomy, not intensity, and a T2 support can find its structure in a T1 or a CT (measured: not yet; phantom
  anatomy did not transfer to the real pairs, so the shipped encoder is trained without it); with
  ``--anatomy-features``, every episode carries anatomy features joined to the encoder's as serving joins them
  (exact kind maps from the phantoms' labels, given the errors a network makes:
  :mod:`hope.fewshot.anatomy_training`), so that the encoder learns what they leave out;
* grading: meta-training of the lesion embedder on base-type grade and type episodes, and its temperature fitted
  on held-aside base-type cases.

Both are then evaluated briefly on the held-out types (fixed evaluation seeds, so the numbers are reproducible),
written with :func:`hope.fewshot.checkpoint.save_checkpoint` to ``<out>/fewshot_tumor.pt`` and
``<out>/tumor_grade.pt``, reloaded through the loaders the app uses and re-evaluated, and reported in a JSON
file beside each checkpoint. Network sizes come from ``configs/tasks/<task>.yaml``.

    .venv/bin/python scripts/pretrain_fewshot.py                     # tumor_grade.pt and the first stage of
                                                                     # fewshot_tumor.pt, about 8 min on 2 CPU cores
    .venv/bin/python scripts/pretrain_fewshot.py --init <first stage>/fewshot_tumor.pt --meta-steps 2000 \
        --meta-lr 5e-4 --anatomy-features --anatomy-share 0.7 --anatomies 24 --out DIR
                                                                     # the shipped fewshot_tumor.pt (21 min)
    .venv/bin/python scripts/pretrain_fewshot.py --quick             # smoke run, writes to a temporary folder
    .venv/bin/python scripts/pretrain_fewshot.py [--seed 0] [--ssl-steps N] [--meta-steps N] [--grader-steps N]
                                                 [--per-type N] [--unlabelled N] [--anatomy-share 0]
                                                 [--anatomy-features] [--anatomies 48] [--init PT]
                                                 [--meta-lr 1e-3] [--out DIR]
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from hope.config import REPO_ROOT, load_task
from hope.fewshot.anatomy_episodes import KINDS, anatomy_episodes, anatomy_slices, mixed_episodes
from hope.fewshot.anatomy_training import RandAnatomyErrorsd, with_anatomy_errors
from hope.fewshot.checkpoint import build_embedder, build_segmenter, load_grader, load_segmenter, save_checkpoint
from hope.fewshot.config import load_fewshot_task
from hope.fewshot.episodes import (
    GRADES,
    LabelledCase,
    SegmentationEpisode,
    group_by_type,
    sample_grading_episode,
    sample_segmentation_episode,
)
from hope.fewshot.grading import LesionGrader
from hope.fewshot.meta_train import (
    TrainConfig,
    calibrate_grader,
    labelled_episodes,
    meta_train_grader,
    train_episodic,
)
from hope.fewshot.prototypes import PrototypeSegmenter
from hope.fewshot.ssl import pretrain_ssl
from hope.phantoms.tumor_types import BASE_TYPES, HELDOUT_TYPES, generate_cases, generate_unlabelled

SEGMENTATION_TASK = "fewshot_tumor"
ANATOMY_TASK = "spine_mr"  # whose label names the anatomy episodes' phantoms are labelled with
ANATOMY_FIRST_SEED = 30_000  # phantom seeds of the anatomy episodes' subjects
GRADING_TASK = "tumor_grade"
EPISODES_PER_STEP = 4
SSL_MAX_SHOTS = 3
CALIBRATION_EPISODES = 50
EVAL_SEED = 20_240  # held-out cases and evaluation episodes: fixed, independent of --seed
EVAL_PER_TYPE = 20  # held-out cases per type (a 5-shot grading episode needs 9 per grade)
EVAL_EPISODES = 30
GRADE_QUERIES = 4  # query lesions per grade in a grading episode
THRESHOLD = 0.5
NOTE = ("2D phantoms only (hope.phantoms.tumor_types): no freely licensed spine scan with tumour labels exists, so "
        "these numbers say nothing about real scans or real tumours.")


@dataclass(frozen=True)
class Sizes:
    """Optimiser steps and amounts of training data of one run."""

    ssl_steps: int
    meta_steps: int
    grader_steps: int
    per_type: int
    val_per_type: int
    unlabelled: int
    eval_episodes: int
    anatomies: int


DEFAULT = Sizes(ssl_steps=1200, meta_steps=1500, grader_steps=1500, per_type=60, val_per_type=10, unlabelled=600,
                eval_episodes=EVAL_EPISODES, anatomies=48)
QUICK = Sizes(ssl_steps=10, meta_steps=10, grader_steps=10, per_type=12, val_per_type=10, unlabelled=24,
              eval_episodes=5, anatomies=2)


def dice(probability: torch.Tensor, mask: torch.Tensor, threshold: float = THRESHOLD) -> float:
    """Dice of ``probability > threshold`` against a binary mask (shapes equal up to singleton dimensions)."""
    pred, truth = probability.squeeze().cpu() > threshold, mask.squeeze().cpu() > 0.5
    return float(2 * (pred & truth).sum() / (pred.sum() + truth.sum()).clamp(min=1))


def evaluate_segmentation(segmenter: PrototypeSegmenter, cases_by_type: dict[str, list[LabelledCase]], shots: int,
                          episodes: int, errors: RandAnatomyErrorsd | None = None) -> float:
    """Mean query Dice over ``episodes`` 1-way ``shots``-shot episodes (one query each), seeded by ``shots``; with
    ``errors``, the cases' anatomy features are given them and joined."""
    rng = np.random.default_rng([EVAL_SEED, shots, 1])

    def sample(generator: np.random.Generator) -> SegmentationEpisode:
        return sample_segmentation_episode(cases_by_type, shots, 1, generator)

    source = with_anatomy_errors(sample, errors) if errors is not None else sample
    scores = []
    for _ in tqdm(range(episodes), desc=f"held-out seg {shots}-shot", leave=False):
        episode = source(rng)
        probability = segmenter.segment(episode.support, episode.query.images, episode.query.anatomy)
        scores.append(dice(probability, episode.query.masks))
    return float(np.mean(scores))


def evaluate_grading(grader: LesionGrader, cases_by_type: dict[str, list[LabelledCase]], shots: int,
                     episodes: int) -> float:
    """Grade accuracy over ``episodes`` 3-way ``shots``-shot grading episodes (``GRADE_QUERIES`` per grade)."""
    rng = np.random.default_rng([EVAL_SEED, shots, 2])
    hits: list[bool] = []
    for _ in tqdm(range(episodes), desc=f"held-out grade {shots}-shot", leave=False):
        episode = sample_grading_episode(cases_by_type, shots, GRADE_QUERIES, rng)
        predicted = grader.fit(episode.support).probabilities(episode.query).argmax(axis=1)
        hits += list(predicted == np.asarray(episode.targets(episode.query)))
    return float(np.mean(hits))


def segmentation_metrics(segmenter: PrototypeSegmenter, heldout: dict[str, list[LabelledCase]],
                         episodes: int, errors: RandAnatomyErrorsd | None = None) -> dict[str, float]:
    """Held-out Dice at 1 and 5 shots (with anatomy features given ``errors``, when given)."""
    return {f"heldout_dice_{k}shot": evaluate_segmentation(segmenter, heldout, k, episodes, errors) for k in (1, 5)}


def grading_metrics(grader: LesionGrader, heldout: dict[str, list[LabelledCase]], episodes: int) -> dict[str, float]:
    """Held-out grade accuracy at 5 shots."""
    return {"heldout_grade_acc_5shot": evaluate_grading(grader, heldout, 5, episodes)}


def same(a: dict[str, float], b: dict[str, float], tolerance: float = 1e-6) -> bool:
    """Whether two metric mappings have the same keys and values within ``tolerance``."""
    return a.keys() == b.keys() and all(abs(a[k] - b[k]) <= tolerance for k in a)


def sha256(path: Path) -> str:
    """The SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def relative(path: Path) -> str:
    """``path`` relative to the repository when inside it, else absolute."""
    path = path.resolve()
    return str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path)


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write ``report`` as indented JSON."""
    path.write_text(json.dumps(report, indent=2) + "\n")


def main() -> None:
    """Train both networks on base types, evaluate on held-out types, save, reload-check and report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0, help="training seed: data, initialisation, episodes")
    parser.add_argument("--ssl-steps", type=int, help=f"SSL superpixel steps (default {DEFAULT.ssl_steps})")
    parser.add_argument("--meta-steps", type=int, help=f"segmentation meta-training steps ({DEFAULT.meta_steps})")
    parser.add_argument("--grader-steps", type=int, help=f"grader meta-training steps ({DEFAULT.grader_steps})")
    parser.add_argument("--per-type", type=int, help=f"labelled training cases per base type ({DEFAULT.per_type})")
    parser.add_argument("--unlabelled", type=int, help=f"unlabelled images for SSL ({DEFAULT.unlabelled})")
    parser.add_argument("--anatomy-share", type=float, default=0.0,
                        help="share of meta-training episodes of contrast-randomised spine anatomy (default 0: "
                             "phantom tumour types only; 0.5 for 3,000 steps scored below the shipped encoder on "
                             "the real cross-patient pairs of bench_real.py: quick 5-shot 0.064 against 0.188)")
    parser.add_argument("--anatomies", type=int, help=f"phantom subjects of those episodes ({DEFAULT.anatomies})")
    parser.add_argument("--anatomy-features", action="store_true",
                        help="meta-train with anatomy features in the loop, as the task's anatomy: section serves "
                             "them: the phantoms' exact kind maps given a network's errors "
                             "(hope.fewshot.anatomy_training); the held-out Dice then joins them too")
    parser.add_argument("--init", type=Path, help="start the segmentation network from these weights (a "
                        "fewshot_tumor checkpoint) instead of SSL: the SSL phase is skipped")
    parser.add_argument("--meta-lr", type=float, default=TrainConfig.lr,
                        help=f"segmentation meta-training learning rate (default {TrainConfig.lr})")
    parser.add_argument("--out", type=Path, help="output folder (default apps/hope/pretrained; with --quick a "
                                                 "temporary folder)")
    parser.add_argument("--quick", action="store_true", help="a tiny smoke run (well under a minute)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    base_sizes = QUICK if args.quick else DEFAULT
    sizes = Sizes(
        ssl_steps=args.ssl_steps if args.ssl_steps is not None else base_sizes.ssl_steps,
        meta_steps=args.meta_steps if args.meta_steps is not None else base_sizes.meta_steps,
        grader_steps=args.grader_steps if args.grader_steps is not None else base_sizes.grader_steps,
        per_type=args.per_type if args.per_type is not None else base_sizes.per_type,
        val_per_type=base_sizes.val_per_type,
        unlabelled=args.unlabelled if args.unlabelled is not None else base_sizes.unlabelled,
        eval_episodes=base_sizes.eval_episodes,
        anatomies=args.anatomies if args.anatomies is not None else base_sizes.anatomies,
    )
    if not 0.0 <= args.anatomy_share <= 1.0:
        raise SystemExit(f"--anatomy-share is a share in [0, 1], got {args.anatomy_share}")
    if args.out is not None:
        out = args.out
    elif args.quick:
        out = Path(tempfile.gettempdir()) / "hope-fewshot-quick"
    else:
        out = REPO_ROOT / "apps" / "hope" / "pretrained"
    seg_task, grade_task = load_fewshot_task(SEGMENTATION_TASK), load_fewshot_task(GRADING_TASK)
    seed = args.seed
    timings: dict[str, float] = {}

    def train(steps: int, lr: float = TrainConfig.lr) -> TrainConfig:
        return TrainConfig(steps=steps, episodes_per_step=EPISODES_PER_STEP, lr=lr, seed=seed)

    start = total_start = time.perf_counter()
    features = args.anatomy_features
    if features and seg_task.anatomy is None:
        raise SystemExit(f"--anatomy-features: configs/tasks/{SEGMENTATION_TASK}.yaml has no anatomy: section")
    errors = RandAnatomyErrorsd(keys=["support", "query"]) if features else None
    base = group_by_type(generate_cases(BASE_TYPES, sizes.per_type, seed=10 * seed, with_anatomy=features))
    base_val = group_by_type(generate_cases(BASE_TYPES, sizes.val_per_type, seed=10 * seed + 1))
    heldout = group_by_type(generate_cases(HELDOUT_TYPES, EVAL_PER_TYPE, seed=EVAL_SEED, with_anatomy=features))
    first_anatomy = ANATOMY_FIRST_SEED + sizes.anatomies * seed
    anatomy_seeds = range(first_anatomy, first_anatomy + sizes.anatomies)
    subjects = anatomy_slices(load_task(ANATOMY_TASK), anatomy_seeds) if args.anatomy_share > 0 else []
    timings["data_s"] = time.perf_counter() - start

    torch.manual_seed(seed)
    start = time.perf_counter()
    if args.init is not None:
        segmenter = load_segmenter(args.init, seg_task)
        sizes = dataclasses.replace(sizes, ssl_steps=0, unlabelled=0)
    else:
        segmenter = build_segmenter(seg_task)
        unlabelled = generate_unlabelled(sizes.unlabelled, BASE_TYPES, seed=seed)
        pretrain_ssl(segmenter, unlabelled, train(sizes.ssl_steps), max_shots=SSL_MAX_SHOTS)
    timings["ssl_s"] = time.perf_counter() - start
    start = time.perf_counter()
    episodes = labelled_episodes(base)
    if subjects:
        episodes = mixed_episodes([(episodes, 1.0 - args.anatomy_share),
                                   (anatomy_episodes(subjects, seg_task.slices), args.anatomy_share)])
    if errors is not None:
        episodes = with_anatomy_errors(episodes, errors)
    train_episodic(segmenter, episodes, train(sizes.meta_steps, args.meta_lr), desc="meta-train")
    timings["meta_train_seg_s"] = time.perf_counter() - start

    torch.manual_seed(seed)
    embedder = build_embedder(grade_task)
    start = time.perf_counter()
    meta_train_grader(embedder, base, train(sizes.grader_steps))
    timings["meta_train_grade_s"] = time.perf_counter() - start
    start = time.perf_counter()
    temperature = calibrate_grader(embedder, base_val, episodes=CALIBRATION_EPISODES, seed=seed)
    timings["calibrate_s"] = time.perf_counter() - start

    start = time.perf_counter()
    seg_metrics = segmentation_metrics(segmenter, heldout, sizes.eval_episodes, errors)
    grade_metrics = grading_metrics(LesionGrader(embedder, temperature), heldout, sizes.eval_episodes)
    timings["eval_s"] = time.perf_counter() - start

    seg_steps = {"ssl": sizes.ssl_steps, "meta_train": sizes.meta_steps, "meta_lr": args.meta_lr,
                 "init": None if args.init is None else {"weights": relative(args.init), "sha256": sha256(args.init)}}
    grade_steps = {"meta_train": sizes.grader_steps}
    anatomy = {"share": args.anatomy_share, "kinds": list(KINDS), "subjects": len(subjects),
               "phantom_seeds": [anatomy_seeds[0], anatomy_seeds[-1]] if subjects else [],
               "features_in_the_loop": features}
    seg_path = save_checkpoint(out / f"{SEGMENTATION_TASK}.pt", seg_task, segmenter,
                               {"phantom_types": list(BASE_TYPES), "seed": seed, "steps": seg_steps,
                                "anatomy_episodes": anatomy})
    grade_path = save_checkpoint(out / f"{GRADING_TASK}.pt", grade_task, embedder,
                                 {"phantom_types": list(BASE_TYPES), "seed": seed, "steps": grade_steps},
                                 temperature=temperature)

    start = time.perf_counter()  # what the app loads must score the same as what was trained
    reloaded_seg = segmentation_metrics(load_segmenter(seg_path, seg_task), heldout, sizes.eval_episodes, errors)
    reloaded_grade = grading_metrics(load_grader(grade_path, grade_task), heldout, sizes.eval_episodes)
    timings["reload_check_s"] = time.perf_counter() - start
    seg_ok, grade_ok = same(seg_metrics, reloaded_seg), same(grade_metrics, reloaded_grade)
    seconds = time.perf_counter() - total_start

    common = {
        "trained_on": {"phantom_types": list(BASE_TYPES), "seed": seed},
        "heldout_types": list(HELDOUT_TYPES),
        "evaluation": {"seed": EVAL_SEED, "cases_per_type": EVAL_PER_TYPE, "episodes": sizes.eval_episodes,
                       "threshold": THRESHOLD, "grade_queries_per_grade": GRADE_QUERIES},
        "episodes_per_step": EPISODES_PER_STEP,
        "seconds": round(seconds, 1),
        "timings_s": {k: round(v, 1) for k, v in timings.items()},
        "mode": "quick" if args.quick else "default",
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": "cpu",
        "note": NOTE,
    }
    write_report(seg_path.with_suffix(".json"), {
        "task": SEGMENTATION_TASK,
        "weights": relative(seg_path),
        **seg_metrics,
        "steps": seg_steps,
        "data": {"labelled_per_base_type": sizes.per_type, "unlabelled_images": sizes.unlabelled},
        "anatomy_episodes": anatomy,
        "reload_matches": seg_ok,
        **common,
    })
    write_report(grade_path.with_suffix(".json"), {
        "task": GRADING_TASK,
        "weights": relative(grade_path),
        **grade_metrics,
        "grade_chance": 1.0 / len(GRADES),
        "temperature": temperature,
        "steps": grade_steps,
        "data": {"labelled_per_base_type": sizes.per_type, "calibration_per_base_type": sizes.val_per_type,
                 "calibration_episodes": CALIBRATION_EPISODES},
        "reload_matches": grade_ok,
        **common,
    })

    print(f"\n{'held-out types (never trained on)':<36}{'value':>8}")
    for key, value in (*seg_metrics.items(), *grade_metrics.items()):
        print(f"{key:<36}{value:>8.3f}")
    print(f"{'grade temperature':<36}{temperature:>8.3f}")
    for path in (seg_path, grade_path):
        print(f"wrote {relative(path)} ({path.stat().st_size / 1024:.0f} KiB) and {path.with_suffix('.json').name}")
    print(f"reloaded checkpoints reproduce the numbers: segmentation {seg_ok}, grading {grade_ok}")
    print(f"{seconds:.0f} s on cpu ({torch.get_num_threads()} threads), torch {torch.__version__}")
    if not (seg_ok and grade_ok):
        raise SystemExit("a reloaded checkpoint scores differently from the trained network")


if __name__ == "__main__":
    main()
