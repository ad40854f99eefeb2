"""Admin REST routes: start training within bounds, its status with what became of the version a run kept, list
model versions with their promotion decisions, pin or roll back, plot progress."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Response
from monailabel.utils.async_tasks.task import AsyncTask
from monailabel.utils.async_tasks.utils import tasks as train_tasks
from pydantic import BaseModel

from hope.api.identity import current_identity
from hope.audit import AuditAction, AuditLog
from hope.auth.identity import Identity, recorded_user
from hope.config import TaskDefinition
from hope.errors import BusyError, NotFoundError
from hope.fewshot.config import FewShotDefinition
from hope.models.plots import training_report_png
from hope.models.registry import RUN_KEY, ModelRegistry, ModelVersion
from hope.models.train_params import validate_train_params

SignedIn = Annotated[Identity, Depends(current_identity)]


class PinRequest(BaseModel):
    """Which version to serve."""

    version: str


def build_router(
    tasks: Mapping[str, TaskDefinition | FewShotDefinition],
    registries: Mapping[str, ModelRegistry],
    published_config: Callable[[str], Mapping[str, Any]],
    audit: AuditLog,
) -> APIRouter:
    """Routes bound to the app's tasks, their model registries, and the trainer configs published in ``/info/``;
    every training start, pin and unpin is recorded in ``audit`` with who did it."""
    router = APIRouter(tags=["HOPE admin"])

    def registry(task: str) -> ModelRegistry:
        if task not in registries:
            raise NotFoundError(f"no task named {task!r}; tasks: {', '.join(sorted(registries))}")
        return registries[task]

    def kept(run: dict[str, Any]) -> dict[str, Any] | None:
        """The version a training run kept, its promotion decision and whether it serves; ``None`` until it kept
        one (or for a run not started through ``POST /train/{model}``)."""
        request = run.get("request") or {}
        reg, tag = registries.get(str(request.get("model"))), request.get(RUN_KEY)
        version = next((v for v in reg.versions() if v.run == tag), None) if reg is not None and tag else None
        if version is None:
            return None
        return {"version": version.version, "serving": version.version == reg.served_version(),
                "promotion": asdict(version.promotion) if version.promotion is not None else None}

    def listed(reg: ModelRegistry, version: ModelVersion) -> dict[str, Any]:
        return {**asdict(version), "score": version.score, "promoted": version.promoted,
                "servable": reg.servable(version)}

    @router.post("/train/{model}", summary="Start training a task, with parameters within the task's bounds")
    def start_training(
        model: str,
        identity: SignedIn,
        params: dict[str, Any] | None = None,
        enqueue: bool = False,
        x_hope_user: Annotated[str | None, Header(description="who starts it (loopback demo only)")] = None,
    ) -> dict[str, Any]:
        registry(model)
        clean = validate_train_params(tasks[model], params, published_config(model))
        active = [t for t in train_tasks("train") if t["status"] in ("SUBMITTED", "RUNNING")]
        if active and not enqueue:
            raise BusyError(
                f"training of {active[0]['request'].get('model')} is already {active[0]['status'].lower()} (task "
                f"{active[0]['id']}); wait for it (GET /train/), stop it (DELETE /train/), or repeat with "
                "?enqueue=true to queue this one"
            )
        started_by = recorded_user(identity, x_hope_user)
        request = {"model": model, "started_by": started_by, RUN_KEY: uuid.uuid4().hex}
        result, detail = AsyncTask.run("train", request=request, params=clean, enqueue=True)
        audit.record(started_by, identity.verified, AuditAction.TRAINING_STARTED,
                     detail={"task": model, "params": clean, "run": (result or {}).get("id")})
        return result

    @router.get("/train/", summary="Status of the latest training run (all=true: of every run), with the version "
                "it kept and the decision on whether that version serves")
    def training_status(all_runs: Annotated[bool, Query(alias="all")] = False,
                        check_if_running: bool = False) -> Any:
        found, detail = AsyncTask.status("train", all_runs, check_if_running)
        if found is None:
            raise NotFoundError(detail)
        if isinstance(found, list):
            return [{**run, "model_version": kept(run)} for run in found]
        return {**found, "model_version": kept(found)}

    @router.get("/hope/models/{task}/versions", summary="Kept model versions, their promotion decisions and which "
                "one serves")
    def list_versions(task: str) -> dict[str, Any]:
        reg = registry(task)
        return {
            "task": task,
            "serving": reg.served_version(),
            "pinned": reg.pinned(),
            "profile": reg.stamp.name if reg.stamp else None,
            "versions": [listed(reg, v) for v in reg.versions()],
        }

    @router.put("/hope/models/{task}/pin", summary="Serve a kept version (pin or roll back)")
    def pin(task: str, request: PinRequest, identity: SignedIn) -> dict[str, Any]:
        reg = registry(task)
        reg.pin(request.version)
        audit.record(identity.user, identity.verified, AuditAction.VERSION_PINNED,
                     detail={"task": task, "version": request.version})
        return {"task": task, "serving": reg.served_version(), "pinned": reg.pinned()}

    @router.delete("/hope/models/{task}/pin", summary="Unpin: the best version serves again")
    def unpin(task: str, identity: SignedIn) -> dict[str, Any]:
        reg = registry(task)
        reg.unpin()
        audit.record(identity.user, identity.verified, AuditAction.VERSION_PINNED,
                     detail={"task": task, "version": None, "serving": reg.served_version()})
        return {"task": task, "serving": reg.served_version(), "pinned": reg.pinned()}

    @router.get("/hope/models/{task}/plot.png", summary="Training curves and Dice per version, as PNG")
    def plot(task: str) -> Response:
        reg = registry(task)
        stats = Path(reg.root.parent) / "train_stats.json"
        history = json.loads(stats.read_text()).get("history", []) if stats.exists() else []
        return Response(training_report_png(task, history, reg.versions()), media_type="image/png")

    return router
