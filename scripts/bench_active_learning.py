"""Benchmark: a simulated annotation campaign, one per active-learning strategy, on neck-CT phantoms.

Each campaign starts from the same few labelled cases and the same initial model. Every round, ``annotators``
simulated annotators each ask the strategy for a series (the real strategy classes, with real leases and a real
score store, so a round's picks are what concurrent annotators would get), "annotate" it with the ground truth,
and the model is fine-tuned on all labels so far; Dice is measured on a fixed held-out set after each round.
Uncertainty, tumour likelihood and features are computed by :func:`hope.activelearning.scoring.score_volume`.

Data: phantoms from :mod:`hope.phantoms` (tumours in a minority of the pool, so tumours are rare), cropped around
the spine and with the labels merged to vertebra / spinal canal / tumour so that a small UNet learns something in
minutes. A few pool cases are near-duplicates (re-noised copies of other cases, as repeated scans of one patient
would be). Real images from ``../shared/data`` are not used: none has vertebra, canal and tumour labels.

    .venv/bin/python scripts/bench_active_learning.py --quick [--json PATH] [--plot PATH]
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from monai.losses import DiceCELoss

from hope.activelearning import (
    TTA,
    Diverse,
    Epistemic,
    LeaseBook,
    RandomStrategy,
    RareFirst,
    ScoreStore,
    ScoringSettings,
    score_volume,
)
from hope.activelearning.strategies import LeasedStrategy
from hope.activelearning.uncertainty import dice_per_label
from hope.config import NetworkSpec, load_task
from hope.networks import build_network
from hope.phantoms import PhantomSpec, generate_neck_ct

TASK = "bench"
LABELS = {"vertebra": 1, "spinal_canal": 2, "tumor": 3}
TUMOR = LABELS["tumor"]
STRATEGIES = ("random", "epistemic", "tta", "rare_first", "diverse")
SPEC = PhantomSpec(shape=(24, 64, 64), spacing=(2.0, 2.0, 4.0), tumor_radius_mm=(5.0, 10.0))
CROP = (slice(None), slice(20, 52), slice(16, 48))  # (z, y, x): 24 x 32 x 32 voxels around the spine
VOXEL_ML = 2.0 * 2.0 * 4.0 / 1000.0


@dataclass(frozen=True)
class BenchConfig:
    """Sizes of one benchmark run."""

    pool: int  # distinct unlabelled cases
    duplicates: int  # extra near-duplicates of pool cases
    test: int
    pool_tumour_probability: float
    test_tumour_probability: float
    initial: int  # labelled before the first round
    rounds: int
    annotators: int  # picks per round
    seeds: int
    init_steps: int
    round_steps: int
    batch: int
    learning_rate: float
    mc_samples: int


QUICK = BenchConfig(40, 8, 16, 0.2, 0.5, 3, 5, 3, 3, 150, 80, 4, 1e-2, 4)
FULL = BenchConfig(100, 20, 40, 0.2, 0.5, 3, 8, 4, 4, 300, 150, 4, 1e-2, 8)


@dataclass
class Case:
    """One phantom: windowed image ``(1, Z, Y, X)`` float32 and label ``(Z, Y, X)`` int64; ``twin`` of a duplicate."""

    uid: str
    image: torch.Tensor
    label: torch.Tensor
    tumor: bool
    twin: str | None = None


def make_case(seed: int, tumor_probability: float) -> Case:
    """A cropped phantom with labels merged to vertebra (C1-C7), spinal canal and tumour."""
    full_labels = load_task("spine_ct").labels
    phantom = generate_neck_ct(seed, full_labels, dataclasses.replace(SPEC, tumor_probability=tumor_probability))
    merged = np.zeros_like(phantom.label, dtype=np.int64)
    merged[(phantom.label >= full_labels["C1"]) & (phantom.label <= full_labels["C7"])] = LABELS["vertebra"]
    merged[phantom.label == full_labels["spinal_canal"]] = LABELS["spinal_canal"]
    merged[phantom.label == full_labels["tumor"]] = TUMOR
    image = np.clip((phantom.image.astype(np.float32) + 1000.0) / 2500.0, 0.0, 1.0)
    label = torch.from_numpy(merged[CROP].copy())
    return Case(f"case-{seed}", torch.from_numpy(image[CROP].copy())[None], label, bool((label == TUMOR).any()))


def duplicate_of(case: Case, rng: np.random.Generator, index: int) -> Case:
    """A near-duplicate: the same anatomy with fresh noise and a slight intensity shift."""
    noise = torch.from_numpy(rng.normal(0.0, 0.01, size=case.image.shape).astype(np.float32))
    image = (case.image * float(rng.uniform(0.97, 1.03)) + noise).clamp(0.0, 1.0)
    return Case(f"{case.uid}-dup{index}", image, case.label.clone(), case.tumor, twin=case.uid)


class SimulatedDatastore:
    """The datastore methods the strategies use, over in-memory series; ``labelled`` is the annotated set."""

    def __init__(self, uids: list[str], labelled: set[str]) -> None:
        self.uids = list(uids)
        self.labelled = set(labelled)
        self.flagged: dict[str, list[str]] = {}

    def get_unlabeled_images(self, label_tag: str | None = None, labels: Any = None) -> list[str]:
        """Series without a label."""
        return [uid for uid in self.uids if uid not in self.labelled]

    def get_labeled_images(self, label_tag: str | None = None, labels: Any = None) -> list[str]:
        """Series with a label."""
        return [uid for uid in self.uids if uid in self.labelled]


def build_model() -> torch.nn.Module:
    """A small 3D UNet with dropout (for MC dropout), built by HOPE's network builder."""
    task = dataclasses.replace(
        load_task("spine_ct"),
        labels=LABELS,
        network=NetworkSpec(
            "UNet",
            {
                "spatial_dims": 3,
                "channels": [8, 16, 32],
                "strides": [2, 2],
                "num_res_units": 0,
                "dropout": 0.1,
                "norm": "instance",
            },
        ),
    )
    return build_network(task)


