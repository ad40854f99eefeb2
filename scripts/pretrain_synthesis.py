"""Pretrain a segmentation task's network on images synthesised from label maps, to segment real CT and MR alike.

SynthSeg (Billot et al., Medical Image Analysis 2023): no real labelled spine scan exists to train on, so every
training image is synthesised on the fly from an anatomy's tissue map (a phantom's, or with ``--real-anatomy`` a
real scan's label map), with a random contrast (a Gaussian per
tissue), deformation, partial volume, slice thickness, bias field, noise, gamma and field of view, and normalised
as the task's inference normalises (:mod:`hope.synthesis`). A share of the images (``--rendered-share``) keeps
the phantom generator's own CT, T1 or T2 rendering as the contrast, deformed and acquired alike: it anchors the
network to the contrasts the demo data have, and the random ones teach it to look past contrast.

Nothing is downloaded. The anatomies are the project's seeded phantoms (:mod:`hope.phantoms`), seeds from 10000
for training and from 20000 held out; ``--real-anatomy ../shared/data`` adds, for ``--donor-share`` of the images,
the label maps of the real scans of the *other* modality (:mod:`hope.synthesis.donors`: spine_mr learns from the
CTs' anatomy, spine_ct from the MRs'), so that ``scripts/bench_real.py`` never tests a task on a subject it
trained on. The network is the task's cpu
profile's (the one shipped weights serve). The weights go to its ``network.pretrained`` path (or ``--out``) as
``{"model": state_dict}``, with a JSON report beside them (same stem): ``held_out_dice`` is the Dice on the
phantoms' own renderings of held-out anatomies (CT, or the mean of MR T1 and T2; ``held_out_dice_by_rendering``
has each), ``held_out_dice_synthetic`` the Dice on synthetic images of them. Phantoms are not real scans. The
weights and a partial report (``"complete": false``) are written every ``--checkpoint-minutes``, atomically, so a
killed run leaves usable weights.

    .venv/bin/python scripts/pretrain_synthesis.py --task spine_ct --minutes 120
    .venv/bin/python scripts/pretrain_synthesis.py --task spine_mr --steps 5000 [--seed 0] [--threads 2]
        [--workers 0] [--anatomies 64] [--lr 0.002] [--rendered-share 0.5] [--background-share 0.25]
        [--precision bf16] [--out PATH]
        [--real-anatomy ../shared/data [--donor-share 0.5]] [--init PATH] [--json PATH]
    .venv/bin/python scripts/pretrain_synthesis.py --task spine_ct --tiny --out /tmp/w.pt   # a smoke test
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from monai.losses import DiceCELoss
from tqdm.auto import tqdm

from hope.config import REPO_ROOT, TaskDefinition, load_task
from hope.fileio import write_bytes, write_json
from hope.networks import build_network
from hope.synthesis.anatomy import anatomy_pool, on_task_grid, render_phantom, renderings
from hope.synthesis.dataset import mix_pool, synthetic_loader
from hope.synthesis.donors import donor_pool, donor_scans
from hope.synthesis.evaluation import held_out_dice
from hope.synthesis.pipeline import SynthesisSettings, synthesis_transforms

TRAIN_FIRST_SEED = 10_000  # phantom seeds of the training anatomies
HELD_OUT_FIRST_SEED = 20_000  # phantom seeds of the held-out anatomies
EVAL_SEED = 20_240  # the synthetic held-out images: fixed, independent of --seed
TINY_PATCH = (32, 32, 32)
LOSS = "DiceCE, Dice over the batch without background"
NOTE = ("phantoms only, no real scan: held-out Dice is on synthetic images and on the phantom generator's own "
        "renderings of held-out anatomies; neither says how the network does on real scans or real tumours")

NOTE_DONORS = ("phantoms and real label maps of the other modality: held-out Dice is on phantoms; "
               "scripts/bench_real.py measures the network on real scans of its own modality, none of them trained on")


@dataclass(frozen=True)
class Plan:
    """What one run does."""

    steps: int | None  # stop after this many steps (None: the time budget alone)
    minutes: float | None  # stop after this long (None: the step count alone)
    anatomies: int  # training phantoms in the pool
    held_out: int  # held-out phantoms (each rendered as every rendering of the modality)
    synthetic_per_anatomy: int  # synthetic held-out images per held-out phantom
    batch_size: int
    learning_rate: float
    precision: str  # "bf16": autocast to bfloat16 (about 3x faster on a CPU with AVX512-BF16), or "fp32"
    checkpoint_minutes: float
    workers: int
    seed: int


def main(argv: Sequence[str] | None = None) -> None:
    """Train, evaluate on held-out phantoms, and write the weights and the JSON report (``argv``: the command line
    arguments, default ``sys.argv[1:]``)."""
    args = _parse_args(argv)
    task = load_task(args.task).with_profile("cpu")  # the shipped weights are the cpu profile's network
    if args.tiny:
        if args.out is None:
            raise SystemExit("--tiny needs --out: a smoke run must not replace the shipped weights")
        task = replace(task, preprocessing=replace(task.preprocessing, patch_size=TINY_PATCH))
    out = args.out or (REPO_ROOT / task.network.pretrained if task.network.pretrained else None)
    if out is None:
        raise SystemExit(f"configs/tasks/{args.task}.yaml has no network.pretrained path; pass --out")
    plan = Plan(
        steps=2 if args.tiny else args.steps,
        minutes=None if args.tiny else args.minutes,
        anatomies=2 if args.tiny else args.anatomies,
        held_out=1 if args.tiny else args.held_out,
        synthetic_per_anatomy=1 if args.tiny else 4,
        batch_size=1 if args.tiny else args.batch_size or task.training.train_batch_size,
        learning_rate=args.lr,
        precision=args.precision,
        checkpoint_minutes=args.checkpoint_minutes,
        workers=args.workers,
        seed=args.seed,
    )
    if plan.steps is None and plan.minutes is None:
        raise SystemExit("give --minutes, --steps or both (the run stops at whichever comes first)")
    torch.set_num_threads(args.threads)
    torch.manual_seed(plan.seed)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    settings = replace(SynthesisSettings(rendered_prob=args.rendered_share, background_prob=args.background_share),
                       **dict(args.synthesis))
    base = {"task": task.name, "profile": task.profile, "profile_signature": task.active_profile.signature,
            "weights": _shown(out), "tiny": args.tiny, "seed": plan.seed, "device": str(device),
            "threads": args.threads, "workers": plan.workers, "batch_size": plan.batch_size,
            "learning_rate": plan.learning_rate, "precision": plan.precision, "loss": LOSS,
            "schedule": "cosine over the steps or minutes, whichever ends first",
            "patch_size": list(task.preprocessing.patch_size), "spacing": list(task.preprocessing.spacing),
            "normalisation": task.preprocessing.normalisation, "synthesis": settings.as_dict(),
            "training_phantom_seeds": [TRAIN_FIRST_SEED, TRAIN_FIRST_SEED + plan.anatomies - 1],
            "held_out_phantom_seeds": [HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + plan.held_out - 1],
            "training_data": f"images from phantom anatomies only: {settings.rendered_prob:.0%} the phantom's own "
                             "renderings, the rest random contrasts from their tissue maps", "note": NOTE}

    print(f"generating {plan.anatomies} training anatomies for {task.name} ...")
    pool = anatomy_pool(task, range(TRAIN_FIRST_SEED, TRAIN_FIRST_SEED + plan.anatomies))
    if args.real_anatomy is not None:
        donors = donor_pool(task, args.real_anatomy)
        pool = mix_pool(pool, donors, args.donor_share)
        base["donors"] = [{"scan": s.name, "modality": s.modality, "patient": s.patient, "source": s.source}
                          for s in donor_scans(task, args.real_anatomy)]
        base["donor_share"] = args.donor_share
        base["training_data"] = (f"{1 - args.donor_share:.0%} of the images from phantom anatomies, "
                                 f"{args.donor_share:.0%} from the label maps of {len(donors)} real scans of the "
                                 "other modality (hope.synthesis.donors: none is a scan of the task's modality, "
                                 "which bench_real tests on); of either, "
                                 f"{settings.rendered_prob:.0%} keep their own rendering or real image as contrast, "
                                 "the rest random contrasts from their tissue maps")
        base["note"] = NOTE_DONORS
    net = build_network(task).to(device)
    if args.init is not None:  # go on from earlier weights (a longer budget, or a GPU after a CPU run)
        state = torch.load(args.init, map_location=device, weights_only=True)
        net.load_state_dict(state.get("model", state))
        base["initialised_from"] = _provenance(args.init)

    def checkpoint(progress: dict[str, Any]) -> None:
        _save(net, out, {**base, **progress, "complete": False})

    progress = _train(net, task, pool, settings, plan, device, checkpoint)
    print("evaluating on held-out phantoms ...")
    evaluation = _evaluate(net, task, settings, plan, device)
    report = _save(net, out, {**base, **progress, **evaluation, "complete": True})
    if args.json:
        write_json(args.json, report)
    _print_dice(report)


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", required=True, help="a supervised task of configs/tasks, e.g. spine_ct, spine_mr")
    parser.add_argument("--minutes", type=float, help="wall-clock training budget")
    parser.add_argument("--steps", type=int, help="training steps (batches)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1, help="torch threads (default: all cores)")
    parser.add_argument("--workers", type=int, default=0,
                        help="processes synthesising batches ahead of training (default 0: in-line)")
    parser.add_argument("--anatomies", type=int, default=64, help="training phantoms in the pool (default 64)")
    parser.add_argument("--held-out", type=int, default=4, help="held-out phantoms (default 4)")
    parser.add_argument("--batch-size", type=int, help="default: the task profile's train_batch_size")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate of AdamW (default 0.002)")
    parser.add_argument("--rendered-share", type=_share, default=0.5,
                        help="share of images that keep the phantom's own CT/T1/T2 rendering as their contrast "
                        "(default 0.5; 0: random contrasts only, as SynthSeg)")
    parser.add_argument("--background-share", type=_share, default=0.25,
                        help="share of patches taken anywhere in an anatomy rather than around its structures, so "
                        "that the network sees what a whole scan holds far from the spine (default 0.25)")
    parser.add_argument("--precision", choices=("bf16", "fp32"), default="bf16",
                        help="bf16: autocast forward passes to bfloat16 (default; weights and optimiser stay fp32)")
    parser.add_argument("--checkpoint-minutes", type=float, default=5.0, help="write the weights this often")
    parser.add_argument("--out", type=Path, help="weights path (default: the task's network.pretrained)")
    parser.add_argument("--init", type=Path, help="start from these weights ({'model': state_dict}), e.g. the shipped "
                        "ones, to train on; the report records them")
    parser.add_argument("--real-anatomy", type=Path, metavar="DIR",
                        help="also train on the label maps of the real scans in DIR (shared/data) of the modality the "
                        "task does not annotate (hope.synthesis.donors); default: phantoms only")
    parser.add_argument("--donor-share", type=_share, default=0.5,
                        help="with --real-anatomy: the share of images made from real label maps (default 0.5)")
    parser.add_argument("--synthesis", type=_synthesis_setting, action="append", default=[], metavar="NAME=VALUE",
                        help="override one field of hope.synthesis.pipeline.SynthesisSettings, e.g. scale=0.3 or "
                        "blur_sigma=0.3,1.0; repeatable; the report records every setting")
    parser.add_argument("--json", type=Path, help="write the report here too")
    parser.add_argument("--tiny", action="store_true", help="two steps on a small patch, a smoke test (needs --out)")
    return parser.parse_args(argv)


def _synthesis_setting(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` of a :class:`SynthesisSettings` field, its value cast to the field's default's type (a range
    as two comma-separated numbers)."""
    name, _, value = text.partition("=")
    defaults = SynthesisSettings().as_dict()
    if name not in defaults or not value:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE with NAME one of {', '.join(defaults)}, got {text!r}")
    default = defaults[name]
    try:
        if isinstance(default, tuple):
            parsed = tuple(float(v) for v in value.split(","))
            if len(parsed) != len(default):
                raise ValueError(f"{name} takes {len(default)} comma-separated numbers")
            return name, parsed
        return name, type(default)(value)
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"--synthesis {text!r}: {error}") from error


