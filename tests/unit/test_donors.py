"""Real label maps as training anatomy (hope.synthesis.donors) and the pool that mixes them with phantoms."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from monai.transforms import Compose

from hope.benchmarks.real_cases import label_kind
from hope.config import load_task
from hope.synthesis.dataset import mix_pool
from hope.synthesis.donors import BACKGROUND_CLASSES, donor_pool, donor_scans, tissue_map
from hope.synthesis.pipeline import RENDERED, TISSUES, SynthesisSettings, synthesis_transforms


@pytest.mark.parametrize("name", ["spine_mr", "spine_ct"])
def test_donors_are_never_scans_of_the_tasks_modality(shared_data: Path, name: str) -> None:
    task = load_task(name)
    donors = donor_scans(task, shared_data)
    assert donors, f"{name} has no donor scan"
    assert all(s.modality not in task.modalities for s in donors)
    assert all("vertebra" in s.kinds() for s in donors)  # the cord-only SCT scan would teach vertebrae as background


def test_spine_mr_donors_carry_cervical_levels_discs_a_cord_and_a_canal(shared_data: Path) -> None:
    task = load_task("spine_mr").with_profile("cpu")
    pool = donor_pool(task, shared_data)
    names = {v: k for k, v in task.labels.items()}
    for item in pool:
        assert set(item) == {TISSUES, "label", RENDERED}
        assert item[TISSUES].shape == item["label"].shape == item[RENDERED].shape
        present = {names[int(v)] for v in torch.unique(item["label"]) if v}
        levels = sorted(n for n in present if label_kind(n) == "vertebra")
        assert levels and levels[-1] == "C7", present  # thoracolumbar vertebrae end the column at C7, in order
        # the CTs label the thecal sac (cord and CSF as one): its core is drawn as the cord, the rest is the canal
        assert {"cord", "canal"} <= present
        cord, canal = (int((item["label"] == task.labels[n]).sum()) for n in ("cord", "canal"))
        assert 0.2 < cord / (cord + canal) < 0.6, (cord, canal)
        # nor disc labels: they are drawn between consecutive vertebrae, named after the one above
        discs = {n for n in present if label_kind(n) == "disc"}
        assert discs and all(f"disc_{level}_" in " ".join(discs) for level in levels[-2:-1])
        assert float(item[RENDERED].min()) >= 0.0 and float(item[RENDERED].max()) <= 1.0
        # every task label lies on a tissue class of its own or a real labelled structure, not on the background's
        labelled = item["label"] > 0
        assert int((item[TISSUES][labelled] <= BACKGROUND_CLASSES).sum()) < 0.05 * int(labelled.sum())


def test_donor_items_go_through_the_synthesis_pipeline(shared_data: Path) -> None:
    task = load_task("spine_ct").with_profile("cpu")
    item = donor_pool(task, shared_data)[0]
    pipeline = Compose(synthesis_transforms(task, SynthesisSettings(rendered_prob=0.5)))
    pipeline.set_random_state(seed=0)
    out = pipeline(dict(item))
    assert tuple(out["image"].shape) == (1, *task.preprocessing.patch_size)
    assert set(torch.unique(out["label"]).tolist()) <= {0, *task.labels.values()}


def test_tissue_map_splits_the_background_by_intensity() -> None:
    image = np.linspace(0.0, 1.0, 600, dtype=np.float32).reshape(6, 10, 10)
    label = np.zeros_like(image, dtype=np.uint8)
    label[2, 2:5, 2:5] = 7
    tissues = tissue_map(image, [label])
    assert set(np.unique(tissues[label == 0])) == set(range(1, BACKGROUND_CLASSES + 1))
    assert np.all(np.diff(tissues[label == 0]) >= 0)  # classes follow intensity
    assert set(np.unique(tissues[label == 7])) == {BACKGROUND_CLASSES + 1}


def test_mix_pool_reaches_the_share_by_reference() -> None:
    pool, extra = [{"a": i} for i in range(30)], [{"b": 0}, {"b": 1}]
    mixed = mix_pool(pool, extra, 0.5)
    share = sum("b" in item for item in mixed) / len(mixed)
    assert share == pytest.approx(0.5, abs=0.05)
    assert all(any(item is e for e in extra) for item in mixed[len(pool):])
    assert mix_pool(pool, extra, 0.0) == pool
    assert mix_pool(pool, extra, 1.0) == extra
    with pytest.raises(ValueError, match="share"):
        mix_pool(pool, extra, 1.5)
