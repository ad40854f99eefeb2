"""Kinds of spine structure labels: ``vertebra`` for a vertebral level, ``disc`` for an intervertebral disc.

Tasks and references name levels (``C5``, ``T12``, ``disc_C5_C6``); code that compares structures across levels,
tasks or patients compares their kinds.
"""

from __future__ import annotations

import re

import numpy as np

#: The kinds few-shot matching tells apart (:mod:`hope.fewshot.anatomy_features`), background first.
KINDS = ("background", "vertebra", "disc", "cord", "canal", "tumor")


def label_kind(name: str) -> str:
    """The kind of a structure or task label name: ``vertebra`` for a vertebral level (``C5``, ``T12``), ``disc`` for
    ``disc_*``, else the name itself (``cord``, ``canal``, ``spinal_canal``, ``tumor``)."""
    if re.fullmatch(r"[CTLS]\d{1,2}", name):
        return "vertebra"
    if name.startswith("disc_"):
        return "disc"
    return name


def kind_index(masks: dict[str, np.ndarray]) -> np.ndarray:
    """The index in :data:`KINDS` of each pixel's kind, from boolean masks by kind (a later kind wins where two
    overlap; background, 0, is what no mask covers)."""
    unknown = set(masks) - set(KINDS[1:])
    if unknown:
        raise ValueError(f"unknown anatomy kinds {sorted(unknown)}; kinds are {', '.join(KINDS[1:])}")
    index = np.zeros(next(iter(masks.values())).shape, dtype=np.uint8)
    for kind, mask in masks.items():
        index[mask] = KINDS.index(kind)
    return index


def one_hot_kinds(index: np.ndarray) -> np.ndarray:
    """``(K, ...)`` float32 one-hot maps over :data:`KINDS` of a :func:`kind_index` array."""
    return np.moveaxis(np.eye(len(KINDS), dtype=np.float32)[index], -1, 0)
