"""HOPE's Orthanc plugin: keeps the HOPE annotation server in step with the store.

Loaded by Orthanc's Python plugin (``"PythonScript"``), in Orthanc's embedded system Python: standard library
and the ``orthanc`` module only. This file is the binding to ``orthanc``; the logic is ``hope.orthanc_plugin``
from this repository's ``lib/``. Configuration, in Orthanc's configuration file::

    "Hope": {"Url": "http://127.0.0.1:8000", "StateDirectory": "/data/hope-plugin",
             "SecretFile": "/data/secrets/events.key", "RetrySeconds": 30,
             "Pseudonymize": {"Enabled": false, "Salt": "<secret>", "MapFile": null, "KeepOriginal": false}}

``SecretFile`` is the key the plugin signs its events with (``hope.sync.signing``); HOPE reads the same file
(``HOPE_EVENT_SECRET_FILE``). It is generated at first start if missing, readable by its owner only.
``RetrySeconds`` (default 30) caps the pause between delivery attempts while HOPE is down; ``TimeoutSeconds``
(default 5) bounds one ``POST /hope/events``. ``Pseudonymize`` replaces each new study by a pseudonymised copy
before it enters the annotation pool (see ``hope.orthanc_plugin.pseudonymize``). A missing or wrong section stops
Orthanc with the reason.

Routes: ``GET /hope/series``, ``GET /hope/series/<SeriesInstanceUID>``, ``GET /hope/outbox``, and
``POST /hope/outbox/<event id>/retry`` (a rejected event only; behind Orthanc's credentials like every route).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orthanc

LIB = Path(__file__).resolve().parents[1] / "lib"
if str(LIB) not in sys.path:
    sys.path.insert(0, str(LIB))

from hope.orthanc_plugin.config import PluginConfig  # noqa: E402
from hope.orthanc_plugin.service import PluginService  # noqa: E402

#: Orthanc series metadata holding ``{"valid": bool, "reasons": [...]}``; declared in ``orthanc/orthanc.json``.
VALIDATION_METADATA = "HopeValidation"


class OrthancLog:
    """The plugin's log lines go to Orthanc's log."""

    def info(self, message: str) -> None:
        """Orthanc's info level (shown with ``--verbose``)."""
        orthanc.LogInfo(message)

    def warning(self, message: str) -> None:
        """Orthanc's warning level."""
        orthanc.LogWarning(message)

    def error(self, message: str) -> None:
        """Orthanc's error level."""
        orthanc.LogError(message)


def rest_get(uri: str) -> Any:
    """``GET uri`` on Orthanc's own REST API, parsed."""
    return json.loads(orthanc.RestApiGet(uri))


def rest_post(uri: str, body: dict[str, Any]) -> Any:
    """``POST uri`` with a JSON body on Orthanc's own REST API, parsed."""
    return json.loads(orthanc.RestApiPost(uri, json.dumps(body).encode()))


def rest_delete(uri: str) -> None:
    """``DELETE uri`` on Orthanc's own REST API."""
    orthanc.RestApiDelete(uri)


def store_validation(orthanc_id: str, validation: dict[str, Any]) -> None:
    """Keep a series' validation as its ``HopeValidation`` metadata, visible in Orthanc's REST API."""
    orthanc.RestApiPut(f"/series/{orthanc_id}/metadata/{VALIDATION_METADATA}", json.dumps(validation).encode())


def on_change(change_type: int, level: int, resource_id: str) -> None:
    """Queue stable series; start and stop the service's threads with Orthanc."""
    if change_type == orthanc.ChangeType.STABLE_SERIES:
        SERVICE.on_stable_series(resource_id)
    elif change_type == orthanc.ChangeType.STABLE_STUDY:
        SERVICE.on_stable_study(resource_id)
    elif change_type == orthanc.ChangeType.ORTHANC_STARTED:
        SERVICE.start()
    elif change_type == orthanc.ChangeType.ORTHANC_STOPPED:
        SERVICE.stop()


def json_route(answer: Callable[..., tuple[int, Any]], method: str = "GET") -> Callable[..., None]:
    """An Orthanc REST callback that answers ``method`` with ``answer(*groups)`` = (HTTP status, JSON body)."""

    def callback(output: Any, uri: str, **request: Any) -> None:
        if request["method"] != method:
            output.SendMethodNotAllowed(method)
            return
        status, body = answer(*request["groups"])
        text = json.dumps(body)
        if status == 200:
            output.AnswerBuffer(text.encode(), "application/json")
        else:
            output.SetHttpHeader("Content-Type", "application/json")
            output.SendHttpStatus(status, text, len(text.encode()))

    return callback


def all_series() -> tuple[int, Any]:
    """``GET /hope/series``."""
    return 200, SERVICE.series_list()


def one_series(series_uid: str) -> tuple[int, Any]:
    """``GET /hope/series/<SeriesInstanceUID>``; 404 for a series the plugin has not validated."""
    detail = SERVICE.series_detail(series_uid)
    if detail is None:
        return 404, {"error": f"series {series_uid} is unknown to HOPE's plugin (not stored, or not stable yet)"}
    return 200, detail


def outbox() -> tuple[int, Any]:
    """``GET /hope/outbox``."""
    return 200, SERVICE.outbox_status()


def retry(event_id: str) -> tuple[int, Any]:
    """``POST /hope/outbox/<event id>/retry``; 409 unless the event was rejected."""
    if SERVICE.retry_event(event_id):
        return 200, {"id": event_id, "status": "pending"}
    return 409, {"error": f"event {event_id} is not a rejected event of the outbox: only rejected events are retried"}


SERVICE = PluginService(
    PluginConfig.from_section(json.loads(orthanc.GetConfiguration()).get("Hope")),
    rest_get=rest_get,
    log=OrthancLog(),
    annotate=store_validation,
    rest_post=rest_post,
    rest_delete=rest_delete,
)
orthanc.RegisterOnChangeCallback(on_change)
orthanc.RegisterRestCallback("/hope/series", json_route(all_series))
orthanc.RegisterRestCallback("/hope/series/(.+)", json_route(one_series))
orthanc.RegisterRestCallback("/hope/outbox", json_route(outbox))
orthanc.RegisterRestCallback("/hope/outbox/(.+)/retry", json_route(retry, "POST"))
