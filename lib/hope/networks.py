"""Build MONAI networks from a task's :class:`~hope.config.NetworkSpec`."""

from __future__ import annotations

import monai.networks.nets as nets
import torch

from hope.config import ConfigError, TaskDefinition


def build_network(task: TaskDefinition) -> torch.nn.Module:
    """Instantiate ``monai.networks.nets.<name>(**args)`` with one input channel and one output per class."""
    spec = task.network
    cls = getattr(nets, spec.name, None)
    if cls is None or not isinstance(cls, type):
        raise ConfigError(f"task {task.name}: unknown network {spec.name!r}; use a class of monai.networks.nets")
    args = {"in_channels": 1, "out_channels": task.num_classes, **spec.args}
    try:
        return cls(**args)
    except TypeError as exc:
        raise ConfigError(f"task {task.name}: network {spec.name} rejects its arguments {args}: {exc}") from exc
