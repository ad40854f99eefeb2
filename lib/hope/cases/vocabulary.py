"""The case vocabulary (``configs/cases.yaml``): tumour types, verdicts, confirmations and the database URL."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from hope.config import ConfigError, config_dir

DB_URL_ENV = "HOPE_CASES_DB_URL"
DATA_DIR_ENV = "HOPE_DATA_DIR"


def normalise_key(value: str) -> str:
    """The vocabulary key a client's spelling stands for: trimmed, lower-case, spaces and hyphens as ``_``."""
    return "_".join(value.strip().lower().replace("-", " ").split())


@dataclass(frozen=True)
class TumorType:
    """A known tumour type: its key, display name, and the verdicts it may have."""

    key: str
    name: str
    verdicts: frozenset[str]


@dataclass(frozen=True)
class CaseVocabulary:
    """What a case record may say, and where case records are stored by default."""

    tumor_types: Mapping[str, TumorType]
    verdicts: Mapping[str, str]
    confirmations: Mapping[str, str]
    database_url: str

    def database_url_for(self, environ: Mapping[str, str] | None = None) -> str:
        """The database URL to use: ``$HOPE_CASES_DB_URL``, else ``database.url`` with ``{data_dir}`` filled in.

        ``{data_dir}`` is ``$HOPE_DATA_DIR`` (default ``./data``) as an absolute path.
        """
        env = os.environ if environ is None else environ
        if env.get(DB_URL_ENV):
            return env[DB_URL_ENV]
        data_dir = Path(env.get(DATA_DIR_ENV) or "data").resolve()
        return self.database_url.replace("{data_dir}", data_dir.as_posix())

    def as_dict(self) -> dict[str, Any]:
        """The vocabulary as JSON-ready data (for clients that build pick lists)."""
        return {
            "tumor_types": {
                key: {"name": t.name, "verdicts": sorted(t.verdicts)} for key, t in self.tumor_types.items()
            },
            "verdicts": dict(self.verdicts),
            "confirmations": dict(self.confirmations),
        }


def _check_key(key: Any, section: str, where: str) -> str:
    if not isinstance(key, str) or normalise_key(key) != key:
        raise ConfigError(
            f"{where}: {section} key {key!r} must be lower-case with underscores, e.g. {normalise_key(str(key))!r}"
        )
    return key


def _names(raw: Any, section: str, where: str) -> dict[str, str]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: '{section}' must be a non-empty mapping of key -> display name")
    return {_check_key(key, section, where): str(name) for key, name in raw.items()}


def _tumor_types(raw: Any, verdicts: Mapping[str, str], where: str) -> dict[str, TumorType]:
    if not isinstance(raw, dict) or not raw:
        raise ConfigError(f"{where}: 'tumor_types' must be a non-empty mapping of key -> {{name, verdicts}}")
    types: dict[str, TumorType] = {}
    for key, entry in raw.items():
        _check_key(key, "tumor_types", where)
        if not isinstance(entry, dict) or "name" not in entry:
            raise ConfigError(f"{where}: tumor_types.{key} must be a mapping with 'name' (and optional 'verdicts')")
        allowed = entry.get("verdicts", list(verdicts))
        unknown = sorted(set(allowed) - set(verdicts))
        if not allowed or unknown:
            raise ConfigError(
                f"{where}: tumor_types.{key}.verdicts must be a non-empty subset of {sorted(verdicts)}, got {allowed!r}"
            )
        types[key] = TumorType(key=key, name=str(entry["name"]), verdicts=frozenset(allowed))
    return types


def load_vocabulary(path: Path | None = None) -> CaseVocabulary:
    """Load and validate ``cases.yaml`` (default: ``<config dir>/cases.yaml``, see :func:`hope.config.config_dir`).

    Raises :class:`hope.config.ConfigError` naming the file and the bad key.
    """
    path = path or config_dir() / "cases.yaml"
    if not path.is_file():
        raise ConfigError(f"case vocabulary {path} does not exist; create it or set HOPE_CONFIG_DIR")
    with path.open() as f:
        data = yaml.safe_load(f)
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where} must hold a YAML mapping at the top level")
    verdicts = _names(data.get("verdicts"), "verdicts", where)
    url = (data.get("database") or {}).get("url")
    if not isinstance(url, str) or not url:
        raise ConfigError(f"{where}: missing 'database.url' (an SQLAlchemy URL; {{data_dir}} is $HOPE_DATA_DIR)")
    return CaseVocabulary(
        tumor_types=MappingProxyType(_tumor_types(data.get("tumor_types"), verdicts, where)),
        verdicts=MappingProxyType(verdicts),
        confirmations=MappingProxyType(_names(data.get("confirmations"), "confirmations", where)),
        database_url=url,
    )
