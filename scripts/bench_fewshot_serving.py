"""Benchmark: what an annotator waits for from the few-shot tasks, against the supervised model on the same series.

Starts its own Orthanc and HOPE server on free ports in a temporary folder, stores the rare-tumour demo cases
(k labelled and recorded cases per type, through HOPE, as ``configs/server.yaml`` ``demo.fewshot`` lists them) and
query stacks of ``--slices`` slices, then times, per query series (median over ``--repeats``):

* ``fewshot_tumor`` against one named type, and against every type;
* ``fewshot_tumor`` with 3 adaptation steps;
* ``tumor_grade`` with the lesion from ``fewshot_tumor``, and with an uploaded lesion;
* the baseline: ``spine_ct`` (supervised 3D SegResNet) on the same series, measured in the same run.

The first few-shot request after new support cases also cuts their slices (cached per SEG afterwards); it is
reported on its own as "first request".

    .venv/bin/python scripts/bench_fewshot_serving.py [--queries 3] [--slices 40] [--repeats 3] [--json PATH]
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import requests
from tqdm import tqdm

from hope.config import load_server_settings, load_task
from hope.fewshot.config import load_fewshot_task
from hope.fewshot_demo import StoredStack, lesion_nifti, load_fewshot_demo, store_stack
from hope.processes.hope_server import hope_server_process
from hope.processes.orthanc import OrthancSettings, orthanc_process
from hope.processes.process import free_port


def _infer(hope: str, model: str, uid: str, params: dict[str, Any], label: bytes | None = None) -> float:
    """Seconds for one ``POST /infer/<model>`` (JSON answer); fails on any error status."""
    files = {"label": ("lesion.nii.gz", io.BytesIO(label), "application/octet-stream")} if label else None
    start = time.perf_counter()
    response = requests.post(f"{hope}/infer/{model}", params={"image": uid, "output": "json"},
                             data={"params": json.dumps(params)}, files=files, timeout=900)
    elapsed = time.perf_counter() - start
    if not response.ok:
        raise RuntimeError(f"{model} answered {response.status_code}: {response.text}")
    return elapsed


def run(n_queries: int, slices: int, repeats: int) -> dict[str, Any]:
    """Run the benchmark and return its measurements (seconds)."""
    settings = load_server_settings()
    types = list(settings.demo.fewshot)
    spec = load_fewshot_task("fewshot_tumor").slices
    tumor = load_task(settings.tasks[0]).labels["tumor"]
    with tempfile.TemporaryDirectory(prefix="hope-bench-") as tmp:
        hope_port = free_port()
        hope = f"http://127.0.0.1:{hope_port}"
        orthanc = OrthancSettings(data_dir=Path(tmp) / "orthanc", http_port=free_port(), dicom_port=free_port())
        orthanc_proc = orthanc_process(orthanc)
        server = hope_server_process(orthanc, hope_port, Path(tmp) / "hope")
        orthanc_proc.start()
        server.start(timeout=300)
        try:
            demo = load_fewshot_demo(orthanc.url, hope, types, tumor, spec, first_seed=7000, auth=orthanc.auth)
            named = types[0].tumor_type
            queries = [store_stack(orthanc.url, types[0].phantom, 8000 + i, spec, slices, auth=orthanc.auth)
                       for i in range(n_queries)]
            first = _infer(hope, "fewshot_tumor", queries[0].series_uid, {"tumor_type": named})
            cases: dict[str, Callable[[StoredStack], float]] = {
                "spine_ct (supervised, baseline)": lambda q: _infer(hope, "spine_ct", q.series_uid, {}),
                "fewshot_tumor, named type": lambda q: _infer(hope, "fewshot_tumor", q.series_uid,
                                                              {"tumor_type": named}),
                "fewshot_tumor, every type": lambda q: _infer(hope, "fewshot_tumor", q.series_uid, {}),
                "fewshot_tumor, 3 adaptation steps": lambda q: _infer(hope, "fewshot_tumor", q.series_uid,
                                                                      {"tumor_type": named, "adapt_steps": 3}),
                "tumor_grade, lesion from fewshot_tumor": lambda q: _infer(hope, "tumor_grade", q.series_uid,
                                                                           {"tumor_type": named}),
                "tumor_grade, uploaded lesion": lambda q: _infer(hope, "tumor_grade", q.series_uid, {},
                                                                 lesion_nifti(q, tumor)),
            }
            timings: dict[str, list[float]] = {name: [] for name in cases}
            bar = tqdm(total=len(cases) * len(queries) * repeats, desc="timing requests", unit="request")
            for query in queries:
                cases["spine_ct (supervised, baseline)"](query)  # warm: the series is fetched and converted once
                for name, call in cases.items():
                    for _ in range(repeats):
                        timings[name].append(call(query))
                        bar.update()
            bar.close()
        finally:
            server.stop()
            orthanc_proc.stop()
    medians = {name: statistics.median(values) for name, values in timings.items()}
    baseline = medians["spine_ct (supervised, baseline)"]
    return {
        "queries": n_queries,
        "slices": slices,
        "repeats": repeats,
        "support_cases": {t: len(demo[t][0]) for t in demo},
        "first_request_s": first,
        "median_s": medians,
        "ratio_to_baseline": {name: value / baseline for name, value in medians.items()},
        "all_s": timings,
    }


def main() -> None:
    """Command-line entry point: print a table, optionally write JSON."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--queries", type=int, default=3, help="query series (default 3)")
    parser.add_argument("--slices", type=int, default=40, help="slices per query series (default 40)")
    parser.add_argument("--repeats", type=int, default=3, help="requests per query and measurement (default 3)")
    parser.add_argument("--json", type=Path, help="write the results as JSON to this path")
    args = parser.parse_args()
    result = run(args.queries, args.slices, args.repeats)
    print(f"\n{args.queries} query series of {args.slices} slices (64 x 64 at 1 mm), support cases per type "
          f"{result['support_cases']}; medians")
    print(f"{'request':<42}{'seconds':>10}{'vs spine_ct':>14}")
    for name, value in result["median_s"].items():
        print(f"{name:<42}{value:>10.3f}{result['ratio_to_baseline'][name]:>13.2f}x")
    print(f"{'first few-shot request (cuts support slices)':<42}{result['first_request_s']:>10.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