def train(
    net: torch.nn.Module,
    cases: list[Case],
    steps: int,
    cfg: BenchConfig,
    rng: np.random.Generator,
    device: torch.device,
) -> None:
    """Fine-tune ``net`` for ``steps`` Adam steps (cosine-decayed rate) on random batches of ``cases``, with flips.

    The Dice term is computed over the whole batch per class, so the rare tumour class is not drowned out by cases
    without a tumour.
    """
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True, include_background=False, batch=True)
    opt = torch.optim.Adam(net.parameters(), lr=cfg.learning_rate)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    net.train()
    for _ in range(steps):
        batch = rng.choice(len(cases), size=min(cfg.batch, len(cases)), replace=False)
        x = torch.stack([cases[i].image for i in batch]).to(device)
        y = torch.stack([cases[i].label for i in batch])[:, None].to(device)
        for axis in (2, 3, 4):
            if rng.random() < 0.5:
                x, y = x.flip(axis), y.flip(axis)
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
        schedule.step()
    net.eval()


@torch.no_grad()
def evaluate(net: torch.nn.Module, test: list[Case], device: torch.device) -> dict[str, float]:
    """Mean foreground Dice per case (labels present in reference or prediction), and tumour Dice on tumour cases."""
    net.eval()
    means, tumor = [], []
    for case in test:
        pred = net(case.image[None].to(device)).argmax(dim=1)[0].cpu()
        per = dice_per_label(case.label, pred, LABELS.values())
        means.append(float(np.mean(list(per.values()))))
        if case.tumor:
            tumor.append(per.get(TUMOR, 0.0))
    return {"mean_dice": float(np.mean(means)), "tumour_dice": float(np.mean(tumor)) if tumor else float("nan")}


def score_pool(
    net: torch.nn.Module,
    ds: SimulatedDatastore,
    cases: dict[str, Case],
    store: ScoreStore,
    version: str,
    cfg: BenchConfig,
    device: torch.device,
) -> None:
    """Score every unlabelled case with ``net`` under ``version`` (what HOPE's background scoring does)."""
    settings = ScoringSettings(mc_samples=cfg.mc_samples)
    for uid in ds.get_unlabeled_images():
        store.put(
            score_volume(
                net,
                cases[uid].image[None].to(device),
                task=TASK,
                series_uid=uid,
                model_version=version,
                tumor_channel=TUMOR,
                voxel_volume_ml=VOXEL_ML,
                settings=settings,
            )
        )


