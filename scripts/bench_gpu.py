"""Benchmark: the annotation loop on the GPU (CUDA when available, else the CPU), HOPE against stock MONAI Label.

In one run and on the same synthetic neck CTs (``hope.phantoms``, made at up to 128² per slice and resampled to the
requested size), it measures for HOPE's ``spine_ct`` (the network profile in effect, see ``configs/tasks``) and for
stock MONAI Label's radiology ``segmentation`` model (its network, transforms, inferer and trainer, random init):

* inference on one CT (default 200 slices of 512²): cold (the first call of a new infer task: weights load, CUDA
  warms up), warm (median of the next calls), and, for HOPE, the answer when the suggestion was precomputed (HOPE's
  sync service computes it ahead; the answer is ``hope.sync.precomputed.precomputed_result``, the code path of
  ``POST /infer``); stock has no precomputation, so its user waits for the warm inference;
* training throughput: training crops per second during training epochs (data loading included, validation not);
* retrain-to-publish: from the training request to the new model being served, on ``--cases`` labelled cases;
* peak GPU memory (``torch.cuda.max_memory_allocated``; null on the CPU).

    .venv/bin/python scripts/bench_gpu.py [--tiny] [--profile auto|cpu|gpu] [--json PATH]

``--tiny`` (32 slices of 32² over 48 mm, 2 cases, 1 epoch, 32³ patches for HOPE and stock) is a smoke run of every
code path, about a minute on 2 CPU cores, so the benchmark cannot rot; its numbers compare nothing.
The targets (at most 1 s per 200-slice CT warm, at most 60 s retrain-to-publish for 20 cases, ahead of stock on
every row) are judged on a GPU only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
from monai.engines.workflow import Engine, Events

from hope.benchmarks.stock import StockSegmentation
from hope.benchmarks.volumes import make_cases
from hope.config import TaskDefinition, load_task
from hope.models.registry import ModelRegistry
from hope.sync.precomputed import precomputed_result
from hope.sync.suggestions import SuggestionCache
from hope.tasks.segmentation import SegmentationTaskConfig

TASK = "spine_ct"
FOV_MM = 154.0  # in-plane field of view of every volume (512 x 0.3 mm)
TINY = {"slices": 32, "size": 32, "fov_mm": 48.0, "cases": 2, "epochs": 1, "warm_runs": 1, "patch": (32, 32, 32)}
INFER_WARM_MAX_S = 1.0
RETRAIN_PUBLISH_MAX_S = 60.0
SUGGESTION_WAIT_S = 1800.0
# Rows of the table: (HOPE key, the stock key it is compared with, label, unit, whether lower is better). Stock has
# no precomputed suggestions: its user waits for the warm inference.
ROWS = (
    ("infer_cold_s", "stock_infer_cold_s", "inference, cold", "s", True),
    ("infer_warm_s", "stock_infer_warm_s", "inference, warm", "s", True),
    ("infer_precomputed_s", "stock_infer_warm_s", "inference, precomputed (stock: warm)", "s", True),
    ("train_samples_per_s", "stock_train_samples_per_s", "training throughput", "samples/s", False),
    ("retrain_publish_s", "stock_retrain_publish_s", "retrain to publish", "s", True),
    ("peak_gpu_mem_mb", "stock_peak_gpu_mem_mb", "peak GPU memory", "MB", True),
)


class _Cases:
    """The one datastore method a trainer calls: the labelled cases."""

    def __init__(self, cases: list[dict[str, str]]) -> None:
        self.cases = cases

    def datalist(self) -> list[dict[str, str]]:
        return [dict(c) for c in self.cases]


# ----------------------------------------------------------------------------------------------------- measuring
def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _timed(call: Callable[[], Any]) -> tuple[float, Any]:
    _sync()
    start = time.perf_counter()
    result = call()
    _sync()
    return time.perf_counter() - start, result


def _reset_peak() -> None:
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def _peak_mb() -> float | None:
    return torch.cuda.max_memory_allocated() / 2**20 if torch.cuda.is_available() else None


class Throughput:
    """Training crops per second, over the training part of each epoch (validation runs after it)."""

    def __init__(self) -> None:
        self.samples = 0
        self.seconds = 0.0
        self._epoch_start = 0.0
        self._last = 0.0

    def attach(self, engine: Engine) -> None:
        """Count on ``engine`` (an ignite trainer)."""
        engine.add_event_handler(Events.EPOCH_STARTED, self._start)
        engine.add_event_handler(Events.ITERATION_COMPLETED, self._iteration)
        engine.add_event_handler(Events.EPOCH_COMPLETED, self._end)

    def _start(self, _engine: Engine) -> None:
        self._epoch_start = self._last = time.perf_counter()

    def _iteration(self, engine: Engine) -> None:
        output = engine.state.output
        self.samples += len(output) if isinstance(output, list) else 1
        _sync()
        self._last = time.perf_counter()

    def _end(self, _engine: Engine) -> None:
        self.seconds += self._last - self._epoch_start

    @property
    def per_second(self) -> float:
        """Samples per second (0 before any iteration)."""
        return self.samples / self.seconds if self.seconds > 0 else 0.0


def _train(trainer: Any, request: dict[str, Any], cases: list[dict[str, str]]) -> tuple[float, float]:
    """Run ``trainer`` on ``cases``; return (seconds from request to return, training samples per second)."""
    meter = Throughput()
    finalize = trainer.finalize

    def finalize_and_count(context: Any) -> None:
        finalize(context)
        meter.attach(context.trainer)

    trainer.finalize = finalize_and_count
    seconds, _ = _timed(lambda: trainer(request, _Cases(cases)))
    return seconds, meter.per_second


def _infer_series(infer: Any, image: str, warm_runs: int) -> dict[str, Any]:
    """Cold and warm seconds of ``infer`` (a fresh infer task) on ``image``, and the warm stage latencies."""
    cold, _ = _timed(lambda: infer({"image": image}))
    warm, latencies = [], {}
    for _ in range(warm_runs):
        seconds, (label, result) = _timed(lambda: infer({"image": image}))
        warm.append(seconds)
        latencies = result.get("latencies", {})
        Path(label).unlink(missing_ok=True)
    return {"infer_cold_s": cold, "infer_warm_s": statistics.median(warm), "infer_warm_latencies": latencies}


def _precompute(cache: SuggestionCache, uid: str) -> None:
    """Have HOPE's sync cache compute the suggestion of ``uid`` in the background, and wait for it."""
    cache.request(TASK, uid)
    deadline = time.monotonic() + SUGGESTION_WAIT_S
    while cache.get(TASK, uid) is None:
        failure = cache.state().get(uid, {}).get("failures")
        if failure or time.monotonic() > deadline:
            raise RuntimeError(f"no precomputed suggestion for {uid}: {failure or 'timed out'}")
        time.sleep(0.05)


