"""Benchmark: from store to "suggestion ready", and what an annotator waits for when opening a study.

Starts its own Orthanc (with HOPE's plugin) and HOPE server on free ports in a temporary folder, stores
200-slice phantom CT series by STOW-RS, and measures:

* store -> suggestion ready: from the end of the STOW-RS upload until ``/hope/state`` shows a suggestion of the
  current model (stable age + plugin + fetch + convert + inference);
* open, precomputed: ``POST /infer/spine_ct`` on a series whose suggestion was precomputed (HOPE's flow);
* open, on demand: the same request on a series HOPE has never seen (the stock MONAI Label flow: fetch, convert
  and infer while the annotator waits), measured in the same run.

    .venv/bin/python scripts/bench_ingest.py [--series 3] [--slices 200] [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import requests
from dicomweb_client import DICOMwebClient
from tqdm import tqdm

from hope.config import load_task
from hope.dicom.series_writer import new_identity, volume_to_datasets
from hope.phantoms import PhantomSpec, generate_neck_ct
from hope.processes.hope_server import hope_server_process
from hope.processes.orthanc import OrthancSettings, orthanc_process
from hope.processes.process import free_port, wait_until


def _stow(client: DICOMwebClient, seed: int, spec: PhantomSpec, labels: dict[str, int]) -> str:
    phantom = generate_neck_ct(seed, labels, spec)
    identity = new_identity(f"BENCH-{seed}", study_description="HOPE ingest benchmark")
    client.store_instances(volume_to_datasets(phantom.image, phantom.spacing, identity))
    return identity.series_instance_uid


def _suggestion_ready(hope: str, uid: str) -> bool:
    series = requests.get(f"{hope}/hope/state", timeout=30).json()["series"]
    return bool(series.get(uid, {}).get("suggestion_model_version"))


def _open(hope: str, uid: str) -> float:
    """Seconds for the request OHIF and Slicer send when an annotator opens a series."""
    start = time.perf_counter()
    response = requests.post(f"{hope}/infer/spine_ct", params={"image": uid, "output": "image"}, timeout=900)
    elapsed = time.perf_counter() - start
    response.raise_for_status()
    return elapsed


def run(n_series: int, slices: int) -> dict[str, object]:
    """Run the benchmark and return its measurements."""
    labels = load_task("spine_ct").labels
    spec = PhantomSpec(shape=(slices, 128, 128), spacing=(0.9, 0.9, 1.0))
    with tempfile.TemporaryDirectory(prefix="hope-bench-") as tmp:
        hope_port = free_port()
        hope = f"http://127.0.0.1:{hope_port}"
        orthanc = OrthancSettings(
            data_dir=Path(tmp) / "orthanc", http_port=free_port(), dicom_port=free_port(), stable_age=1, hope_url=hope
        )
        orthanc_proc = orthanc_process(orthanc)
        server = hope_server_process(orthanc, hope_port, Path(tmp) / "hope")
        orthanc_proc.start()
        server.start(timeout=300)
        try:
            client = orthanc.dicomweb_client()
            ready_s, precomputed_s = [], []
            for seed in tqdm(range(n_series), desc="store -> suggestion ready", unit="series"):
                uid = _stow(client, 5000 + seed, spec, labels)
                stored_at = time.perf_counter()
                wait_until(lambda uid=uid: _suggestion_ready(hope, uid), 900, f"suggestion for {uid}", interval=0.05)
                ready_s.append(time.perf_counter() - stored_at)
                precomputed_s.append(_open(hope, uid))
            # The stock flow: a second server that receives no events, so it fetches, converts and infers only
            # when the series is opened. The first server stops so it does not compete for the CPU.
            server.stop()
            cold_port = free_port()
            server = hope_server_process(orthanc, cold_port, Path(tmp) / "hope-cold")
            server.start(timeout=300)
            on_demand_s = []
            for seed in tqdm(range(n_series), desc="open on demand (stock flow)", unit="series"):
                uid = _stow(client, 6000 + seed, spec, labels)
                on_demand_s.append(_open(f"http://127.0.0.1:{cold_port}", uid))
        finally:
            server.stop()
            orthanc_proc.stop()
    median_pre = statistics.median(precomputed_s)
    median_cold = statistics.median(on_demand_s)
    return {
        "series": n_series,
        "slices": slices,
        "store_to_suggestion_ready_s": ready_s,
        "open_precomputed_s": precomputed_s,
        "open_on_demand_s": on_demand_s,
        "median_store_to_suggestion_ready_s": statistics.median(ready_s),
        "median_open_precomputed_s": median_pre,
        "median_open_on_demand_s": median_cold,
        "speedup_open": median_cold / median_pre,
        "target_open_precomputed_s": 0.5,
        "target_met": median_pre < 0.5,
    }


def main() -> None:
    """Command-line entry point: print a table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=3, help="series per measurement (default 3)")
    parser.add_argument("--slices", type=int, default=200, help="slices per phantom series (default 200)")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this path")
    args = parser.parse_args()
    result = run(args.series, args.slices)
    rows = [
        ("store -> suggestion ready", result["median_store_to_suggestion_ready_s"], ""),
        ("open study, precomputed (HOPE)", result["median_open_precomputed_s"], "target < 0.5 s"),
        ("open study, on demand (stock flow)", result["median_open_on_demand_s"], "baseline"),
    ]
    print(f"\n{args.series} series of {args.slices} slices, medians")
    print(f"{'measurement':<38}{'seconds':>10}  note")
    for name, value, note in rows:
        print(f"{name:<38}{value:>10.3f}  {note}")
    print(f"{'on demand / precomputed':<38}{result['speedup_open']:>10.1f}x")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
