"""The pure parts of the team load benchmark (``scripts/bench_team.py``, :mod:`hope.benchmarks.load`): call
outcomes, per-route statistics, the label audit and the results dict, on synthetic calls; no server runs."""

from __future__ import annotations

import importlib.util
import tempfile
import threading
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import SimpleITK as sitk

from hope.benchmarks.load import NO_ANSWER, Call, CallLog, label_audit, percentile_ms, route_stats
from hope.config import REPO_ROOT


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """``scripts/bench_team.py`` as a module."""
    spec = importlib.util.spec_from_file_location("bench_team", REPO_ROOT / "scripts" / "bench_team.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize(("status", "retry_after", "outcome"), [
    (200, False, "ok"),
    (304, False, "ok"),
    (503, True, "refused_503"),
    (503, False, "errors_5xx"),
    (500, True, "errors_5xx"),
    (429, True, "errors_4xx"),
    (422, False, "errors_4xx"),
    (NO_ANSWER, False, "no_answer"),
])
def test_call_outcome(status: int, retry_after: bool, outcome: str) -> None:
    assert Call("POST /infer/spine_ct", status, 0.1, retry_after).outcome == outcome


def test_percentiles_in_milliseconds() -> None:
    seconds = [i / 1000 for i in range(1, 101)]  # 1..100 ms
    assert percentile_ms(seconds, 50) == pytest.approx(50.5)
    assert percentile_ms(seconds, 95) == pytest.approx(95.05)
    assert percentile_ms([], 95) is None


def test_route_stats_count_every_outcome_and_time_only_ok_answers() -> None:
    calls = [Call("GET /info/", 200, s / 1000) for s in range(1, 21)]  # 1..20 ms
    calls += [
        Call("GET /info/", 500, 9.0),  # an error is counted, never timed
        Call("POST /infer/spine_ct", 503, 0.001, retry_after=True),
        Call("POST /infer/spine_ct", 200, 2.0),
        Call("POST /infer/spine_ct", 200, 4.0),
        Call("POST /infer/spine_ct", 422, 0.01),
        Call("POST /infer/spine_ct", NO_ANSWER, 900.0),
    ]
    stats = route_stats(calls)
    assert list(stats) == ["GET /info/", "POST /infer/spine_ct"]
    info, infer = stats["GET /info/"], stats["POST /infer/spine_ct"]
    assert (info["requests"], info["ok"], info["errors_5xx"], info["errors_4xx"]) == (21, 20, 1, 0)
    assert info["p50_ms"] == pytest.approx(10.5) and info["p95_ms"] == pytest.approx(19.05)
    assert info["max_ms"] == pytest.approx(20.0)
    assert {k: infer[k] for k in ("requests", "ok", "refused_503", "errors_4xx", "errors_5xx", "no_answer")} == {
        "requests": 5, "ok": 2, "refused_503": 1, "errors_4xx": 1, "errors_5xx": 0, "no_answer": 1}
    assert infer["p50_ms"] == pytest.approx(3000.0) and infer["max_ms"] == pytest.approx(4000.0)


def test_a_route_without_ok_answers_has_no_latency() -> None:
    stats = route_stats([Call("PUT /datastore/label", 500, 1.0)])["PUT /datastore/label"]
    assert stats["p50_ms"] is None and stats["p95_ms"] is None and stats["max_ms"] is None


def test_label_audit_finds_lost_extra_and_unexpected_segs() -> None:
    audit = label_audit(saved=["a", "b", "c", "a"], seg_references=["a", "a", "b", "z"])
    assert audit == {"labels_saved": 3, "saved_again": 1, "labels_found": 2, "labels_lost": 1, "lost_series": ["c"],
                     "extra_segs": 1, "unexpected_segs": 1}
    assert label_audit([], [])["labels_lost"] == 0


