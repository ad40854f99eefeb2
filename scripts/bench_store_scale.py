"""Benchmark: HOPE and stock MONAI Label on a store the size of a hospital's (thousands of series).

For each store size, a fresh Orthanc (SQLite, in a temporary folder, free loopback ports) is filled with an
archive-like mix (:mod:`hope.benchmarks.store_fill`: studies of 3 tiny CT series, about 20% of image series with a
SEG) through Orthanc's REST ``POST /instances`` from several threads; the fill time is printed, not compared.
Orthanc is then restarted as deployed, **with HOPE's plugin** (its store events reach HOPE), and measured on it,
one after the other, are:

* **HOPE** (``apps/hope``, sign-in off on loopback, background scoring and automatic retraining off), with
  uncertainty, tumour and feature scores stored for every image series under the served model, so the scored
  strategies rank the whole pool;
* **stock MONAI Label** 0.8.5: its datastore (``DICOMWebDatastore``) and strategies (``random``, ``first``) in a
  minimal app (:data:`STOCK_APP`). The radiology sample app cannot start offline here: it imports ``torchvision``
  (left out of HOPE's environment, see DEVELOPERS.md) and downloads weights and dcmqi. The app's ``bin/`` holds
  stand-ins for dcmqi's tools, which MONAI Label would otherwise download at start (never run: nothing is saved).

Per system and store size: ``startup_s`` (launch until the first ``GET /datastore/?output=stats`` answers, i.e.
until the store is listed), ``ready_s`` (launch until HTTP answers), ``first_stats_s``; p50/p95 of
``GET /datastore/?output=stats`` and ``?output=all``; next-sample p95 per strategy (``POST /activelearning/<s>``,
a new client each call) and ``next_sample_p95_ms`` (the worst strategy); ``seg_visible_s``: a SEG for an unlabelled
series is stored directly in Orthanc, as an external tool would, and ``output=stats`` is polled until ``completed``
counts it (``None``: not within ``--visible-timeout``); ``rss_mb``: resident memory of the server's process tree
after all that. Targets at 10,000 series (HOPE): next sample p95 < 100 ms, start-up < 30 s, RSS < 1.5 GB, a new SEG
visible in < 5 s; the ratio column is stock / HOPE.

    .venv/bin/python scripts/bench_store_scale.py [--series 1000,10000] [--json PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import requests
import yaml
from pydicom.uid import generate_uid

from hope.activelearning.scores import ScoreStore, SeriesScores
from hope.benchmarks.load import percentile_ms
from hope.benchmarks.store_fill import PlannedSeries, StoreFiller, plan_store, upload
from hope.config import DEFAULT_CONFIG_DIR
from hope.dicom.series_writer import new_identity
from hope.processes.hope_server import hope_server_process, write_log_config
from hope.processes.orthanc import OrthancSettings, orthanc_process
from hope.processes.process import ManagedProcess, free_port

TASK = "spine_ct"
HOPE_STRATEGIES = ("random", "epistemic", "tta", "rare_first", "diverse")
STOCK_STRATEGIES = ("random", "first")
#: Stock MONAI Label with no model: its DICOMweb datastore and its strategies, nothing of HOPE.
STOCK_APP = '''from monailabel.interfaces.app import MONAILabelApp
from monailabel.tasks.activelearning.first import First
from monailabel.tasks.activelearning.random import Random


class StockApp(MONAILabelApp):
    def __init__(self, app_dir, studies, conf):
        super().__init__(app_dir=app_dir, studies=studies, conf=conf, name="stock", description="stock datastore")

    def init_strategies(self):
        return {"random": Random(), "first": First()}
'''
QUIET = {"activelearning": {"background_scoring": False}, "retrain": {"enabled": False}}
TARGETS = {"next_sample_p95_ms": 100.0, "startup_s": 30.0, "rss_mb": 1536.0, "seg_visible_s": 5.0}
FEATURES = 90  # the length of hope.activelearning.uncertainty.feature_vector for spine_ct


def timed(call: Callable[[], requests.Response]) -> float:
    """Seconds ``call`` took; raises on an HTTP error."""
    start = time.perf_counter()
    call().raise_for_status()
    return time.perf_counter() - start


def rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and its descendants, in MiB."""
    root = psutil.Process(pid)
    total = 0
    for proc in [root, *root.children(recursive=True)]:
        try:
            total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            continue
    return total / 2**20