def measure_hope(task: TaskDefinition, image: str, cases: list[dict[str, str]], request: dict[str, Any],
                 warm_runs: int, folder: Path) -> dict[str, Any]:
    """HOPE's task config, infer task, sync cache and trainer, as the server builds them."""
    _reset_peak()
    config = SegmentationTaskConfig()
    config.init(TASK, str(folder / "models"), {}, None, definition=task)
    infer = config.infer()
    result = _infer_series(infer, image, warm_runs)
    registry: ModelRegistry = config.registry
    cache = SuggestionCache(folder / "suggestions", lambda _task, _uid: infer({"image": image})[0],
                            lambda _task: registry.served_version())
    _precompute(cache, "bench-series")
    seconds, ready = _timed(lambda: precomputed_result(cache, TASK, task.labels, {"image": "bench-series"}))
    if ready is None:
        raise RuntimeError(f"no precomputed suggestion: {cache.state()}")
    Path(ready["file"]).unlink()
    before = registry.served_version()
    retrain, throughput = _train(config.trainer(), {**request, "started_by": "bench_gpu"}, cases)
    if registry.served_version() == before:
        raise RuntimeError("HOPE's training run published no new model version")
    return {**result, "infer_precomputed_s": seconds, "retrain_publish_s": retrain,
            "train_samples_per_s": throughput, "peak_gpu_mem_mb": _peak_mb()}


def measure_stock(labels: dict[str, int], image: str, cases: list[dict[str, str]], request: dict[str, Any],
                  warm_runs: int, folder: Path, roi_size: tuple[int, int, int] | None) -> dict[str, Any]:
    """Stock MONAI Label's radiology ``segmentation`` on the same volumes and with the same training request."""
    _reset_peak()
    stock = StockSegmentation(folder / "stock-models", labels, roi_size)
    result = _infer_series(stock.infer(), image, warm_runs)
    published = stock.published.stat().st_mtime_ns
    retrain, throughput = _train(stock.trainer(), {**request, "tracking": "None"}, cases)
    if stock.published.stat().st_mtime_ns == published:
        raise RuntimeError("stock training published no model")
    return {**{f"stock_{k}": v for k, v in result.items()}, "stock_infer_precomputed_s": None,
            "stock_retrain_publish_s": retrain, "stock_train_samples_per_s": throughput,
            "stock_peak_gpu_mem_mb": _peak_mb()}


# ------------------------------------------------------------------------------------------------------ results
def _ahead(hope: Any, stock: Any, lower_is_better: bool) -> bool | None:
    if not isinstance(hope, int | float) or not isinstance(stock, int | float):
        return None
    return hope < stock if lower_is_better else hope > stock


def ratios(result: dict[str, Any]) -> dict[str, float | None]:
    """HOPE / stock per row, keyed by the HOPE key (None where a side was not measured)."""
    return {key: result[key] / result[stock] if _ahead(result[key], result[stock], True) is not None
            and result[stock] > 0 else None for key, stock, *_ in ROWS}


