"""Benchmark: HOPE's models on the real labelled scans of ``../shared/data``, against trivial baselines measured in
the same run.

1. Supervised (:mod:`hope.benchmarks.real_supervised`): each task of ``configs/server.yaml`` (or ``--tasks``) on
   each real scan of a modality it annotates, through the server's own infer task, with its served weights (shipped,
   else HOPE's seeded first version) and the same network untrained. Dice per structure that the scan's reference
   and the task both have: single vertebrae and discs where the reference names them (TPTBox C5-C7), else "any
   vertebra" / "any disc" (the union of the task's levels against the reference's), the cord, the canal's CSF,
   and the thecal sac where a reference labels the cord and its CSF as one (TotalSegmentator's ``spinal_cord``:
   against spine_mr's cord and canal together, spine_ct's spinal canal).
2. Few-shot, cross-patient (:mod:`hope.benchmarks.real_fewshot`): ``fewshot_tumor``'s shipped encoder, the same
   encoder untrained, and two baselines that learn nothing (nearest mean intensity; the support mask pasted at the
   same relative position), with support and query from two patients, whole query slices, at 1 and 5 shots.

No real tumour label exists in the shared data (phantoms stand in for tumours); the real scans are few.

    .venv/bin/python scripts/bench_real.py --quick --json /tmp/bench_real.json   # 1-2 minutes on 2 CPU cores
    .venv/bin/python scripts/bench_real.py --json bench_real.json                 # every pair, whole scans: 6-13 min
    .venv/bin/python scripts/bench_real.py --quick --weights spine_mr=/tmp/w.pt --plot real.png  # a candidate, drawn

Quick figures are not comparable with full ones: the supervised scans are cut to their structures (fewer false
positives), and the few-shot queries to a few slices of fewer pairs.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from hope.benchmarks.real_cases import crop_to_structures, load_scans, real_scans
from hope.benchmarks.real_fewshot import (
    METHODS,
    SHOTS,
    Pair,
    cross_patient_pairs,
    evaluate_fewshot,
    fewshot_segmenters,
    mean_present,
)
from hope.benchmarks.real_plot import Suggestion, plot_suggestions
from hope.benchmarks.real_proxy import MIN_LESION_PIXELS
from hope.benchmarks.real_supervised import evaluate_supervised
from hope.config import REPO_ROOT, TaskDefinition, config_dir, load_server_settings, load_task
from hope.config.files import read_yaml
from hope.fewshot.anatomy_features import anatomy_features
from hope.fewshot.config import load_fewshot_task

FEWSHOT_TASK = "fewshot_tumor"


@dataclass(frozen=True)
class Mode:
    """How much of each scan a run uses: ``None`` for all of it."""

    name: str
    max_query_slices: int | None  # few-shot: contiguous query slices evaluated, centred on the structures
    crop_margin_mm: float | None  # supervised: scans cut to their structures' bounding box plus this margin
    pairs: tuple[str, ...] | None  # few-shot pairs by name (None: every cross-patient pair)


# Quick: one pair per structure and contrast pair, with the smaller query (the 512² CT costs the most per slice).
QUICK = Mode("quick", max_query_slices=4, crop_margin_mm=10.0, pairs=(
    "vertebra: ct-dicom -> ct-3mm",
    "thecal_sac: ct-dicom -> ct-3mm",
    "thecal_sac: mr-t2-tptbox -> mr-t1-abdomen",
    "vertebra: mr-t2-tptbox -> mr-t1-abdomen",
    "vertebra: mr-t1-abdomen -> mr-t2-tptbox",
))
FULL = Mode("full", max_query_slices=None, crop_margin_mm=None, pairs=None)

NOTES = (
    "No real tumour label exists in the shared data: these are real spine structures, and phantoms stand in for "
    "tumours (shared/README.md).",
    "The real scans are few (2 CT and 3 MR scans of 5 patients) and some labels are TotalSegmentator model output: "
    "read the figures as a check on real images, not as clinical accuracy.",
    "TPTBox's crop is labelled C5-C7 but its anatomy is lumbar-sized; the abdominal MR and the CTs are "
    "thoracolumbar, so the cervical tasks are scored there on 'any vertebra' / 'any disc'.",
    f"Few-shot: k support slices evenly spaced through the support's slices with >= {MIN_LESION_PIXELS} structure "
    "pixels; Dice is the mean over the query slices that hold the structure, and the other query slices only count "
    "for 'empty FP' (the share of them where a method predicts anything).",
    "Few-shot MR slices are windowed to each volume's 1st-99th percentiles (fewshot_tumor serves CT and has an HU "
    "window only); CT slices use the task's HU window.",
    "TotalSegmentator's spinal_cord is the thecal sac (cord and CSF as one: 14-18 mm across, the bony canal's "
    "content), scored as 'thecal_sac' against the union of the task's cord and canal (spine_ct: its spinal canal) "
    "and paired in few-shot only with another sac, never with a cord. TPTBox's cord label is a third of its cord "
    "(model output: 345 voxels of a 1,109-voxel dark core), so its cord and CSF are scored together as the sac too; "
    "the SCT cord is then paired with nothing (no T2->T2 pair).",
    "The abdominal MR is T1-weighted by its look (no header); the brain glioblastoma and the 3-slice dcmqi CT are "
    "not used: no structure in common with the spine scans, and a vertebra outline of another definition.",
)

QUICK_NOTE = (f"Quick run: supervised scans cut to their structures' bounding box + {QUICK.crop_margin_mm} mm "
              f"(fewer false positives than whole scans), few-shot queries to {QUICK.max_query_slices} slices of "
              f"{len(QUICK.pairs or ())} pairs: not comparable with a full run.")


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help=f"{len(QUICK.pairs or ())} few-shot pairs of {QUICK.max_query_slices} query slices, "
                             "supervised scans cut to their structures (1-2 minutes on 2 CPU cores)")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument("--plot", type=Path, help="write a PNG of the served suggestions on the real scans here")
    parser.add_argument("--shared", type=Path, default=REPO_ROOT.parent / "shared",
                        help="the shared folder, with data/ (default: <repo>/../shared)")
    parser.add_argument("--tasks", help="supervised tasks, comma-separated (default: configs/server.yaml's tasks; "
                        "'' for none)")
    parser.add_argument("--pairs", help="few-shot pairs, comma-separated names like 'vertebra: ct-dicom "
                                        "-> ct-3mm' (default: the mode's)")
    parser.add_argument("--weights", action="append", default=[], metavar="TASK=PATH",
                        help="score these weights as the task's served ones instead of the shipped (a supervised "
                             f"task's pretraining output, or {FEWSHOT_TASK}'s); repeatable")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    return parser.parse_args(argv)


def parse_weights(items: Sequence[str]) -> dict[str, Path]:
    """``TASK=PATH`` items as a mapping; a ``SystemExit`` that says what is wrong for a malformed item or a
    missing file."""
    weights = {}
    for item in items:
        task, sep, path = item.partition("=")
        if not sep or not task or not path:
            raise SystemExit(f"--weights takes TASK=PATH, got {item!r}")
        if not Path(path).is_file():
            raise SystemExit(f"--weights {item}: no file {path}")
        weights[task] = Path(path)
    return weights


def supervised_tasks(names: Sequence[str]) -> tuple[list[TaskDefinition], list[str]]:
    """The named tasks that have a supervised definition in ``configs/tasks/``, and a note for each that has none
    (no file, or a task of another ``kind``)."""
    tasks, missing = [], []
    for name in names:
        path = config_dir() / "tasks" / f"{name}.yaml"
        if not path.is_file():
            missing.append(f"task {name} has no configs/tasks/{name}.yaml")
        elif (kind := read_yaml(path).get("kind")) is not None:
            missing.append(f"task {name} is a {kind} task, not a supervised one (the few-shot pairs are scored on "
                           "their own: --pairs)")
        else:
            tasks.append(load_task(name))
    return tasks, missing


def select_pairs(pairs: Sequence[Pair], names: Sequence[str] | None) -> list[Pair]:
    """The pairs named in ``names``, in that order (all of ``pairs`` for ``None``)."""
    if names is None:
        return list(pairs)
    by_name = {p.name: p for p in pairs}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise ValueError(f"no cross-patient pair {unknown}; the pairs are {sorted(by_name)}")
    return [by_name[n] for n in names]


def summarise(supervised: dict[str, Any], fewshot: dict[str, Any], no_served_encoder: str | None
              ) -> tuple[dict[str, float | None], dict[str, str]]:
    """The headline figures, and why each that is ``None`` is (``no_served_encoder``: why there is no shipped
    few-shot encoder, ``None`` when there is one)."""
    rows = supervised["rows"]
    means = fewshot["mean"]
    values = {
        "supervised_dice_real": mean_present(r["served"] for r in rows),
        "supervised_dice_real_untrained": mean_present(r["untrained"] for r in rows),
        "fewshot_dice_cross_patient_1shot": means["1"]["served"],
        "fewshot_dice_cross_patient_5shot": means["5"]["served"],
        "fewshot_untrained_dice": mean_present(means[str(k)]["untrained"] for k in SHOTS),
        "fewshot_baseline_intensity_dice": mean_present(means[str(k)]["intensity"] for k in SHOTS),
        "fewshot_baseline_paste_dice": mean_present(means[str(k)]["paste"] for k in SHOTS),
    }
    why = {}
    for key, value in values.items():
        if value is not None:
            continue
        if key.startswith("supervised"):
            why[key] = "no supervised task annotates a modality of the real scans with a structure they label"
        elif not fewshot["pairs"]:
            why[key] = "no few-shot pair could be evaluated"
        elif key.startswith("fewshot_dice_cross_patient") and no_served_encoder:
            why[key] = no_served_encoder
        else:
            why[key] = "no evaluated query slice holds the structure"
    return values, why


def ratio(served: float | None, baselines: Sequence[float | None]) -> float | None:
    """``served`` over the best of ``baselines`` (``None`` when either is missing or the best is 0)."""
    best = max((b for b in baselines if b is not None), default=None)
    return served / best if served is not None and best else None


def _cell(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def print_supervised(supervised: dict[str, Any]) -> None:
    """The supervised table: one row per (task, case, structure), then the means."""
    print("\nSupervised tasks on real scans (Dice; served = shipped weights, else HOPE's seeded first version)")
    for task, info in supervised["tasks"].items():
        print(f"  {task}: served = {info['served']}")
    print(f"  {'task':<10} {'case':<15} {'structure':<12} {'served':>6} {'untrained':>9} {'served/untrained':>16}")
    rows = supervised["rows"]
    for r in rows:
        print(f"  {r['task']:<10} {r['case']:<15} {r['structure']:<12} {_cell(r['served'])} {_cell(r['untrained']):>9}"
              f" {_cell(ratio(r['served'], [r['untrained']])):>16}")
    served, untrained = mean_present(r["served"] for r in rows), mean_present(r["untrained"] for r in rows)
    print(f"  {'mean':<39} {_cell(served)} {_cell(untrained):>9} {_cell(ratio(served, [untrained])):>16}")
    for note in supervised["not_compared"]:
        print(f"  (not compared: {note})")


def print_fewshot(fewshot: dict[str, Any], encoders: dict[str, str]) -> None:
    """The few-shot table: one row per (pair, shots), then the means and the empty-slice false positives."""
    print("\nFew-shot, cross-patient (Dice over query slices with the structure; whole query slices, threshold 0.5, "
          "largest 3D component)")
    for name, source in encoders.items():
        print(f"  {name} = {source}")
    head = "".join(f" {m:>9}" for m in METHODS)
    print(f"  {'pair':<40} {'kind':<7} {'k':>2} {'slices':>6}{head} {'served/best':>11}")
    for name, pair in fewshot["pairs"].items():
        for scores in pair["shots"].values():
            dice = scores["dice"]
            cells = "".join(f" {_cell(dice.get(m)):>9}" for m in METHODS)
            best = ratio(dice.get("served"), [dice.get(m) for m in METHODS if m != "served"])
            print(f"  {name:<40} {pair['contrast']:<7} {scores['shots_used']:>2} {scores['slices_scored']:>6}{cells}"
                  f" {_cell(best):>11}")
    for k, means in fewshot["mean"].items():
        cells = "".join(f" {_cell(means[m]):>9}" for m in METHODS)
        best = ratio(means["served"], [means[m] for m in METHODS if m != "served"])
        print(f"  {f'mean, {k}-shot':<40} {'':<7} {k:>2} {'':>6}{cells} {_cell(best):>11}")
    for k in fewshot["mean"]:
        shares = {m: mean_present(p["shots"][k]["empty_false_positive"].get(m) for p in fewshot["pairs"].values())
                  for m in METHODS}
        cells = "".join(f" {_cell(shares[m]):>9}" for m in METHODS)
        print(f"  {f'empty FP, {k}-shot (share of empty slices)':<57}{cells}")
    for name, reason in fewshot["skipped"].items():
        print(f"  (skipped {name}: {reason})")


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Run the benchmark, print its tables, write the JSON; returns the result."""
    args = parse_args(argv)
    candidates = parse_weights(args.weights)
    mode = QUICK if args.quick else FULL
    data_dir = args.shared / "data"
    start = time.perf_counter()
    scans = load_scans(data_dir)
    loaded_s = time.perf_counter() - start

    start = time.perf_counter()
    names = ([n.strip() for n in args.tasks.split(",") if n.strip()] if args.tasks is not None
             else list(load_server_settings().tasks))
    tasks, missing = supervised_tasks(names)
    cases = [crop_to_structures(s, mode.crop_margin_mm) if mode.crop_margin_mm is not None else s for s in scans]
    suggestions: list[Suggestion] = []
    supervised = evaluate_supervised(tasks, cases, args.device, candidates, on_prediction=(
        lambda task, scan, label: suggestions.append(Suggestion(task.name, scan, label))) if args.plot else None)
    supervised["not_compared"] = missing + supervised["not_compared"]
    supervised_s = time.perf_counter() - start

    start = time.perf_counter()
    task = load_fewshot_task(FEWSHOT_TASK)
    segmenters, encoders = fewshot_segmenters(task, args.device, candidates.get(FEWSHOT_TASK))
    chosen = [n.strip() for n in args.pairs.split(",")] if args.pairs else mode.pairs
    pairs = select_pairs(cross_patient_pairs(real_scans(data_dir)), chosen)
    fewshot = evaluate_fewshot(segmenters, scans, pairs, task, SHOTS, mode.max_query_slices,
                               anatomy_features(task, args.device))
    fewshot_s = time.perf_counter() - start

    values, why = summarise(supervised, fewshot, None if "served" in segmenters else encoders["served"])
    print_supervised(supervised)
    print_fewshot(fewshot, encoders)
    print()
    notes = [*NOTES, *([QUICK_NOTE] if mode is QUICK else [])]
    for note in notes:
        print(f"NB: {note}")
    total = loaded_s + supervised_s + fewshot_s
    print(f"\n{mode.name} run on {args.device}: {total:.0f} s (loading {loaded_s:.0f} s, supervised "
          f"{supervised_s:.0f} s, few-shot {fewshot_s:.0f} s)")
    result = {
        **values,
        "null_reasons": why,
        "supervised": supervised,
        "fewshot": fewshot,
        "fewshot_encoders": encoders,
        "mode": {"name": mode.name, "max_query_slices": mode.max_query_slices, "crop_margin_mm": mode.crop_margin_mm},
        "shared": str(args.shared),
        "device": args.device,
        "seconds": {"loading": loaded_s, "supervised": supervised_s, "fewshot": fewshot_s, "total": total},
        "notes": notes,
    }
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    if args.plot and suggestions:
        plot_suggestions(args.plot, suggestions)
        print(f"wrote {args.plot}")
    return result


if __name__ == "__main__":
    main()