@dataclass
class ServedVersion:
    """The simulated model registry: the version being served, bumped after each round's training."""

    version: str = "v0001"

    def __call__(self, task: str) -> str:
        return self.version


def make_strategy(
    name: str, leases: LeaseBook, scores: ScoreStore, version_of: ServedVersion, seed: int
) -> LeasedStrategy:
    """The strategy called ``name``, with the library's default settings."""
    tasks = [TASK]
    if name == "random":
        return RandomStrategy(leases, tasks, seed=seed)
    if name == "epistemic":
        return Epistemic(leases, scores, tasks, version_of, seed=seed)
    if name == "tta":
        return TTA(leases, scores, tasks, version_of, seed=seed)
    if name == "rare_first":
        return RareFirst(leases, scores, tasks, version_of, seed=seed)
    return Diverse(leases, scores, tasks, seed=seed)


def campaign(
    name: str,
    seed: int,
    cfg: BenchConfig,
    pool: list[Case],
    test: list[Case],
    initial: list[str],
    start: dict[str, torch.Tensor],
    start_metrics: dict[str, float],
    device: torch.device,
) -> dict[str, Any]:
    """One strategy's campaign; returns per-round metrics and what was picked."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed + 1)
    cases = {c.uid: c for c in pool}
    net = build_model().to(device)
    net.load_state_dict(start)
    ds = SimulatedDatastore([c.uid for c in pool], set(initial))
    served = ServedVersion()
    rounds = [{"labels": len(initial), **start_metrics, "tumour_cases_labelled": sum(cases[u].tumor for u in initial)}]
    picks_per_round, duplicate_pairs, redundant = [], 0, 0
    labelled_roots = {cases[u].twin or u for u in initial}
    began = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hope-al-bench-") as tmp:
        leases = LeaseBook(Path(tmp) / "leases.sqlite")
        scores = ScoreStore(Path(tmp) / "scores.sqlite")
        strategy = make_strategy(name, leases, scores, served, seed)
        for r in range(cfg.rounds):
            if name != "random":
                score_pool(net, ds, cases, scores, served.version, cfg, device)
            picks = []
            for a in range(cfg.annotators):
                got = strategy({"strategy": name, "client_id": f"annotator-{a}", "model": TASK}, ds)
                if got:
                    picks.append(got["id"])
            roots = [cases[u].twin or u for u in picks]
            duplicate_pairs += len(roots) - len(set(roots))
            redundant += sum(root in labelled_roots for root in roots)
            labelled_roots.update(roots)
            for uid in picks:  # the annotators save final labels: their leases end
                ds.labelled.add(uid)
                leases.release(uid)
            picks_per_round.append(picks)
            train(net, [cases[u] for u in sorted(ds.labelled)], cfg.round_steps, cfg, rng, device)
            served.version = f"v{r + 2:04d}"
            labelled = sorted(ds.labelled)
            rounds.append(
                {
                    "labels": len(labelled),
                    **evaluate(net, test, device),
                    "tumour_cases_labelled": sum(cases[u].tumor for u in labelled),
                }
            )
    return {
        "rounds": rounds,
        "picks": picks_per_round,
        "duplicate_pairs_in_a_round": duplicate_pairs,
        "picks_of_already_labelled_anatomy": redundant,
        "seconds": time.perf_counter() - began,
    }


def run(cfg: BenchConfig, device: torch.device) -> dict[str, Any]:
    """All strategies x all seeds; returns the raw campaigns keyed by strategy."""
    results: dict[str, list[dict[str, Any]]] = {name: [] for name in STRATEGIES}
    for seed in range(cfg.seeds):
        rng = np.random.default_rng(seed)
        base = 10_000 * (seed + 1)
        pool = [make_case(base + i, cfg.pool_tumour_probability) for i in range(cfg.pool)]
        pool += [
            duplicate_of(pool[int(i)], rng, k)
            for k, i in enumerate(rng.choice(cfg.pool, size=cfg.duplicates, replace=False))
        ]
        test = [make_case(base + 5_000 + i, cfg.test_tumour_probability) for i in range(cfg.test)]
        initial = sorted(str(u) for u in rng.choice([c.uid for c in pool[: cfg.pool]], cfg.initial, replace=False))
        torch.manual_seed(seed)
        net = build_model().to(device)
        by_uid = {c.uid: c for c in pool}
        train(net, [by_uid[u] for u in initial], cfg.init_steps, cfg, np.random.default_rng(seed), device)
        start_metrics = evaluate(net, test, device)
        start = copy.deepcopy(net.state_dict())
        for name in STRATEGIES:
            result = campaign(name, seed, cfg, pool, test, initial, start, start_metrics, device)
            result["seed"] = seed
            results[name].append(result)
            last = result["rounds"][-1]
            print(
                f"seed {seed} {name:>10}: mean Dice {last['mean_dice']:.3f} tumour Dice {last['tumour_dice']:.3f} "
                f"tumour cases {last['tumour_cases_labelled']} ({result['seconds']:.0f} s)",
                flush=True,
            )
    return results


def _mean_std(values: list[float]) -> tuple[float, float]:
    finite = [v for v in values if v == v]
    if not finite:
        return float("nan"), float("nan")
    return statistics.fmean(finite), statistics.pstdev(finite) if len(finite) > 1 else 0.0


def summarise(results: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Per strategy and label count: mean and std over seeds; area under the learning curve and its gain on random."""
    summary: dict[str, Any] = {}
    for name, runs in results.items():
        labels = [r["labels"] for r in runs[0]["rounds"]]
        curve = {}
        for key in ("mean_dice", "tumour_dice", "tumour_cases_labelled"):
            stats = [_mean_std([run["rounds"][i][key] for run in runs]) for i in range(len(labels))]
            curve[key] = {"mean": [s[0] for s in stats], "std": [s[1] for s in stats]}
        aulc = [statistics.fmean(rd["mean_dice"] for rd in run["rounds"][1:]) for run in runs]
        summary[name] = {
            "labels": labels,
            **curve,
            "aulc_per_seed": aulc,
            "duplicate_pairs_per_seed": [run["duplicate_pairs_in_a_round"] for run in runs],
            "redundant_picks_per_seed": [run["picks_of_already_labelled_anatomy"] for run in runs],
            "seconds_per_seed": [round(run["seconds"], 1) for run in runs],
        }
    random_aulc = summary["random"]["aulc_per_seed"]
    for name in summary:
        gains = [a - b for a, b in zip(summary[name]["aulc_per_seed"], random_aulc, strict=True)]
        summary[name]["aulc_gain_vs_random"] = _mean_std(gains)
    return summary


