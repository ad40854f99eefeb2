"""Kinds of spine structure labels: ``vertebra`` for a vertebral level, ``disc`` for an intervertebral disc.

Tasks and references name levels (``C5``, ``T12``, ``disc_C5_C6``); code that compares structures across levels,
tasks or patients compares their kinds.
"""

from __future__ import annotations

import re


def label_kind(name: str) -> str:
    """The kind of a structure or task label name: ``vertebra`` for a vertebral level (``C5``, ``T12``), ``disc`` for
    ``disc_*``, else the name itself (``cord``, ``canal``, ``spinal_canal``, ``tumor``)."""
    if re.fullmatch(r"[CTLS]\d{1,2}", name):
        return "vertebra"
    if name.startswith("disc_"):
        return "disc"
    return name
