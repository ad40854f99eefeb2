"""``scripts/bench_real.py``: the real scans it reads, its baselines on constructed arrays, and a quick run end to end
(correctness only: no timing or quality threshold)."""

from __future__ import annotations

import importlib.util
import io
import json
import sys
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pytest

from hope.benchmarks.real_cases import label_kind, load_scans, real_scans
from hope.benchmarks.real_fewshot import (
    cross_patient_pairs,
    evenly_spaced,
    intensity_rule,
    paste,
    scale_mask,
    slice_scores,
)
from hope.benchmarks.real_plot import MARGIN_MM, plane_window
from hope.benchmarks.real_proxy import dice
from hope.benchmarks.real_supervised import task_values
from hope.config import REPO_ROOT
from hope.fewshot.episodes import LabelledCase, build_support_set

HEADLINE = ("supervised_dice_real", "supervised_dice_real_untrained", "fewshot_dice_cross_patient_1shot",
            "fewshot_dice_cross_patient_5shot", "fewshot_baseline_intensity_dice", "fewshot_baseline_paste_dice",
            "fewshot_untrained_dice")
# Two cheap pairs (small queries) and the MR task keep the run short; the script's --quick takes five pairs.
TEST_PAIRS = ("thecal_sac: mr-t2-tptbox -> mr-t1-abdomen", "vertebra: mr-t1-abdomen -> mr-t2-tptbox")
EXPECTED_STRUCTURES = {
    "ct-3mm": {"vertebra", "thecal_sac"},
    "ct-dicom": {"vertebra", "thecal_sac"},
    "mr-t2-cord": {"cord"},
    "mr-t2-tptbox": {"C5", "C6", "C7", "disc_C5_C6", "disc_C6_C7", "thecal_sac"},
    "mr-t1-abdomen": {"vertebra", "disc", "thecal_sac"},
}


