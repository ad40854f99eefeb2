"""Pretrain a task's network on synthetic phantoms, so a fresh install suggests something sensible.

Nothing is downloaded: the weights are generated here, from the project's own seeded phantom generator, and
written to the path the task YAML names under ``network.pretrained``. HOPE keeps them as the first model version;
training on real final labels fine-tunes from there.

    .venv/bin/python scripts/pretrain_phantoms.py [--task spine_ct] [--cases 24] [--epochs 30] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np
import SimpleITK as sitk
import torch
from monai.data import DataLoader, Dataset, decollate_batch
from monai.inferers import sliding_window_inference
from monai.losses import DiceCELoss
from monai.metrics import DiceMetric
from monai.transforms import AsDiscrete, Compose
from tqdm import tqdm

from hope.config import REPO_ROOT, load_task
from hope.networks import build_network
from hope.phantoms import generate_neck_ct
from hope.transforms import train_transforms, val_transforms


def _write_cases(folder: Path, seeds: range, labels: dict[str, int]) -> list[dict[str, str]]:
    items = []
    for seed in seeds:
        phantom = generate_neck_ct(seed, labels)
        pair = {}
        for key, array in (("image", phantom.image), ("label", phantom.label)):
            image = sitk.GetImageFromArray(array)
            image.SetSpacing(phantom.spacing)
            pair[key] = str(folder / f"{seed}_{key}.nii.gz")
            sitk.WriteImage(image, pair[key])
        items.append(pair)
    return items


def main() -> None:
    """Train, evaluate on held-out phantoms, and write the weights and a JSON report."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", default="spine_ct")
    parser.add_argument("--cases", type=int, default=24, help="training phantoms (default 24)")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--json", type=Path, help="write the report as JSON here too")
    args = parser.parse_args()
    torch.manual_seed(0)
    task = load_task(args.task)
    if not task.network.pretrained:
        raise SystemExit(f"configs/tasks/{args.task}.yaml has no network.pretrained path to write to")
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    net = build_network(task).to(device)
    optimizer = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-5)
    loss_fn = DiceCELoss(to_onehot_y=True, softmax=True)
    start = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        train = _write_cases(Path(tmp), range(10_000, 10_000 + args.cases), task.labels)
        held_out = _write_cases(Path(tmp), range(20_000, 20_004), task.labels)
        loader = DataLoader(Dataset(train, Compose(train_transforms(task))), batch_size=1, shuffle=True)
        for epoch in tqdm(range(args.epochs), desc=f"pretraining {task.name} on phantoms", unit="epoch"):
            net.train()
            for batch in loader:
                optimizer.zero_grad()
                loss = loss_fn(net(batch["image"].to(device)), batch["label"].to(device))
                loss.backward()
                optimizer.step()
            tqdm.write(f"epoch {epoch + 1}: loss {loss.item():.4f}")
        dice = _evaluate(net, held_out, task, device)
    out = REPO_ROOT / task.network.pretrained
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": {k: v.cpu() for k, v in net.state_dict().items()}}, out)
    report = {
        "task": task.name,
        "weights": str(task.network.pretrained),
        "training_phantom_seeds": [10_000, 10_000 + args.cases - 1],
        "epochs": args.epochs,
        "held_out_phantom_seeds": [20_000, 20_003],
        "held_out_dice": dice,
        "seconds": round(time.time() - start, 1),
        "device": str(device),
        "note": "synthetic phantoms only: these numbers say nothing about real scans or real tumours",
    }
    out.with_suffix(".json").write_text(json.dumps(report, indent=2))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    print(f"{'label':<14}{'held-out Dice':>14}")
    for name, value in dice.items():
        print(f"{name:<14}{value:>14.3f}")


def _evaluate(net: torch.nn.Module, cases: list[dict[str, str]], task, device: torch.device) -> dict[str, float]:
    net.eval()
    metric = DiceMetric(include_background=False, reduction="mean_batch")
    onehot = AsDiscrete(to_onehot=task.num_classes)
    argmax = AsDiscrete(argmax=True, to_onehot=task.num_classes)
    with torch.no_grad():
        for batch in DataLoader(Dataset(cases, Compose(val_transforms(task))), batch_size=1):
            logits = sliding_window_inference(batch["image"].to(device), task.preprocessing.patch_size, 2, net)
            preds = [argmax(p) for p in decollate_batch(logits)]
            labels = [onehot(lab) for lab in decollate_batch(batch["label"].to(device))]
            metric(preds, labels)
    values = metric.aggregate().cpu().numpy()
    per_label = {name: float(values[value - 1]) for name, value in task.labels.items()}
    return {**per_label, "mean": float(np.mean(values))}


if __name__ == "__main__":
    main()