def targets(result: dict[str, Any]) -> dict[str, bool | None]:
    """The GPU targets, each passed or failed; ``None`` (not measured) off CUDA or below full size."""
    settings = result["settings"]
    measured = result["device"].startswith("cuda") and settings["slices"] >= 200 and settings["cases"] >= 20
    checks = {
        f"inference <= {INFER_WARM_MAX_S:g} s per 200-slice CT": result["infer_warm_s"] <= INFER_WARM_MAX_S,
        f"retrain to publish <= {RETRAIN_PUBLISH_MAX_S:g} s for 20 cases":
            result["retrain_publish_s"] <= RETRAIN_PUBLISH_MAX_S,
        "ahead of stock on every row": all(_ahead(result[key], result[stock], lower) is not False
                                           for key, stock, _label, _unit, lower in ROWS),
    }
    return {name: passed if measured else None for name, passed in checks.items()}


def run(tiny: bool, profile: str | None, slices: int, size: int, n_cases: int, epochs: int | None,
        warm_runs: int) -> dict[str, Any]:
    """Make the volumes, measure HOPE then stock, and return the results."""
    fov, roi = FOV_MM, None
    task = load_task(TASK)
    if profile is not None:
        task = task.with_profile(profile)
    if tiny:
        slices, size, fov, n_cases, epochs, warm_runs, roi = (TINY[k] for k in (
            "slices", "size", "fov_mm", "cases", "epochs", "warm_runs", "patch"))
        task = replace(task, preprocessing=replace(task.preprocessing, patch_size=roi))
    cuda = torch.cuda.is_available()
    epochs = epochs or task.training.max_epochs
    request = {"max_epochs": epochs, "val_split": task.training.val_split, "multi_gpu": False}
    with tempfile.TemporaryDirectory(prefix="hope-bench-gpu-") as tmp:
        folder = Path(tmp)
        (folder / "cases").mkdir()
        volumes = make_cases(list(range(8000, 8001 + n_cases)), slices, size, fov, task.labels, folder / "cases")
        image, cases = volumes[0]["image"], volumes[1:]
        hope = measure_hope(task, image, cases, request, warm_runs, folder / "hope")
        stock = measure_stock(task.labels, image, cases, request, warm_runs, folder / "stock", roi)
    result: dict[str, Any] = {
        "device": f"cuda ({torch.cuda.get_device_name(0)})" if cuda else "cpu",
        "profile": task.profile,
        "network": {"name": task.network.name, "args": task.network.args, "spacing": task.preprocessing.spacing,
                    "patch_size": task.preprocessing.patch_size, "amp": task.training.amp and cuda,
                    "dataset": task.training.dataset},
        "settings": {"tiny": tiny, "slices": slices, "size": size, "fov_mm": fov, "cases": n_cases, "epochs": epochs,
                     "warm_runs": warm_runs, "torch": torch.__version__, "cpu_threads": torch.get_num_threads()},
        **hope,
        **stock,
    }
    result["ratios"] = ratios(result)
    result["targets"] = targets(result)
    return result


def _fmt(value: Any) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def print_table(result: dict[str, Any]) -> None:
    """The comparison table, HOPE / stock ratios and the targets."""
    s = result["settings"]
    print(f"\n{s['slices']} slices of {s['size']}x{s['size']}, {s['cases']} labelled cases, {s['epochs']} epoch(s); "
          f"device {result['device']}, HOPE profile {result['profile']}")
    print(f"{'measurement':<40}{'unit':>10}{'HOPE':>10}{'stock':>10}{'HOPE/stock':>12}  ahead")
    for key, stock, label, unit, lower in ROWS:
        ahead = {True: "yes", False: "no", None: "-"}[_ahead(result[key], result[stock], lower)]
        print(f"{label:<40}{unit:>10}{_fmt(result[key]):>10}{_fmt(result[stock]):>10}"
              f"{_fmt(result['ratios'][key]):>12}  {ahead}")
    unmeasured = "not measured on CPU" if result["device"] == "cpu" else "not measured at these sizes"
    print("targets (on a GPU, 200 slices, 20 cases):")
    for name, passed in result["targets"].items():
        print(f"  [{ {True: 'PASS', False: 'FAIL', None: unmeasured}[passed] }] {name}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    """Command-line entry point: print the table, optionally write JSON; returns the results."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="32 slices of 32², 2 cases, 1 epoch (a smoke run)")
    parser.add_argument("--profile", choices=("cpu", "gpu"), help="HOPE's network profile (default: as configured)")
    parser.add_argument("--slices", type=int, default=200, help="slices per CT (default 200)")
    parser.add_argument("--size", type=int, default=512, help="rows and columns per slice (default 512)")
    parser.add_argument("--cases", type=int, default=20, help="labelled training cases (default 20)")
    parser.add_argument("--epochs", type=int, help="training epochs, HOPE and stock (default: the task's)")
    parser.add_argument("--warm-runs", type=int, default=3, help="warm inferences, median taken (default 3)")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this path")
    args = parser.parse_args(argv)
    result = run(args.tiny, args.profile, args.slices, args.size, args.cases, args.epochs, args.warm_runs)
    print_table(result)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=list))
    return result


if __name__ == "__main__":
    main()
