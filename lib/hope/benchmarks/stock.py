"""Stock MONAI Label's radiology ``segmentation`` model, loaded from the installed sample app for comparisons.

The sample app's ``lib`` package cannot be imported whole here: ``lib/trainers/__init__.py`` imports every trainer,
and DeepEdit's needs TensorBoard at import, which HOPE does not install. So only the modules the ``segmentation``
model uses are loaded, by path, under their own names (``lib.configs.segmentation``, ``lib.infers.segmentation``,
``lib.trainers.segmentation``, ``lib.transforms.transforms``), and its unchanged ``Segmentation`` task config builds
the network, the infer task and the trainer. Two things differ from a stock server, both needed to run at all:

* ``monailabel.transform.post`` imports ``torchvision.utils`` (used only by an image-saving debug transform), and
  torchvision is left out of HOPE's environment; a stand-in module satisfies that import while the app loads;
* the trainer's train and validation handlers are MONAI's ``StatsHandler`` and ``ValidationHandler`` only, as in
  HOPE's trainer: the stock ones write TensorBoard event files.

Nothing is downloaded: no pretrained weights (``use_pretrained_model: false``); a seeded random network is written as
the published model so the infer task has weights to load.
"""

from __future__ import annotations

import importlib.util
import sys
import types
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from monai.handlers import StatsHandler, ValidationHandler, from_engine
from monailabel.interfaces.tasks.infer_v2 import InferTask
from monailabel.interfaces.tasks.train import TrainTask

RADIOLOGY_APP = Path(sys.prefix) / "monailabel" / "sample-apps" / "radiology"  # where pip installs the sample apps


@contextmanager
def _torchvision_stand_in() -> Iterator[None]:
    """A ``torchvision.utils`` module for the duration of the import, when torchvision is not installed."""
    if importlib.util.find_spec("torchvision") is not None:
        yield
        return
    package, utils = types.ModuleType("torchvision"), types.ModuleType("torchvision.utils")

    def _missing(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("torchvision is not installed (a stand-in satisfied monailabel's import)")

    utils.make_grid = utils.save_image = _missing  # type: ignore[attr-defined]
    package.utils = utils  # type: ignore[attr-defined]
    sys.modules.update({"torchvision": package, "torchvision.utils": utils})
    try:
        yield
    finally:  # later optional imports of torchvision (MONAI's) must not find the stand-in
        del sys.modules["torchvision"], sys.modules["torchvision.utils"]


def _register(name: str, module: types.ModuleType) -> None:
    """Put ``module`` in ``sys.modules`` and on its parent package, as an import would."""
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:
        setattr(sys.modules[parent], child, module)


def _load(name: str, path: Path) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    _register(name, module)
    spec.loader.exec_module(module)
    return module


def _package(name: str, folder: Path) -> types.ModuleType:
    """An empty package module ``name`` over ``folder``, without running its ``__init__``."""
    module = types.ModuleType(name)
    module.__path__ = [str(folder)]
    _register(name, module)
    return module


def stock_segmentation_config(app_dir: Path = RADIOLOGY_APP) -> type:
    """The sample app's ``Segmentation`` TaskConfig class (``lib/configs/segmentation.py``)."""
    lib = app_dir / "lib"
    if not (lib / "configs" / "segmentation.py").is_file():
        raise FileNotFoundError(f"the MONAI Label radiology sample app is not at {app_dir}")
    with _torchvision_stand_in():
        packages = {name: _package(name, lib.joinpath(*name.split(".")[1:]))
                    for name in ("lib", "lib.transforms", "lib.infers", "lib.trainers", "lib.configs")}
        infers, trainers = packages["lib.infers"], packages["lib.trainers"]
        _load("lib.transforms.transforms", lib / "transforms" / "transforms.py")
        infers.Segmentation = _load("lib.infers.segmentation", lib / "infers" / "segmentation.py").Segmentation
        trainers.Segmentation = _load("lib.trainers.segmentation", lib / "trainers" / "segmentation.py").Segmentation
        return _load("lib.configs.segmentation", lib / "configs" / "segmentation.py").Segmentation


class StockSegmentation:
    """Stock ``segmentation`` with HOPE's labels: its SegResNet, transforms, sliding window and trainer."""

    def __init__(self, model_dir: Path, labels: dict[str, int], roi_size: tuple[int, int, int] | None = None) -> None:
        """Set the task up in ``model_dir``; ``roi_size`` replaces stock's 96³ patch (smoke runs only)."""
        model_dir.mkdir(parents=True, exist_ok=True)
        names = [name for name, _ in sorted(labels.items(), key=lambda item: item[1])]
        self.config = stock_segmentation_config()()
        self.config.init("segmentation", str(model_dir), {"labels": ",".join(names), "use_pretrained_model": "false"},
                         None)
        if roi_size is not None:
            self.config.roi_size = roi_size
        published = Path(self.config.path[1])
        if not published.exists():
            torch.manual_seed(0)
            torch.save({"model": self.config.network.state_dict()}, published)
        self.published = published

    def infer(self) -> InferTask:
        """The stock infer task (a new one is cold: its network loads on the first call)."""
        return self.config.infer()

    def trainer(self) -> TrainTask:
        """The stock trainer, with StatsHandler and ValidationHandler in place of its TensorBoard handlers."""
        trainer = self.config.trainer()

        def train_handlers(context: Any) -> list[Any]:
            loss = from_engine(["loss"], first=True)
            handlers: list[Any] = [StatsHandler(tag_name="train_loss", output_transform=loss)]
            if context.evaluator:
                handlers.append(ValidationHandler(1, validator=context.evaluator, epoch_level=True))
            return handlers

        trainer.train_handlers = train_handlers
        trainer.val_handlers = lambda _context: [StatsHandler(output_transform=lambda _: None, iteration_log=False)]
        return trainer
