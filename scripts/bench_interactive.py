"""Benchmark: how fast simulated scribbles correct a wrong suggestion with GraphCut (``StructureScribblesInfer``).

For each phantom seed and each structure, the suggestion is the phantom's label with that structure made wrong
(eroded by one voxel, dilated by two, or shifted by three voxels along the rows; the kind rotates with seed and
structure, and voxels the structure gives up take the nearest other label). A simulated annotator
(:mod:`hope.interactive.simulate`) then draws one scribble at a time in the largest error region, and the infer
task refines the structure from the image and the upload (current label with every scribble so far painted in),
in process and through files, as the server runs it. Reported per structure: mean Dice after 0, 1, 3, 5 and 10
scribbles, the median number of scribbles to reach the Dice target, and the latency of one interaction (the
infer task call: read image and upload, GraphCut, write the result; one warm-up call is left out).

    .venv/bin/python scripts/bench_interactive.py [--quick] [--seeds 20] [--structures tumor C4] [--json PATH]
        [--shape 200 512 512 --spacing 0.5 0.5 1.0] [--set lamda=0.5 ...]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import SimpleITK as sitk
from scipy import ndimage

from hope.config import load_task
from hope.infers.scribbles import StructureScribblesInfer
from hope.interactive import dice, next_scribble, paint
from hope.interactive.geometry import fill_nearest
from hope.phantoms import PhantomSpec, generate_neck_ct

CHECKPOINTS = (0, 1, 3, 5, 10)
PERTURBATIONS = ("erode", "dilate", "shift")


def perturb(label: np.ndarray, value: int, kind: str, spacing_zyx: tuple[float, float, float]) -> np.ndarray:
    """``label`` with structure ``value`` eroded (1 voxel), dilated (2 voxels) or shifted (3 rows)."""
    structure = label == value
    if kind == "erode":
        wrong = ndimage.binary_erosion(structure)
    elif kind == "dilate":
        wrong = ndimage.binary_dilation(structure, iterations=2)
    else:
        wrong = np.zeros_like(structure)
        wrong[:, 3:, :] = structure[:, :-3, :]
    result = label.copy()
    given_up = structure & ~wrong
    result[wrong] = value
    fill_nearest(result, given_up, ~(structure | wrong), spacing_zyx)
    return result


def _write(array_zyx: np.ndarray, spacing: tuple[float, float, float], path: Path) -> str:
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing(spacing)
    sitk.WriteImage(image, str(path))
    return str(path)


def correct(
    task: StructureScribblesInfer,
    image_path: str,
    ground_truth: np.ndarray,
    suggestion: np.ndarray,
    name: str,
    spacing: tuple[float, float, float],
    seed: int,
    max_scribbles: int,
    workdir: Path,
) -> tuple[list[float], list[float]]:
    """Dice after 0..``max_scribbles`` scribbles for one structure, and the latency of each interaction."""
    value = task.task.labels[name]
    background, foreground = task.settings.background_scribble, task.settings.foreground_scribble
    spacing_zyx = spacing[::-1]
    rng = np.random.default_rng(seed)
    current = suggestion
    scribbles = np.zeros_like(suggestion)
    scores = [dice(current == value, ground_truth == value)]
    latencies = []
    for _ in range(max_scribbles):
        scribble = next_scribble(current, ground_truth, value, rng, spacing=spacing_zyx)
        if scribble is None:  # nothing left to correct
            scores.append(scores[-1])
            continue
        paint(scribbles, scribble, background, foreground)
        upload = np.where(scribbles > 0, scribbles, current).astype(np.uint8)
        upload_path = _write(upload, spacing, workdir / "upload.nii.gz")
        start = time.perf_counter()
        result, _ = task({"image": image_path, "label": upload_path, "selected_label_name": name, "device": "cpu"})
        latencies.append(time.perf_counter() - start)
        current = sitk.GetArrayFromImage(sitk.ReadImage(result))
        Path(result).unlink()
        scores.append(dice(current == value, ground_truth == value))
    return scores, latencies


def _to_target(scores: list[float], target: float) -> int | None:
    return next((k for k, s in enumerate(scores) if s >= target), None)


def run(
    seeds: list[int],
    structures: list[str] | None,
    max_scribbles: int,
    target: float,
    overrides: dict[str, str],
    spec: PhantomSpec,
) -> dict[str, Any]:
    """Run the benchmark (``overrides``: ``interactive`` settings to change); return results and latencies."""
    task = StructureScribblesInfer(load_task("spine_ct"))
    if overrides:
        changes = {key: type(getattr(task.settings, key))(value) for key, value in overrides.items()}
        settings = dataclasses.replace(task.settings, **changes)
        task = StructureScribblesInfer(dataclasses.replace(task.task, interactive=settings))
    definition = task.task
    names = structures or list(definition.labels)
    per_structure: dict[str, list[dict[str, Any]]] = {name: [] for name in names}
    latencies: list[float] = []
    with tempfile.TemporaryDirectory(prefix="hope-bench-interactive-") as tmp:
        workdir = Path(tmp)
        for seed in seeds:
            phantom = generate_neck_ct(seed, definition.labels, spec)
            image_path = _write(phantom.image, phantom.spacing, workdir / f"image-{seed}.nii.gz")
            if not latencies:  # warm-up: the first call pays for ITK's lazy imports
                warm = _write(phantom.label, phantom.spacing, workdir / "warm.nii.gz")
                Path(task({"image": image_path, "label": warm, "device": "cpu"})[0]).unlink()
            for index, name in enumerate(names):
                value = definition.labels[name]
                if not (phantom.label == value).any():
                    continue
                kind = PERTURBATIONS[(seed + index) % len(PERTURBATIONS)]
                suggestion = perturb(phantom.label, value, kind, phantom.spacing[::-1])
                scores, times = correct(
                    task, image_path, phantom.label, suggestion, name, phantom.spacing, seed, max_scribbles, workdir
                )
                latencies.extend(times)
                per_structure[name].append({"seed": seed, "perturbation": kind, "dice": scores})
    rows = {}
    for name, cases in per_structure.items():
        if not cases:
            continue
        needed = [_to_target(c["dice"], target) for c in cases]
        reached = [n for n in needed if n is not None]
        rows[name] = {
            "cases": len(cases),
            "mean_dice": {k: float(np.mean([c["dice"][k] for c in cases])) for k in CHECKPOINTS if k <= max_scribbles},
            "scribbles_to_target_median": statistics.median(reached) if reached else None,
            "reached_target": len(reached),
            "runs": cases,
        }
    return {
        "seeds": seeds,
        "phantom": {"shape": list(spec.shape), "spacing_mm": list(spec.spacing)},
        "target_dice": target,
        "max_scribbles": max_scribbles,
        "interactions": len(latencies),
        "latency_s": {
            "median": statistics.median(latencies) if latencies else None,
            "p95": float(np.percentile(latencies, 95)) if latencies else None,
        },
        "structures": rows,
        "settings": dict(vars(task.settings)),
    }


def print_table(results: dict[str, Any]) -> None:
    """The results as a plain-text table."""
    checkpoints = [k for k in CHECKPOINTS if k <= results["max_scribbles"]]
    target = results["target_dice"]
    header = f"{'structure':<14}{'cases':>6}" + "".join(f"{f'Dice@{k}':>9}" for k in checkpoints)
    print(header + f"{f'to {target:g} (median, reached)':>30}")
    for name, row in results["structures"].items():
        dices = "".join(f"{row['mean_dice'][k]:>9.3f}" for k in checkpoints)
        median = row["scribbles_to_target_median"]
        needed = f"{median:g}" if median is not None else f">{results['max_scribbles']}"
        reached = f"{needed} ({row['reached_target']}/{row['cases']})"
        print(f"{name:<14}{row['cases']:>6}{dices}{reached:>30}")
    latency = results["latency_s"]
    if latency["median"] is not None:
        print(
            f"latency per interaction over {results['interactions']} interactions: "
            f"median {latency['median']:.3f} s, p95 {latency['p95']:.3f} s"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="eight seeds (1-2 minutes on 2 CPUs)")
    parser.add_argument("--seeds", type=int, default=20, help="number of phantom seeds (default 20)")
    parser.add_argument("--structures", nargs="*", help="label names (default: all)")
    parser.add_argument("--shape", type=int, nargs=3, metavar=("Z", "Y", "X"), help="phantom size (default: 40 64 64)")
    parser.add_argument("--spacing", type=float, nargs=3, metavar=("X", "Y", "Z"), help="phantom voxel size, mm")
    parser.add_argument("--max-scribbles", type=int, default=10)
    parser.add_argument("--target", type=float, default=0.9, help="Dice target (default 0.9)")
    parser.add_argument("--json", type=Path, help="write the results as JSON here")
    parser.add_argument(
        "--set", nargs="*", default=[], metavar="KEY=VALUE", help="override interactive settings, e.g. lamda=0.5"
    )
    args = parser.parse_args()
    logging.disable(logging.INFO)  # MONAI Label logs every transform at INFO
    seeds = list(range(8 if args.quick else args.seeds))
    overrides = dict(item.split("=", 1) for item in args.set)
    geometry = {k: tuple(v) for k, v in (("shape", args.shape), ("spacing", args.spacing)) if v}
    results = run(seeds, args.structures, args.max_scribbles, args.target, overrides, PhantomSpec(**geometry))
    print_table(results)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
