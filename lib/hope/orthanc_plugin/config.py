"""The plugin's settings: the ``"Hope"`` section of Orthanc's configuration file."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hope.orthanc_plugin.pseudonymize import PseudonymizeConfig

DEFAULT_RETRY_SECONDS = 30.0
DEFAULT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class PluginConfig:
    """Where HOPE listens, where the plugin keeps its state, the key it signs events with, and how patiently it
    delivers them.

    ``secret_file`` holds the key shared with HOPE (HOPE reads the same file, ``HOPE_EVENT_SECRET_FILE``);
    ``retry_seconds`` caps the pause between delivery attempts while HOPE is down; ``timeout_seconds`` bounds
    one ``POST /hope/events``.
    """

    hope_url: str
    state_dir: Path
    secret_file: Path
    retry_seconds: float = DEFAULT_RETRY_SECONDS
    timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS
    pseudonymize: PseudonymizeConfig | None = None

    @property
    def database(self) -> Path:
        """The plugin's SQLite file (outbox, worklist, catalog)."""
        return self.state_dir / "hope-plugin.sqlite"

    @classmethod
    def from_section(cls, section: Mapping[str, Any] | None) -> PluginConfig:
        """Parse ``{"Url", "StateDirectory", "SecretFile", "RetrySeconds", "TimeoutSeconds", "Pseudonymize"}``.

        Raises ``ValueError`` naming the key that is missing or wrong.
        """
        if not isinstance(section, Mapping):
            raise ValueError(
                'the Orthanc configuration needs a "Hope" section with "Url", "StateDirectory" and "SecretFile"'
            )
        url, state_dir, secret_file = section.get("Url"), section.get("StateDirectory"), section.get("SecretFile")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f'"Hope.Url" must be HOPE\'s http(s) root URL, got {url!r}')
        if not isinstance(state_dir, str) or not state_dir:
            raise ValueError(f'"Hope.StateDirectory" must be a folder path, got {state_dir!r}')
        if not isinstance(secret_file, str) or not secret_file:
            raise ValueError(
                '"Hope.SecretFile" must be the path of the key the plugin signs its events with, the file HOPE '
                f"reads as HOPE_EVENT_SECRET_FILE (generated at first start if missing), got {secret_file!r}"
            )
        return cls(
            hope_url=url.rstrip("/"),
            state_dir=Path(state_dir),
            secret_file=Path(secret_file),
            retry_seconds=_positive(section, "RetrySeconds", DEFAULT_RETRY_SECONDS),
            timeout_seconds=_positive(section, "TimeoutSeconds", DEFAULT_TIMEOUT_SECONDS),
            pseudonymize=PseudonymizeConfig.from_section(section.get("Pseudonymize")),
        )


def _positive(section: Mapping[str, Any], key: str, default: float) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ValueError(f'"Hope.{key}" must be a positive number of seconds, got {value!r}')
    return float(value)