def notes(summary: dict[str, Any], cfg: BenchConfig) -> list[str]:
    """Plain statements of what the numbers do and do not show."""
    out = [
        "Phantoms (hope.phantoms), not patients: these numbers rank strategies on synthetic data only.",
        "Real images from ../shared/data were not used: none carries vertebra, spinal-canal and tumour labels.",
        f"The pool holds {cfg.duplicates} near-duplicates (re-noised copies) of its {cfg.pool} cases by design; "
        "'duplicate_pairs_per_seed' counts picks of one round that were copies of each other, "
        "'redundant_picks_per_seed' picks whose anatomy (original or copy) was already labelled.",
        f"{cfg.seeds} seeds only: differences smaller than the spread across seeds are noise.",
    ]
    for name, s in summary.items():
        if name == "random":
            continue
        gains = [a - b for a, b in zip(s["aulc_per_seed"], summary["random"]["aulc_per_seed"], strict=True)]
        mean_gain = statistics.fmean(gains)
        if all(g > 0 for g in gains) and mean_gain > 0.005:
            verdict = f"is ahead of random in all {len(gains)} seeds (mean-Dice curve area {mean_gain:+.3f})"
        elif all(g < 0 for g in gains) and mean_gain < -0.005:
            verdict = f"is behind random in all {len(gains)} seeds (mean-Dice curve area {mean_gain:+.3f})"
        else:
            per_seed = ", ".join(f"{g:+.3f}" for g in gains)
            verdict = f"does not beat random: mixed or tiny gains across seeds ({per_seed})"
        extra = s["tumour_cases_labelled"]["mean"][-1] - summary["random"]["tumour_cases_labelled"]["mean"][-1]
        out.append(f"{name} {verdict}; by the last round it had labelled {extra:+.1f} tumour cases vs random.")
    return out