def test_call_log_keeps_every_call_of_concurrent_threads() -> None:
    log = CallLog()
    threads = [threading.Thread(target=lambda: [log.add(Call("GET /info/", 200, 0.01)) for _ in range(500)])
               for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(log.calls()) == 4000


def _calls(bench: ModuleType, info_loaded_ms: float, extra: list[Call] | None = None) -> list[Call]:
    idle = [Call(bench.INFO_IDLE, 200, 0.010) for _ in range(20)]
    loaded = [Call(bench.INFO, 200, info_loaded_ms / 1000) for _ in range(20)]
    return idle + loaded + (extra or [])


def test_summary_has_the_reported_keys_and_passes_the_targets(bench: ModuleType) -> None:
    calls = _calls(bench, 50.0, [Call(bench.INFER, 503, 0.001, True), Call(bench.INFER, 200, 3.0)])
    settings = {"annotators": 8, "rounds": 2, "phantoms": 16, "phantom_shape": [40, 64, 64]}
    result = bench.summarize(calls, ["a", "b"], ["a", "b"], settings, 12.5, [])
    assert result["info_p95_ms"] == pytest.approx(50.0) and result["info_idle_p95_ms"] == pytest.approx(10.0)
    assert result["info_ratio"] == pytest.approx(5.0)
    assert (result["labels_saved"], result["labels_found"], result["labels_lost"]) == (2, 2, 0)
    assert (result["errors_5xx"], result["errors_4xx"], result["refused_503"]) == (0, 0, 1)
    assert all(result["targets"].values())
    assert result["settings"] == settings and result["duration_s"] == 12.5
    assert result["machine"]["cpu_count"] >= 1
    assert set(result["routes"]) == {bench.INFO_IDLE, bench.INFO, bench.INFER}


def test_summary_fails_each_missed_target(bench: ModuleType) -> None:
    result = bench.summarize(_calls(bench, 250.0, [Call(bench.SAVE, 500, 1.0)]), ["a", "b"], ["a"], {}, 1.0, [])
    assert result["labels_lost"] == 1 and result["errors_5xx"] == 1
    assert not any(result["targets"].values())


def test_summary_without_loaded_info_calls_misses_the_latency_target(bench: ModuleType) -> None:
    result = bench.summarize([Call(bench.INFO_IDLE, 200, 0.01)], [], [], {}, 1.0, ["annotator1: boom"])
    assert result["info_p95_ms"] is None and result["info_ratio"] is None
    assert not result["targets"][next(iter(result["targets"]))]
    assert result["client_errors"] == ["annotator1: boom"]


def test_print_table_shows_routes_and_targets(bench: ModuleType, capsys: pytest.CaptureFixture[str]) -> None:
    settings = {"annotators": 8, "rounds": 2, "phantoms": 16, "phantom_shape": [40, 64, 64]}
    bench.print_table(bench.summarize(_calls(bench, 250.0), ["a"], ["a"], settings, 60.0, []))
    out = capsys.readouterr().out
    assert "GET /info/ (idle)" in out and "= 25.0x" in out
    assert "[FAIL] GET /info/ p95 < 200 ms" in out and "[PASS] zero labels lost" in out


def test_label_on_grid_takes_the_inferred_geometry(bench: ModuleType) -> None:
    reference = sitk.GetImageFromArray(np.zeros((4, 5, 6), dtype=np.uint8))
    reference.SetSpacing((0.7, 0.8, 2.5))
    reference.SetOrigin((10.0, -20.0, 30.0))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "inferred.nii.gz"
        sitk.WriteImage(reference, str(path))
        label = np.arange(120, dtype=np.uint8).reshape(4, 5, 6) % 10
        out = Path(tmp) / "label.nii.gz"
        out.write_bytes(bench.label_on_grid(label, path.read_bytes()))
        result = sitk.ReadImage(str(out))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(result), label)
    np.testing.assert_allclose(result.GetSpacing(), (0.7, 0.8, 2.5), atol=1e-5)
    np.testing.assert_allclose(result.GetOrigin(), (10.0, -20.0, 30.0), atol=1e-5)
