"""The ``params`` form field that MONAI Label's clients send with a request: a JSON object, checked once."""

from __future__ import annotations

import json
from typing import Any

from hope.errors import InvalidInputError


def parse_params(raw: object) -> dict[str, Any]:
    """``raw`` (a form field) as a dict; ``{}`` when absent or empty, an :class:`InvalidInputError` when it is not a
    JSON object."""
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        raise InvalidInputError("params must be a form field holding a JSON object, not a file")
    try:
        parsed = json.loads(raw)
    except ValueError as exc:
        raise InvalidInputError(f'params must be a JSON object, e.g. {{"tumor_type": "chordoma"}}: {exc}') from None
    if not isinstance(parsed, dict):
        raise InvalidInputError(f"params must be a JSON object, got {type(parsed).__name__}")
    return parsed
