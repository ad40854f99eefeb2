"""Where configuration lives and how a YAML file is read: the one place that opens files under ``configs/``."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_CONFIG_DIR = REPO_ROOT / "configs"


class ConfigError(ValueError):
    """A configuration file is missing, malformed or inconsistent; the message says which and how to fix it."""


class _HasName(Protocol):
    name: str


Named = TypeVar("Named", bound=_HasName)


def config_dir() -> Path:
    """The configuration folder: ``$HOPE_CONFIG_DIR`` or the repository's ``configs/``."""
    return Path(os.environ.get("HOPE_CONFIG_DIR", DEFAULT_CONFIG_DIR))


def read_yaml(path: Path) -> dict[str, Any]:
    """The YAML mapping in ``path``; a :class:`ConfigError` saying what to fix when it is missing or not a mapping."""
    if not path.is_file():
        raise ConfigError(f"configuration file {path} does not exist; create it or set HOPE_CONFIG_DIR")
    with path.open() as f:
        try:
            data = yaml.safe_load(f)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must hold a YAML mapping at the top level")
    return data


def require(data: dict[str, Any], key: str, where: str) -> Any:
    """``data[key]``, or a :class:`ConfigError` naming the file (``where``) and the missing key."""
    if key not in data:
        raise ConfigError(f"{where}: missing required key '{key}'")
    return data[key]


def section(data: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    """The mapping ``data[key]`` (empty when absent); a :class:`ConfigError` when it is not a mapping."""
    raw = data.get(key) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}.{key}: expected a mapping, got {raw!r}")
    return raw


def number(raw: dict[str, Any], key: str, default: float, where: str, *, cast: type = float,
           low: float | None = None, high: float | None = None) -> Any:
    """``raw[key]`` (or ``default``) cast with ``cast`` and within ``[low, high]``; a :class:`ConfigError` naming
    the key otherwise."""
    value = raw.get(key, default)
    try:
        result = cast(value)
    except (TypeError, ValueError):
        raise ConfigError(f"{where}.{key}: expected a {cast.__name__}, got {value!r}") from None
    if (low is not None and result < low) or (high is not None and result > high):
        raise ConfigError(f"{where}.{key}: must lie in [{low}, {high}], got {value!r}")
    return result


def flag(raw: dict[str, Any], key: str, default: bool, where: str) -> bool:
    """``raw[key]`` (or ``default``) as a YAML boolean; a :class:`ConfigError` for anything else."""
    value = raw.get(key, default)
    if not isinstance(value, bool):
        raise ConfigError(f"{where}.{key}: expected true or false, got {value!r}")
    return value


def parse_bounds(raw: Any, where: str) -> dict[str, tuple[float, float]]:
    """Training-parameter bounds ``{name: [min, max]}`` from YAML, checked."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: expected a mapping of parameter -> [min, max]")
    bounds = {}
    for key, pair in raw.items():
        if not isinstance(pair, list | tuple) or len(pair) != 2 or float(pair[0]) > float(pair[1]):
            raise ConfigError(f"{where}.{key}: expected [min, max] with min <= max, got {pair!r}")
        bounds[str(key)] = (float(pair[0]), float(pair[1]))
    return bounds


def load_task_file(name: str, parse: Callable[[dict[str, Any], str], Named], directory: Path | None = None
                   ) -> Named:
    """``parse`` ``<directory>/tasks/<name>.yaml`` (default: :func:`config_dir`); its ``name`` must be ``name``."""
    path = (directory or config_dir()) / "tasks" / f"{name}.yaml"
    task = parse(read_yaml(path), str(path))
    if task.name != name:
        raise ConfigError(f"{path}: 'name' is {task.name!r} but the file name says {name!r}; make them agree")
    return task
