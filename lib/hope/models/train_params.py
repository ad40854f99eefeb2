"""Validation of training parameters against the bounds a task's YAML allows."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from hope.config import TaskDefinition
from hope.errors import InvalidInputError
from hope.fewshot.config import FewShotDefinition

INTEGER_PARAMS = {"max_epochs", "early_stop_patience", "train_batch_size", "ssl_steps", "meta_steps",
                  "slices_per_series", "seed"}


def _gpus(value: Any) -> str:
    text = str(value).strip()
    if text == "all":
        return text
    available = torch.cuda.device_count()
    try:
        ids = [int(part) for part in text.split(",")]
    except ValueError as exc:
        raise InvalidInputError(f"gpus must be 'all' or comma-separated device numbers, got {value!r}") from exc
    bad = [i for i in ids if not 0 <= i < available]
    if bad:
        raise InvalidInputError(f"gpus {bad} do not exist on this server ({available} CUDA device(s) visible)")
    return ",".join(str(i) for i in ids)


def validate_train_params(
    task: TaskDefinition | FewShotDefinition, params: dict[str, Any] | None,
    published: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Check ``params`` against ``task.training.bounds``; return them typed, or raise a 422 naming the problem.

    Clients such as Slicer echo the trainer configuration the server publishes in ``/info/`` and add their
    ``client_id``; those keys pass through unchanged, while bounded keys are checked and anything else is refused.
    """
    params = dict(params or {})
    passthrough = set(published or {}) | {"client_id"}
    allowed = set(task.training.bounds) | {"gpus"}
    unknown = sorted(set(params) - allowed - passthrough)
    if unknown:
        raise InvalidInputError(f"unknown training parameter(s) {unknown}; allowed: {sorted(allowed)}")
    clean: dict[str, Any] = {k: v for k, v in params.items() if k in passthrough and k not in allowed}
    for key, value in params.items():
        if key in clean:
            continue
        if key == "gpus":
            clean[key] = _gpus(value)
            continue
        low, high = task.training.bounds[key]
        try:
            number = float(value)
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"{key} must be a number, got {value!r}") from exc
        if key in INTEGER_PARAMS and not number.is_integer():
            raise InvalidInputError(f"{key} must be a whole number, got {value!r}")
        if not low <= number <= high:
            raise InvalidInputError(f"{key}={value} is out of bounds for {task.name}: allowed {low:g} to {high:g}")
        clean[key] = int(number) if key in INTEGER_PARAMS else number
    return clean