def fill_store(orthanc: OrthancSettings, total: int, seed: int) -> dict[str, Any]:
    """Fill a new Orthanc (no plugin: no events for the archive itself) with ``total`` series; what was stored."""
    process = orthanc_process(orthanc)
    process.start(timeout=60)
    try:
        plan = plan_store(total, "SCALE", seed=seed)
        start = time.monotonic()
        instances = upload(orthanc.url, orthanc.auth, plan, StoreFiller(seed=seed))
        fill_s = time.monotonic() - start
    finally:
        process.stop()
    return {"series": plan.total, "image_series": len(plan.images), "seg_series": plan.segs,
            "studies": plan.studies, "instances": instances, "fill_s": round(fill_s, 1),
            "unlabelled": [p.identity.series_instance_uid for p in plan.images if not p.seg_uid]}


def store_external_seg(orthanc: OrthancSettings, series_uid: str, filler: StoreFiller) -> None:
    """Store a SEG of ``series_uid`` directly in Orthanc (its images are rewritten with the same UIDs first, so the
    SEG references instances that exist)."""
    answer = requests.post(f"{orthanc.url}/tools/find", auth=orthanc.auth, timeout=30, json={
        "Level": "Series", "Query": {"SeriesInstanceUID": series_uid}, "Expand": True})
    answer.raise_for_status()
    found = answer.json()[0]
    study = requests.get(f"{orthanc.url}/studies/{found['ParentStudy']}", auth=orthanc.auth, timeout=30).json()
    identity = new_identity(study["PatientMainDicomTags"]["PatientID"])
    identity = dataclasses.replace(identity, study_instance_uid=study["MainDicomTags"]["StudyInstanceUID"],
                                   series_instance_uid=series_uid)
    planned = PlannedSeries(identity, seg_uid=generate_uid())
    seg = filler.files(planned)[-1]  # the images differ in SOP UIDs from the stored ones: only the SEG is sent
    requests.post(f"{orthanc.url}/instances", data=seg, auth=orthanc.auth, timeout=30).raise_for_status()


def measure(url: str, process: ManagedProcess, launched: float, strategies: tuple[str, ...], repeats: int,
            visible: Callable[[], None], visible_timeout: float) -> dict[str, Any]:
    """Every figure of one running server (see the module docstring)."""
    stats_url = f"{url}/datastore/?output=stats"
    first = timed(lambda: requests.get(stats_url, timeout=600))
    out: dict[str, Any] = {"first_stats_s": round(first, 2), "startup_s": round(time.monotonic() - launched, 2)}
    stats = [timed(lambda: requests.get(stats_url, timeout=600)) for _ in range(repeats)]
    listing = [timed(lambda: requests.get(f"{url}/datastore/?output=all", timeout=600)) for _ in range(5)]
    out.update(stats_p50_ms=percentile_ms(stats, 50), stats_p95_ms=percentile_ms(stats, 95),
               listing_p50_ms=percentile_ms(listing, 50), listing_p95_ms=percentile_ms(listing, 95))
    per_strategy = {}
    for name in strategies:
        calls = [timed(lambda i=i, name=name: requests.post(f"{url}/activelearning/{name}", timeout=600,
                                                            json={"client_id": f"{name}-{i}"}))
                 for i in range(repeats)]
        per_strategy[name] = {"p50_ms": percentile_ms(calls, 50), "p95_ms": percentile_ms(calls, 95)}
    out["next_sample"] = per_strategy
    out["next_sample_p95_ms"] = max(s["p95_ms"] for s in per_strategy.values())
    before = requests.get(stats_url, timeout=600).json()["completed"]
    start = time.monotonic()
    visible()
    out["seg_visible_s"] = None
    while time.monotonic() - start < visible_timeout:
        if requests.get(stats_url, timeout=600).json()["completed"] > before:
            out["seg_visible_s"] = round(time.monotonic() - start, 2)
            break
        time.sleep(0.1)
    assert process.process is not None
    out["rss_mb"] = round(rss_mb(process.process.pid), 1)
    return out


