"""``scripts/bench_gpu.py --tiny`` end to end on whatever device there is, and the gpu profile's AMP forward pass."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pytest
import torch

from hope.config import REPO_ROOT, load_task
from hope.networks import build_network


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    """``scripts/bench_gpu.py`` as a module."""
    spec = importlib.util.spec_from_file_location("bench_gpu", REPO_ROOT / "scripts" / "bench_gpu.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tiny_run_reports_every_measurement(bench: ModuleType, tmp_path: Path,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "bench.json"
    bench.main(["--tiny", "--json", str(out)])
    result = json.loads(out.read_text())
    for key in ("infer_cold_s", "infer_warm_s", "infer_precomputed_s", "train_samples_per_s", "retrain_publish_s"):
        assert result[key] > 0, key
    for key in ("stock_infer_cold_s", "stock_infer_warm_s", "stock_train_samples_per_s", "stock_retrain_publish_s"):
        assert result[key] > 0, key
    assert result["profile"] in {"cpu", "gpu"} and result["device"].startswith(("cpu", "cuda"))
    assert set(result["ratios"]) >= {"infer_warm_s", "retrain_publish_s"}
    assert result["ratios"]["infer_warm_s"] == pytest.approx(result["infer_warm_s"] / result["stock_infer_warm_s"])
    if not torch.cuda.is_available():
        assert result["peak_gpu_mem_mb"] is None and result["stock_peak_gpu_mem_mb"] is None
    assert all(v is None for v in result["targets"].values())  # tiny sizes are never judged
    table = capsys.readouterr().out
    assert "HOPE/stock" in table and "retrain to publish" in table and "not measured" in table


@pytest.mark.gpu
def test_gpu_profile_forward_pass_with_amp() -> None:
    task = load_task("spine_ct").with_profile("gpu")
    net = build_network(task).cuda().eval()
    patch = task.preprocessing.patch_size
    with torch.no_grad(), torch.autocast("cuda", enabled=task.inference.amp):
        out = net(torch.rand(1, 1, *patch, device="cuda"))
    assert out.shape == (1, task.num_classes, *patch)
    assert torch.isfinite(out.float()).all()