@pytest.fixture(scope="module")
def bench() -> Iterator[ModuleType]:
    """``scripts/bench_real.py`` as a module (in ``sys.modules`` while in use: its dataclasses need it)."""
    spec = importlib.util.spec_from_file_location("bench_real", REPO_ROOT / "scripts" / "bench_real.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]


@pytest.fixture(scope="module")
def quick_run(bench: ModuleType, shared_data: Path, tmp_path_factory: pytest.TempPathFactory
              ) -> tuple[dict[str, Any], str]:
    """One quick run (the MR task, two pairs): its JSON and what it printed."""
    out = tmp_path_factory.mktemp("bench_real") / "bench.json"
    printed = io.StringIO()
    with redirect_stdout(printed):
        bench.main(["--quick", "--json", str(out), "--shared", str(shared_data.parent), "--tasks", "spine_mr",
                    "--pairs", ",".join(TEST_PAIRS), "--device", "cpu", "--plot", str(out.with_suffix(".png"))])
    return json.loads(out.read_text()), printed.getvalue()


def _two_level(shape: tuple[int, int], square: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    image = np.full(shape, 0.2, np.float32)
    mask = np.zeros(shape, np.float32)
    image[square], mask[square] = 0.8, 1.0
    return image, mask


def test_intensity_rule_recovers_the_bright_square() -> None:
    support = build_support_set([LabelledCase(*_two_level((32, 32), (slice(8, 20), slice(10, 24))), "square")])
    query, truth = _two_level((40, 50), (slice(25, 35), slice(5, 12)))
    np.testing.assert_array_equal(intensity_rule(support, query), truth.astype(np.uint8))


def test_paste_keeps_relative_positions_across_slice_sizes() -> None:
    mask = np.zeros((10, 20), np.uint8)
    mask[2:5, 10:15] = 1  # rows 20-50 %, columns 50-75 % of the slice
    expected = np.zeros((20, 40), np.uint8)
    expected[4:10, 20:30] = 1
    np.testing.assert_array_equal(scale_mask(mask, (20, 40)), expected)
    np.testing.assert_array_equal(scale_mask(expected, (10, 20)), mask)
    other = np.zeros_like(mask)
    other[2:5, 12:15] = 1  # with 2 masks, a pixel must be in both (more than half)
    np.testing.assert_array_equal(paste([mask, other], (10, 20)), other)


def test_a_plot_panel_is_cut_to_the_margin_around_the_reference_in_millimetres() -> None:
    mask = np.zeros((100, 100), bool)
    mask[40:43, 50:61] = True  # rows 40-42, columns 50-60
    rows, columns = plane_window(mask, (2.0, 1.0))  # 2 mm rows, 1 mm columns
    assert MARGIN_MM == 25.0
    assert (rows.start, rows.stop) == (40 - 12, 43 + 12)  # 25 mm is 12 rows of 2 mm
    assert (columns.start, columns.stop) == (50 - 25, 61 + 25)
    corner = np.zeros((100, 100), bool)
    corner[:3, 95:] = True
    rows, columns = plane_window(corner, (1.0, 1.0))
    assert (rows.start, rows.stop, columns.start) == (0, 28, 70)  # clipped at the plane's edge
    assert plane_window(np.zeros((5, 5), bool), (1.0, 1.0)) == (slice(None), slice(None))


def test_dice_and_slice_scores() -> None:
    a = np.zeros((8, 8), np.uint8)
    a[2:5, 2:5] = 1
    b = np.zeros_like(a)
    b[6:8, 6:8] = 1
    assert dice(a, a) == 1.0 and dice(a, b) == 0.0
    truth = np.stack([a, np.zeros_like(a), a])
    prediction = np.stack([a, b, b])
    scores = slice_scores(prediction, truth)
    assert scores == {"dice": 0.5, "slices_scored": 2, "empty_slices": 1, "empty_false_positive": 1.0}
    assert slice_scores(prediction, np.zeros_like(truth))["dice"] is None


def test_support_slices_are_evenly_spaced() -> None:
    assert evenly_spaced(list(range(10, 20)), 1) == [15]
    assert evenly_spaced(list(range(10)), 5) == [1, 3, 5, 7, 9]
    assert evenly_spaced([4, 7], 5) == [4, 7]


def test_reference_structures_map_to_task_labels() -> None:
    labels = {"C5": 5, "C6": 6, "cord": 8, "tumor": 9, "canal": 10, "disc_C5_C6": 14, "spinal_canal": 11}
    assert task_values("C5", labels) == (5,)
    assert task_values("vertebra", labels) == (5, 6)
    assert task_values("disc", labels) == (14,)
    assert task_values("canal", labels) == (10,)
    assert task_values("thecal_sac", labels) == (8, 10, 11)  # the cord and its CSF
    assert task_values("thecal_sac", {"C5": 5, "spinal_canal": 8}) == (8,)  # spine_ct labels the canal as one
    assert task_values("C7", labels) == ()  # the task has no such level
    assert task_values("liver", labels) == ()
    assert [label_kind(n) for n in ("T12", "disc_C7_T1", "cord")] == ["vertebra", "disc", "cord"]


def test_shared_scans_load_with_their_structures(shared_data: Path) -> None:
    scans = {s.scan.name: s for s in load_scans(shared_data)}
    assert {name: set(s.masks) for name, s in scans.items()} == EXPECTED_STRUCTURES
    for loaded in scans.values():
        shape = loaded.image.GetSize()[::-1]
        assert all(m.shape == shape and m.dtype == bool and m.any() for m in loaded.masks.values())
    assert scans["ct-3mm"].scan.patient != scans["ct-dicom"].scan.patient
    tptbox = scans["mr-t2-tptbox"]
    vertebrae = tptbox.kind_mask("vertebra")  # the union of C5-C7, which do not overlap
    assert vertebrae is not None and vertebrae.sum() == sum(tptbox.masks[f"C{v}"].sum() for v in (5, 6, 7))


def test_pairs_are_cross_patient_within_a_modality(shared_data: Path) -> None:
    pairs = cross_patient_pairs(real_scans(shared_data))
    assert all(p.support.modality == p.query.modality and p.support.patient != p.query.patient for p in pairs)
    names = {p.name for p in pairs}
    assert {"vertebra: ct-3mm -> ct-dicom", "thecal_sac: mr-t2-tptbox -> mr-t1-abdomen",
            "vertebra: mr-t2-tptbox -> mr-t1-abdomen", "thecal_sac: ct-dicom -> ct-3mm"} <= names
    # a cord is never paired with a thecal sac: the cord is half of it at most, so the SCT cord has no partner
    assert not any(p.kind == "cord" for p in pairs)
    assert {p.contrast for p in pairs} == {"CT->CT", "T2->T1", "T1->T2"}


def _in_unit_range_or_explained(value: float | None, reason: str | None) -> bool:
    return (value is None and bool(reason)) or (value is not None and 0.0 <= value <= 1.0)


def test_quick_run_reports_every_figure(quick_run: tuple[dict[str, Any], str]) -> None:
    result, _ = quick_run
    for key in HEADLINE:
        assert _in_unit_range_or_explained(result[key], result["null_reasons"].get(key)), key
    assert result["mode"]["name"] == "quick" and result["seconds"]["total"] > 0
    rows = result["supervised"]["rows"]
    assert {r["case"] for r in rows} == {"mr-t2-cord", "mr-t2-tptbox", "mr-t1-abdomen"}
    assert all(0.0 <= r[m] <= 1.0 for r in rows for m in ("served", "untrained"))
    pairs = result["fewshot"]["pairs"]
    assert set(pairs) == set(TEST_PAIRS)
    for pair in pairs.values():
        assert set(pair["shots"]) == {"1", "5"}
        for shot in pair["shots"].values():
            served = ["served", "encoder_only"] if "served" in shot["dice"] else []
            for method in ("untrained", "intensity", "paste", *served):
                assert _in_unit_range_or_explained(shot["dice"][method], shot.get("dice_null_because")), method


def test_quick_run_tables_list_every_row(quick_run: tuple[dict[str, Any], str]) -> None:
    result, printed = quick_run
    drawn = Path(printed.split("wrote ")[-1].strip())
    assert drawn.suffix == ".png" and drawn.stat().st_size > 10_000  # the suggestions on the three real MRs
    for name in result["fewshot"]["pairs"]:
        assert printed.count(name) == 2  # one line per shot count
    for row in result["supervised"]["rows"]:
        assert any(row["case"] in line and row["structure"] in line for line in printed.splitlines())
    assert "No real tumour label" in printed and "few" in printed
    assert "served/best" in printed and "served/untrained" in printed
    assert "joined with anatomy features" in printed  # the served encoder's matching, as fewshot_tumor.yaml has it


def test_missing_figures_say_why(bench: ModuleType) -> None:
    no_pairs = {"pairs": {}, "mean": {k: dict.fromkeys(("served", "untrained", "intensity", "paste")) for k in "15"}}
    values, why = bench.summarise({"rows": []}, no_pairs, "no shipped encoder at x.pt")
    assert set(values) == set(HEADLINE) and all(v is None for v in values.values()) and set(why) == set(HEADLINE)
    one_pair = {**no_pairs, "pairs": {"cord: a -> b": {}}}
    values, why = bench.summarise({"rows": []}, one_pair, "no shipped encoder at x.pt")
    assert why["fewshot_dice_cross_patient_1shot"] == "no shipped encoder at x.pt"
    assert bench.ratio(0.5, [0.25, None]) == 2.0 and bench.ratio(0.5, [0.0]) is None


def test_candidate_weights_are_named_and_checked(bench: ModuleType, tmp_path: Path) -> None:
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"x")
    assert bench.parse_weights([f"spine_mr={weights}"]) == {"spine_mr": weights}
    with pytest.raises(SystemExit, match="TASK=PATH"):
        bench.parse_weights(["spine_mr"])
    with pytest.raises(SystemExit, match="no file"):
        bench.parse_weights([f"spine_mr={tmp_path / 'missing.pt'}"])


def test_only_supervised_tasks_are_scored_as_such(bench: ModuleType) -> None:
    tasks, notes = bench.supervised_tasks(["spine_mr", "fewshot_tumor", "no_such_task"])
    assert [t.name for t in tasks] == ["spine_mr"]
    assert "fewshot_tumor is a fewshot_segmentation task" in notes[0] and "no configs/tasks/no_such_task" in notes[1]