def put_scores(data_dir: Path, url: str, image_uids: list[str], seed: int) -> None:
    """Scores of every image series under the served model version, as background scoring would leave them."""
    version = requests.get(f"{url}/hope/models/{TASK}/versions", timeout=30).json()["serving"]
    rng = np.random.default_rng(seed)
    store = ScoreStore(data_dir / "activelearning" / "scores.sqlite")
    for uid in image_uids:
        features = rng.normal(size=FEATURES)
        store.put(SeriesScores(TASK, uid, version, epistemic=float(rng.random()), tta=float(rng.random()),
                               tumour=float(rng.random()), features=list(features / np.linalg.norm(features))))


@contextmanager
def hope_server(orthanc: OrthancSettings, port: int, data: Path) -> Iterator[tuple[ManagedProcess, float]]:
    """HOPE, quiet, sign-in off, on ``port``; its process and the monotonic time it was launched."""
    configs = data / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, configs)
    settings = yaml.safe_load((configs / "server.yaml").read_text())
    for section, values in QUIET.items():
        settings.setdefault(section, {}).update(values)
    (configs / "server.yaml").write_text(yaml.safe_dump(settings))
    process = hope_server_process(orthanc, port, data, {"HOPE_CONFIG_DIR": str(configs)})
    launched = time.monotonic()
    process.start(timeout=600)
    try:
        yield process, launched
    finally:
        process.stop()


@contextmanager
def stock_server(orthanc: OrthancSettings, data: Path) -> Iterator[tuple[ManagedProcess, float, str]]:
    """Stock MONAI Label (:data:`STOCK_APP`, with dcmqi stand-ins) on a free port; process, launch, URL."""
    app = data / "stock-app"
    (app / "bin").mkdir(parents=True)
    (app / "main.py").write_text(STOCK_APP)
    for tool in ("itkimage2segimage", "itkimage2segimage.exe"):
        (app / "bin" / tool).write_text("#!/bin/sh\nexit 1\n")
        (app / "bin" / tool).chmod(0o755)
    port = free_port()
    process = ManagedProcess(
        name="stock MONAI Label",
        command=[sys.executable, "-m", "monailabel.main", "start_server", "--app", str(app), "--studies",
                 orthanc.dicomweb_url, "--host", "127.0.0.1", "--port", str(port),
                 "--log_config", str(write_log_config(data))],
        log_path=data / "stock.log", ready_url=f"http://127.0.0.1:{port}/info/",
        env={"MONAI_LABEL_DICOMWEB_USERNAME": orthanc.credentials.username,
             "MONAI_LABEL_DICOMWEB_PASSWORD": orthanc.credentials.password,
             "MONAI_LABEL_DICOMWEB_CACHE_PATH": str(data / "cache"), "PYTHONUNBUFFERED": "1"},
        cwd=data,
    )
    launched = time.monotonic()
    process.start(timeout=600)
    try:
        yield process, launched, f"http://127.0.0.1:{port}"
    finally:
        process.stop()


def run_size(total: int, tmp: Path, args: argparse.Namespace) -> dict[str, Any]:
    """Fill a store of ``total`` series and measure HOPE then stock MONAI Label on it."""
    hope_port = free_port()
    orthanc = OrthancSettings(data_dir=tmp / "orthanc", http_port=free_port(), dicom_port=free_port())
    fill = fill_store(orthanc, total, args.seed)
    print(f"[{total}] filled: {fill['series']} series ({fill['seg_series']} SEG, {fill['studies']} studies, "
          f"{fill['instances']} instances) in {fill['fill_s']} s", flush=True)
    unlabelled = fill.pop("unlabelled")
    deployed = OrthancSettings(data_dir=orthanc.data_dir, http_port=orthanc.http_port, dicom_port=orthanc.dicom_port,
                               hope_url=f"http://127.0.0.1:{hope_port}")
    filler = StoreFiller(seed=args.seed)
    images = [*unlabelled]  # scores for every image series: the unlabelled are what strategies rank
    orthanc_proc = orthanc_process(deployed)
    orthanc_proc.start(timeout=120)
    results: dict[str, Any] = {"store": fill}
    try:
        with hope_server(deployed, hope_port, tmp / "hope") as (process, launched):
            put_scores(tmp / "hope", f"http://127.0.0.1:{hope_port}", images, args.seed)
            results["hope"] = measure(f"http://127.0.0.1:{hope_port}", process, launched, HOPE_STRATEGIES,
                                      args.repeats, lambda: store_external_seg(deployed, unlabelled[-1], filler),
                                      args.visible_timeout)
        print(f"[{total}] hope: {results['hope']}", flush=True)
        with stock_server(deployed, tmp / "stock") as (process, launched, url):
            results["stock"] = measure(url, process, launched, STOCK_STRATEGIES, args.repeats,
                                       lambda: store_external_seg(deployed, unlabelled[-2], filler),
                                       args.visible_timeout)
        print(f"[{total}] stock: {results['stock']}", flush=True)
    finally:
        orthanc_proc.stop()
    return results