def _share(text: str) -> float:
    """A command-line share in ``[0, 1]``."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"a share lies in [0, 1], got {value}")
    return value


def _train(
    net: torch.nn.Module,
    task: TaskDefinition,
    pool: list[dict[str, Any]],
    settings: SynthesisSettings,
    plan: Plan,
    device: torch.device,
    checkpoint: Callable[[dict[str, Any]], None],
) -> dict[str, Any]:
    """DiceCE (:data:`LOSS`) + AdamW with a cosine learning rate on the synthetic stream; what the run did, for the
    report."""
    optimizer = torch.optim.AdamW(net.parameters(), lr=plan.learning_rate, weight_decay=1e-5)
    # Dice over the batch and without background: small structures (discs, ~300 voxels) get a gradient from the
    # first steps; per-image Dice with background learnt only the canal in 250 steps on fixed phantom contrasts.
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    bf16 = plan.precision == "bf16"
    loader = synthetic_loader(pool, synthesis_transforms(task, settings), batch_size=plan.batch_size,
                              batches=plan.steps or 10**9, workers=plan.workers, seed=plan.seed)
    budget = plan.minutes * 60 if plan.minutes is not None else math.inf
    log_every = 10
    curve: list[list[float]] = []
    window: list[float] = []
    start = last_checkpoint = time.monotonic()
    steps = 0

    def progress() -> dict[str, Any]:
        seconds = time.monotonic() - start
        return {"steps": steps, "minutes": round(seconds / 60, 2),
                "seconds_per_step": round(seconds / steps, 3) if steps else None, "loss_curve": curve}

    net.train()
    # a generator: without --steps the loader is 10**9 batches long, which tqdm would take from len() as the total
    bar = tqdm((b for b in loader), total=plan.steps, desc=f"synthesis pretraining {task.name}", unit="step")
    for batch in bar:
        elapsed = time.monotonic() - start
        if elapsed >= budget:
            break
        fraction = max(steps / plan.steps if plan.steps else 0.0, elapsed / budget)
        for group in optimizer.param_groups:
            group["lr"] = plan.learning_rate * 0.5 * (1.0 + math.cos(math.pi * min(fraction, 1.0)))
        optimizer.zero_grad()
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits = net(batch["image"].to(device))
        loss = loss_fn(logits.float(), batch["label"].to(device))
        loss.backward()
        optimizer.step()
        steps += 1
        window.append(loss.item())
        bar.set_postfix(loss=f"{loss.item():.3f}")
        if len(window) == log_every or steps == plan.steps:
            curve.append([steps, round(sum(window) / len(window), 4)])
            window = []
        if time.monotonic() - last_checkpoint >= plan.checkpoint_minutes * 60:
            checkpoint(progress())
            last_checkpoint = time.monotonic()
    bar.close()
    if window:
        curve.append([steps, round(sum(window) / len(window), 4)])
    return progress()


def _evaluate(
    net: torch.nn.Module, task: TaskDefinition, settings: SynthesisSettings, plan: Plan, device: torch.device
) -> dict[str, Any]:
    """Held-out Dice on synthetic images and on each phantom rendering (``held_out_dice``: their mean)."""
    seeds = range(HELD_OUT_FIRST_SEED, HELD_OUT_FIRST_SEED + plan.held_out)
    synthetic = synthetic_loader(anatomy_pool(task, seeds), synthesis_transforms(task, settings), batch_size=1,
                                 batches=plan.held_out * plan.synthetic_per_anatomy, seed=EVAL_SEED)
    by_rendering = {
        rendering: held_out_dice(net, (on_task_grid(task, render_phantom(task, seed, rendering),
                                                    {"image": "image", "label": "label"}) for seed in seeds),
                                 task, device)
        for rendering in renderings(task)
    }
    names = [name for name in (*task.labels, "mean") if all(name in d for d in by_rendering.values())]
    return {
        "held_out_dice": {name: sum(d[name] for d in by_rendering.values()) / len(by_rendering) for name in names},
        "held_out_dice_by_rendering": by_rendering,
        "held_out_dice_synthetic": held_out_dice(net, ({k: b[k][0] for k in ("image", "label")} for b in synthetic),
                                                 task, device),
        "held_out_synthetic_images": plan.held_out * plan.synthetic_per_anatomy,
    }


def _save(net: torch.nn.Module, out: Path, report: dict[str, Any]) -> dict[str, Any]:
    """Write the weights and the report beside them (each atomically); the report, with the weights' sha256."""
    buffer = io.BytesIO()
    torch.save({"model": {k: v.detach().cpu() for k, v in net.state_dict().items()}}, buffer)
    data = buffer.getvalue()
    report = {**report, "sha256": hashlib.sha256(data).hexdigest(), "size_bytes": len(data)}
    write_bytes(out, data)
    write_json(out.with_suffix(".json"), report)
    return report


def _provenance(init: Path) -> dict[str, Any]:
    """What ``--init`` weights were: their path and sha256, and the report beside them when there is one (which
    holds its own ``initialised_from``), so a chain of runs stays on record in the last report."""
    found: dict[str, Any] = {"weights": _shown(init), "sha256": hashlib.sha256(init.read_bytes()).hexdigest()}
    report = init.with_suffix(".json")
    if report.exists():
        found["report"] = json.loads(report.read_text())
    return found


def _shown(path: Path) -> str:
    """``path`` relative to the repository when inside it."""
    resolved = path.resolve()
    return str(resolved.relative_to(REPO_ROOT)) if resolved.is_relative_to(REPO_ROOT) else str(resolved)


def _print_dice(report: dict[str, Any]) -> None:
    columns = {"synthetic": report["held_out_dice_synthetic"], **report["held_out_dice_by_rendering"]}
    print(f"held-out Dice after {report['steps']} steps ({report['minutes']} min); {report['note']}")
    print(f"{'label':<14}" + "".join(f"{name:>11}" for name in columns))
    for label in columns["synthetic"]:
        print(f"{label:<14}" + "".join(f"{c.get(label, float('nan')):>11.3f}" for c in columns.values()))


if __name__ == "__main__":
    main()
