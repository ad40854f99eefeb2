"""Build the few-shot networks from a task's ``network:`` section, and save / load their weights.

A checkpoint is one ``torch.save`` mapping: ``{"kind", "state", "temperature", "trained_on"}``. ``state`` is the
encoder (segmentation) or lesion embedder (grading) state dict; ``temperature`` is the fitted grading temperature;
``trained_on`` says what it learnt from (phantom types, store series), for the model-version history.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from hope.config import ConfigError
from hope.fewshot.config import FewShotDefinition
from hope.fewshot.encoder import ConvEncoder
from hope.fewshot.grading import LesionEmbedder, LesionGrader
from hope.fewshot.prototypes import PrototypeSegmenter


def _build(cls: type, args: dict[str, Any], task: FewShotDefinition, section: str) -> Any:
    try:
        return cls(**args)
    except TypeError as exc:
        raise ConfigError(f"task {task.name}: network.{section} rejects its arguments {args}: {exc}") from exc


def build_segmenter(task: FewShotDefinition) -> PrototypeSegmenter:
    """A :class:`PrototypeSegmenter` with an untrained :class:`ConvEncoder`, as ``network:`` describes, joining
    anatomy features with the ``anatomy:`` section's weight (none without it)."""
    encoder = _build(ConvEncoder, dict(task.network.encoder), task, "encoder")
    weight = task.anatomy.weight if task.anatomy is not None else 0.0
    return _build(PrototypeSegmenter, {"encoder": encoder, "anatomy_weight": weight, **task.network.prototypes},
                  task, "prototypes")


def build_embedder(task: FewShotDefinition) -> LesionEmbedder:
    """An untrained :class:`LesionEmbedder`, as ``network.embedder`` describes."""
    return _build(LesionEmbedder, dict(task.network.embedder), task, "embedder")


def save_checkpoint(
    path: Path, task: FewShotDefinition, module: torch.nn.Module, trained_on: dict[str, Any],
    temperature: float = 1.0,
) -> Path:
    """Write ``module``'s weights (the segmenter's encoder, or the embedder) for ``task`` to ``path``."""
    state = module.encoder.state_dict() if isinstance(module, PrototypeSegmenter) else module.state_dict()
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"kind": task.kind, "state": state, "temperature": float(temperature), "trained_on": trained_on},
               path)
    return path


def _read(path: Path, task: FewShotDefinition) -> dict[str, Any]:
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    if checkpoint.get("kind") != task.kind:
        raise ConfigError(f"{path} holds a {checkpoint.get('kind')!r} model, not the {task.kind} that task "
                          f"{task.name} needs; regenerate it with scripts/pretrain_fewshot.py")
    return checkpoint


def load_segmenter(path: Path, task: FewShotDefinition) -> PrototypeSegmenter:
    """The task's segmenter with the encoder weights in ``path``, in eval mode."""
    segmenter = build_segmenter(task)
    segmenter.encoder.load_state_dict(_read(path, task)["state"])
    return segmenter.eval()


def load_grader(path: Path, task: FewShotDefinition) -> LesionGrader:
    """An unfitted :class:`LesionGrader`: the embedder weights and the temperature in ``path``."""
    checkpoint = _read(path, task)
    embedder = build_embedder(task)
    embedder.load_state_dict(checkpoint["state"])
    return LesionGrader(embedder.eval(), float(checkpoint["temperature"]))