ROWS = (("startup_s", "start-up (s)"), ("first_stats_s", "first stats (s)"), ("stats_p95_ms", "stats p95 (ms)"),
        ("listing_p95_ms", "listing p95 (ms)"), ("next_sample_p95_ms", "next sample p95 (ms)"),
        ("seg_visible_s", "new SEG visible (s)"), ("rss_mb", "RSS (MB)"))


def _fmt(value: Any) -> str:
    if value is None:
        return "never"
    return f"{value:.0f}" if value >= 100 else f"{value:.2f}" if value < 10 else f"{value:.1f}"


def table(results: dict[str, dict[str, Any]]) -> str:
    """The printed table: per store size, HOPE, stock and stock / HOPE per figure, then per strategy."""
    lines = []
    for size, res in results.items():
        hope, stock = res["hope"], res.get("stock", {})
        lines += [f"\n{size} series ({res['store']['seg_series']} SEG, {res['store']['studies']} studies; "
                  f"fill {res['store']['fill_s']} s, not counted)",
                  f"{'':26}{'HOPE':>10}{'stock':>10}{'stock/HOPE':>12}{'target':>10}"]
        rows = [*ROWS, *((f"ns:{name}", f"  next: {name} p95 (ms)") for name in
                         dict.fromkeys([*hope.get("next_sample", {}), *stock.get("next_sample", {})]))]
        for key, label in rows:
            def get(r: dict[str, Any], key: str = key) -> Any:
                return r.get("next_sample", {}).get(key[3:], {}).get("p95_ms") if key.startswith("ns:") else r.get(key)
            h, s = get(hope), get(stock)
            ratio = f"{s / h:.1f}x" if h and s else "-"
            target = f"< {_fmt(TARGETS[key])}" if key in TARGETS else ""
            lines.append(f"{label:26}{_fmt(h) if key in hope or key.startswith('ns:') and h else '-':>10}"
                         f"{_fmt(s) if s is not None else ('never' if key in stock else '-'):>10}{ratio:>12}"
                         f"{target:>10}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", default="1000,10000", help="store sizes, comma-separated (default 1000,10000)")
    parser.add_argument("--repeats", type=int, default=20, help="calls per measured route (default 20)")
    parser.add_argument("--visible-timeout", type=float, default=60.0, help="seconds to wait for a new SEG")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    results: dict[str, Any] = {}
    for total in (int(s) for s in args.series.split(",")):
        with tempfile.TemporaryDirectory(prefix=f"hope-scale-{total}-") as tmp:
            results[str(total)] = run_size(total, Path(tmp), args)
    print(table(results))
    if args.json:
        settings = {"repeats": args.repeats, "visible_timeout_s": args.visible_timeout, "seed": args.seed,
                    "orthanc_plugin": True, "cpus": os.cpu_count(), "machine": platform.machine(),
                    "python": platform.python_version()}
        by_system = {system: {size: res[system] for size, res in results.items() if system in res}
                     for system in ("hope", "stock")}
        args.json.write_text(json.dumps({"settings": settings, **by_system,
                                         "stores": {size: res["store"] for size, res in results.items()}},
                                        indent=2))


if __name__ == "__main__":
    main()