def plot(summary: dict[str, Any], path: Path, title: str) -> None:
    """Dice vs number of labels, one line per strategy, mean +/- std over seeds: mean Dice, tumour Dice, and how
    many tumour cases were labelled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.2))
    panels = (
        ("mean_dice", "mean foreground Dice (held-out)"),
        ("tumour_dice", "tumour Dice (held-out tumour cases)"),
        ("tumour_cases_labelled", "tumour cases among the labelled"),
    )
    for ax, (key, label) in zip(axes, panels, strict=True):
        for name, s in summary.items():
            x = np.asarray(s["labels"])
            m, sd = np.asarray(s[key]["mean"]), np.asarray(s[key]["std"])
            ax.plot(x, m, marker="o", label=name)
            ax.fill_between(x, m - sd, m + sd, alpha=0.15)
        ax.set_xlabel("labelled series")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    axes[0].legend()
    fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


def table(summary: dict[str, Any]) -> str:
    """Mean (and tumour) Dice at each label count, area gain on random, tumour cases labelled, duplicate picks."""

    def cells(stats: dict[str, list[float]]) -> str:
        return " ".join(f"{m:.3f}±{sd:.3f}" for m, sd in zip(stats["mean"], stats["std"], strict=True))

    labels = next(iter(summary.values()))["labels"]
    head = (
        f"{'strategy':>10} | "
        + " ".join(f"{n:>11}" for n in labels)
        + " | area gain vs random | tumours | dup pairs | redundant"
    )
    lines = [head, "-" * len(head)]
    for name, s in summary.items():
        gain, spread = s["aulc_gain_vs_random"]
        tumors = s["tumour_cases_labelled"]["mean"][-1]
        dups = statistics.fmean(s["duplicate_pairs_per_seed"])
        redundant = statistics.fmean(s["redundant_picks_per_seed"])
        lines.append(
            f"{name:>10} | {cells(s['mean_dice'])} | {gain:+.3f} ± {spread:.3f}     | "
            f"{tumors:7.1f} | {dups:9.1f} | {redundant:9.1f}"
        )
        lines.append(f"{'(tumour)':>10} | {cells(s['tumour_dice'])} |")
    return "\n".join(lines)


def main() -> None:
    """Parse arguments, run, print the table, write JSON and plot."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="3 seeds, 5-8 min on 2 busy CPU cores")
    parser.add_argument("--json", type=Path, help="write results here")
    parser.add_argument("--plot", type=Path, help="write a PNG of Dice vs number of labels here")
    args = parser.parse_args()
    cfg = QUICK if args.quick else FULL
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.type == "cpu":
        torch.set_num_threads(1)  # measured: small 3D convolutions run ~10x faster on 1 thread than on 2 busy cores
    began = time.perf_counter()
    results = run(cfg, device)
    summary = summarise(results)
    wall = time.perf_counter() - began
    print(table(summary))
    print(f"wall time {wall:.0f} s on {device}")
    for line in notes(summary, cfg):
        print(" -", line)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        payload = {
            "mode": "quick" if args.quick else "full",
            "device": str(device),
            "wall_seconds": round(wall, 1),
            "config": dataclasses.asdict(cfg),
            "summary": summary,
            "notes": notes(summary, cfg),
            "campaigns": results,
        }
        args.json.write_text(json.dumps(payload, indent=1))
    if args.plot:
        mode = "quick" if args.quick else "full"
        plot(summary, args.plot, f"Active learning on phantoms ({mode}, {cfg.seeds} seeds, {device.type})")


if __name__ == "__main__":
    main()
