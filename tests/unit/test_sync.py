"""HOPE's side of the store sync against fakes: the sync service, suggestions, retraining and the event log.

No server and no Orthanc: the datastore, the model versions, inference and training are small fakes, and the
background worker is waited for by polling with a deadline.
"""

from __future__ import annotations

import dataclasses
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from hope.api.sync import build_router
from hope.audit import AuditLog
from hope.config import TaskDefinition, load_task
from hope.sync.eventlog import EventLog
from hope.sync.retrain import RetrainTrigger
from hope.sync.service import SyncService
from hope.sync.signing import MAX_SKEW_SECONDS, EventKey
from hope.sync.suggestions import Suggestion, SuggestionCache

from .conftest import demo_app

CT_UID = "1.2.826.0.1.3680043.8.498.10"
#: The key the events route of :func:`_app` checks signatures with.
ROUTE_KEY = EventKey(b"route key, 32 bytes at the least")
MR_UID = "1.2.826.0.1.3680043.8.498.11"


def wait_for(predicate: Callable[[], Any], what: str, timeout: float = 10.0) -> Any:
    """Poll ``predicate`` until it is truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.01)
    return result


def ready_suggestion(cache: SuggestionCache, task: str, series_uid: str) -> Suggestion:
    """Wait until ``cache`` serves a suggestion of ``task`` on ``series_uid`` and has no work queued for the series."""

    def ready() -> Suggestion | None:
        found = cache.get(task, series_uid)
        return found if found and "pending" not in cache.state().get(series_uid, {}) else None

    return wait_for(ready, f"the {task} suggestion on {series_uid}")


class FakeInfer:
    """Writes a small label file per call (content names task, series and call number); can fail or hold."""

    def __init__(self, out_dir: Path) -> None:
        self.out_dir = out_dir
        out_dir.mkdir(parents=True, exist_ok=True)
        self.calls: list[tuple[str, str]] = []
        self.fail_with: Exception | None = None
        self.release = threading.Event()
        self.release.set()

    def __call__(self, task: str, series_uid: str) -> str:
        self.release.wait(timeout=10)
        self.calls.append((task, series_uid))
        if self.fail_with is not None:
            raise self.fail_with
        path = self.out_dir / f"result{len(self.calls)}.nii.gz"
        path.write_text(f"{task}|{series_uid}|{len(self.calls)}")
        return str(path)


class Versions:
    """The served model version per task, changed by the test."""

    def __init__(self, **versions: str | None) -> None:
        self.current: dict[str, str | None] = dict(versions)

    def __call__(self, task: str) -> str | None:
        return self.current.get(task)


class FakeDatastore:
    """The part of :class:`~hope.datastore.orthanc.OrthancDatastore` the sync service uses."""

    def __init__(self, images: list[str], finals: list[str] | None = None,
                 modalities: dict[str, str] | None = None) -> None:
        self.images = images
        self.finals = finals or []
        self.modalities = modalities or {}
        self.flagged: dict[str, list[str]] = {}
        self.invalidations = 0

    def invalidate(self) -> None:
        self.invalidations += 1

    def refresh_series(self, series_uid: str) -> None:
        self.invalidations += 1

    def flag(self, series_uid: str, reasons: list[str]) -> None:
        self.flagged[series_uid] = list(reasons)

    def list_images(self) -> list[str]:
        return [uid for uid in self.images if uid not in self.flagged]

    def final_labels(self) -> dict[str, object]:
        return {uid: object() for uid in self.finals}

    def modality(self, series_uid: str) -> str | None:
        return self.modalities.get(series_uid)


class Recorder:
    """A callable that records its calls and returns a fixed answer."""

    def __init__(self, answer: Any = None) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.answer = answer

    def __call__(self, *args: Any) -> Any:
        self.calls.append(args)
        return self.answer


# --------------------------------------------------------------------------------------------- suggestion cache
@pytest.fixture
def infer(tmp_path: Path) -> FakeInfer:
    return FakeInfer(tmp_path / "infer-out")


@pytest.fixture
def versions() -> Versions:
    return Versions(spine_ct="v0001")


def _cache(tmp_path: Path, infer: FakeInfer, versions: Versions) -> SuggestionCache:
    return SuggestionCache(tmp_path / "suggestions", infer, versions)


def test_a_requested_suggestion_is_computed_and_served(tmp_path: Path, infer: FakeInfer, versions: Versions) -> None:
    cache = _cache(tmp_path, infer, versions)
    assert cache.get("spine_ct", CT_UID) is None
    cache.request("spine_ct", CT_UID)
    ready = ready_suggestion(cache, "spine_ct", CT_UID)
    assert (ready.task, ready.series_uid, ready.model_version) == ("spine_ct", CT_UID, "v0001")
    assert ready.path == tmp_path / "suggestions" / "spine_ct" / f"{CT_UID}.v0001.nii.gz"
    assert ready.path.read_text() == f"spine_ct|{CT_UID}|1"
    assert list(infer.out_dir.iterdir()) == []  # the produced file was moved, not copied
    assert cache.state() == {CT_UID: {"suggestions": {"spine_ct": {"model_version": "v0001", "current": True}}}}


def test_a_ready_or_queued_suggestion_is_not_computed_again(
    tmp_path: Path, infer: FakeInfer, versions: Versions
) -> None:
    cache = _cache(tmp_path, infer, versions)
    infer.release.clear()
    cache.request("spine_ct", CT_UID)
    cache.request("spine_ct", CT_UID)
    assert cache.state()[CT_UID]["pending"] == {"spine_ct": "v0001"}
    infer.release.set()
    ready_suggestion(cache, "spine_ct", CT_UID)
    cache.request("spine_ct", CT_UID)
    wait_for(lambda: "pending" not in cache.state()[CT_UID], "the queue to drain")
    assert infer.calls == [("spine_ct", CT_UID)]


def test_a_task_without_a_served_model_gets_no_suggestion(
    tmp_path: Path, infer: FakeInfer, versions: Versions
) -> None:
    cache = _cache(tmp_path, infer, versions)
    cache.request("unserved", CT_UID)
    assert cache.state() == {}
    assert infer.calls == []


def test_copy_of_is_a_private_copy(tmp_path: Path, infer: FakeInfer, versions: Versions) -> None:
    cache = _cache(tmp_path, infer, versions)
    assert cache.copy_of("spine_ct", CT_UID) is None
    cache.request("spine_ct", CT_UID)
    ready = ready_suggestion(cache, "spine_ct", CT_UID)
    copy = cache.copy_of("spine_ct", CT_UID)
    assert copy is not None and copy != ready.path
    assert copy.name.endswith(".nii.gz")
    assert copy.read_bytes() == ready.path.read_bytes()
    copy.unlink()
    assert ready.path.exists()


def test_a_new_model_version_stops_serving_and_refresh_recomputes(
    tmp_path: Path, infer: FakeInfer, versions: Versions
) -> None:
    cache = _cache(tmp_path, infer, versions)
    cache.request("spine_ct", CT_UID)
    old = ready_suggestion(cache, "spine_ct", CT_UID)
    versions.current["spine_ct"] = "v0002"
    assert cache.get("spine_ct", CT_UID) is None
    assert cache.copy_of("spine_ct", CT_UID) is None
    assert cache.state()[CT_UID]["suggestions"]["spine_ct"] == {"model_version": "v0001", "current": False}
    assert cache.refresh_stale() == 1
    new = ready_suggestion(cache, "spine_ct", CT_UID)
    assert new.model_version == "v0002"
    assert new.path.read_text() == f"spine_ct|{CT_UID}|2"
    assert not old.path.exists()
    assert cache.refresh_stale() == 0


def test_a_failure_is_recorded_and_cleared_by_a_later_success(
    tmp_path: Path, infer: FakeInfer, versions: Versions
) -> None:
    cache = _cache(tmp_path, infer, versions)
    infer.fail_with = RuntimeError("no GPU memory")
    cache.request("spine_ct", CT_UID)
    done = wait_for(lambda: (s := cache.state().get(CT_UID, {})) and "pending" not in s and s, "the failure")
    failures = done.get("failures")
    assert failures == {"spine_ct": "RuntimeError: no GPU memory"}
    assert cache.get("spine_ct", CT_UID) is None
    infer.fail_with = None
    cache.request("spine_ct", CT_UID)  # a failed suggestion may be asked for again
    ready_suggestion(cache, "spine_ct", CT_UID)
    assert "failures" not in cache.state()[CT_UID]


def test_suggestions_survive_a_new_instance(tmp_path: Path, infer: FakeInfer, versions: Versions) -> None:
    """After a restart the ready suggestion is served at once, without computing it again."""
    cache = _cache(tmp_path, infer, versions)
    cache.request("spine_ct", CT_UID)
    ready = ready_suggestion(cache, "spine_ct", CT_UID)

    again = _cache(tmp_path, infer, versions)
    assert again.get("spine_ct", CT_UID) == ready
    copy = again.copy_of("spine_ct", CT_UID)
    assert copy is not None and copy.read_text() == f"spine_ct|{CT_UID}|1"
    again.request("spine_ct", CT_UID)
    assert again.state() == cache.state()
    assert infer.calls == [("spine_ct", CT_UID)]


def test_a_suggestion_of_an_old_model_is_loaded_but_not_served_until_refreshed(
    tmp_path: Path, infer: FakeInfer, versions: Versions
) -> None:
    cache = _cache(tmp_path, infer, versions)
    cache.request("spine_ct", CT_UID)
    old = ready_suggestion(cache, "spine_ct", CT_UID)

    versions.current["spine_ct"] = "v0002"  # published while HOPE was down
    again = _cache(tmp_path, infer, versions)
    assert again.get("spine_ct", CT_UID) is None
    assert again.state()[CT_UID]["suggestions"]["spine_ct"] == {"model_version": "v0001", "current": False}
    assert again.refresh_stale() == 1
    new = ready_suggestion(again, "spine_ct", CT_UID)
    assert new.model_version == "v0002"
    assert not old.path.exists()
    assert _cache(tmp_path, infer, versions).get("spine_ct", CT_UID) == new


def test_files_the_index_does_not_list_are_deleted_at_start(
    tmp_path: Path, infer: FakeInfer, versions: Versions
) -> None:
    """An older version of the same series, a leftover temporary file and a file from before the index go."""
    cache = _cache(tmp_path, infer, versions)
    cache.request("spine_ct", CT_UID)
    ready = ready_suggestion(cache, "spine_ct", CT_UID)
    task_dir = ready.path.parent
    orphans = [
        task_dir / f"{CT_UID}.v0000.nii.gz",
        task_dir / f".{CT_UID}.v0001.nii.gz.0123456789ab.tmp",
        tmp_path / "suggestions" / "other_task" / f"{MR_UID}.v0007.nii.gz",
    ]
    for path in orphans:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("orphan")

    again = _cache(tmp_path, infer, versions)
    assert [p for p in orphans if p.exists()] == []
    assert ready.path.exists()
    assert again.get("spine_ct", CT_UID) == ready


def test_an_indexed_file_that_is_gone_is_forgotten(tmp_path: Path, infer: FakeInfer, versions: Versions) -> None:
    cache = _cache(tmp_path, infer, versions)
    cache.request("spine_ct", CT_UID)
    ready_suggestion(cache, "spine_ct", CT_UID).path.unlink()
    again = _cache(tmp_path, infer, versions)
    assert again.get("spine_ct", CT_UID) is None
    assert again.state() == {}
    again.request("spine_ct", CT_UID)
    ready_suggestion(again, "spine_ct", CT_UID)
    assert len(infer.calls) == 2


def test_the_index_names_task_series_and_version_without_parsing_file_names(
    tmp_path: Path, infer: FakeInfer
) -> None:
    """Series UIDs and version strings with dots cannot be confused, whatever the file name looks like."""
    versions = Versions(spine_ct="v1.2")
    cache = _cache(tmp_path, infer, versions)
    cache.request("spine_ct", CT_UID)
    ready_suggestion(cache, "spine_ct", CT_UID)
    index = json.loads((tmp_path / "suggestions" / "index.json").read_text())
    made = index["suggestions"][0].pop("made")
    assert index["suggestions"] == [
        {"task": "spine_ct", "series_uid": CT_UID, "model_version": "v1.2",
         "file": f"spine_ct/{CT_UID}.v1.2.nii.gz"}
    ]
    found = _cache(tmp_path, infer, versions).get("spine_ct", CT_UID)
    assert found is not None and (found.series_uid, found.model_version) == (CT_UID, "v1.2")
    assert isinstance(made, float) and found.made == made, "when the suggestion was ready is kept (time to final)"


def test_refresh_does_not_count_suggestions_of_a_task_no_longer_served(
    tmp_path: Path, infer: FakeInfer, versions: Versions
) -> None:
    cache = _cache(tmp_path, infer, versions)
    cache.request("spine_ct", CT_UID)
    ready_suggestion(cache, "spine_ct", CT_UID)
    versions.current.pop("spine_ct")
    again = _cache(tmp_path, infer, versions)
    assert again.refresh_stale() == 0
    assert again.get("spine_ct", CT_UID) is None


# ------------------------------------------------------------------------------------------------ retrain trigger
def test_a_threshold_below_one_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="at least 1"):
        RetrainTrigger(tmp_path / "retrain.json", 0, True, Recorder())


def test_training_starts_when_the_count_reaches_the_threshold(tmp_path: Path) -> None:
    start = Recorder("training task 7 submitted")
    trigger = RetrainTrigger(tmp_path / "retrain.json", 3, True, start)
    assert [trigger.new_final_label("spine_ct") for _ in range(3)] == [False, False, True]
    assert start.calls == [("spine_ct",)]
    assert trigger.state() == {
        "enabled": True,
        "after_new_final_labels": 3,
        "counted": {"spine_ct": 0},
        "last_trigger": {"spine_ct": "training task 7 submitted"},
    }
    assert trigger.new_final_label("spine_ct") is False
    assert trigger.state()["counted"] == {"spine_ct": 1}


def test_switched_off_it_counts_but_never_starts(tmp_path: Path) -> None:
    start = Recorder("started")
    trigger = RetrainTrigger(tmp_path / "retrain.json", 2, False, start)
    assert not any(trigger.new_final_label("spine_ct") for _ in range(5))
    assert start.calls == []
    assert trigger.state()["counted"] == {"spine_ct": 5}
    trigger.set_enabled(True)
    assert trigger.new_final_label("spine_ct") is True
    assert start.calls == [("spine_ct",)]


def test_counts_and_switch_survive_a_new_instance(tmp_path: Path) -> None:
    path = tmp_path / "sync" / "retrain.json"
    trigger = RetrainTrigger(path, 5, True, Recorder())
    trigger.new_final_label("spine_ct")
    trigger.new_final_label("spine_ct")
    trigger.set_enabled(False)

    again = RetrainTrigger(path, 5, True, Recorder())  # the configured default no longer decides
    assert again.enabled is False
    assert again.state()["counted"] == {"spine_ct": 2}
    again.set_enabled(True)
    assert RetrainTrigger(path, 5, False, Recorder()).enabled is True


def test_a_state_file_with_counts_only_is_still_read(tmp_path: Path) -> None:
    """Files written before the switch was kept hold ``{task: count}``; the configured default applies."""
    path = tmp_path / "retrain.json"
    path.write_text(json.dumps({"spine_ct": 4}))
    start = Recorder("started")
    trigger = RetrainTrigger(path, 5, False, start)
    assert trigger.enabled is False
    assert trigger.state()["counted"] == {"spine_ct": 4}
    trigger.set_enabled(True)
    assert trigger.new_final_label("spine_ct") is True
    assert json.loads(path.read_text()) == {"enabled": True, "counts": {"spine_ct": 0}}


def test_put_retrain_switches_and_keeps_the_switch(tmp_path: Path, infer: FakeInfer, versions: Versions) -> None:
    service = _service(tmp_path, FakeDatastore([]), infer, versions, retrain_enabled=True)
    client = TestClient(_app(service))
    answer = client.put("/hope/retrain", json={"enabled": False})
    assert answer.status_code == 200
    assert answer.json()["enabled"] is False
    assert json.loads((tmp_path / "state" / "retrain.json").read_text())["enabled"] is False
    restarted = _service(tmp_path, FakeDatastore([]), infer, versions, retrain_enabled=True)
    assert restarted.retrain.enabled is False


# ------------------------------------------------------------------------------------------------------ event log
def test_an_event_is_new_once_even_across_instances(tmp_path: Path) -> None:
    path = tmp_path / "sync" / "events.sqlite"
    log = EventLog(path)
    assert log.first_time("series_stable:1.2.3", "series_stable") is True
    assert log.first_time("series_stable:1.2.3", "series_stable") is False
    assert log.first_time("seg_stored:1.2.4", "seg_stored") is True
    again = EventLog(path)
    assert again.first_time("series_stable:1.2.3", "series_stable") is False
    assert again.first_time("series_stable:1.2.3:repeat", "series_stable") is True


def test_concurrent_deliveries_of_one_event_count_once(tmp_path: Path) -> None:
    log = EventLog(tmp_path / "events.sqlite")
    answers: list[bool] = []
    threads = [threading.Thread(target=lambda: answers.append(log.first_time("e1", "seg_stored"))) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(answers) == [False] * 7 + [True]


# --------------------------------------------------------------------------------------------------- sync service
@pytest.fixture(scope="module")
def spine_ct() -> TaskDefinition:
    return load_task("spine_ct")


def _tasks(spine_ct: TaskDefinition) -> dict[str, TaskDefinition]:
    """Two CT tasks and one MR task (copies of ``spine_ct`` under other names)."""
    return {
        "spine_ct": spine_ct,
        "spine_ct_b": dataclasses.replace(spine_ct, name="spine_ct_b"),
        "spine_mr": dataclasses.replace(spine_ct, name="spine_mr", modalities=("MR",)),
    }


def _service(
    tmp_path: Path,
    datastore: FakeDatastore,
    infer: FakeInfer,
    versions: Versions,
    *,
    tasks: dict[str, TaskDefinition] | None = None,
    start_training: Recorder | None = None,
    on_change: Recorder | None = None,
    retrain_enabled: bool = True,
    threshold: int = 2,
    poll: float = 60.0,
) -> SyncService:
    return SyncService(
        datastore=datastore,  # type: ignore[arg-type]  # a fake with the methods the service uses
        tasks=tasks if tasks is not None else {},
        versions=versions,
        state_dir=tmp_path / "state",
        infer=infer,
        start_training=start_training or Recorder("started"),
        retrain_threshold=threshold,
        retrain_enabled=retrain_enabled,
        model_poll_seconds=poll,
        on_change=on_change or Recorder(),
    )


def _app(service: SyncService) -> FastAPI:
    app = demo_app()
    app.include_router(build_router(service, ROUTE_KEY, AuditLog(service.suggestions.folder.parent / "audit.sqlite")))
    return app


def _stable(uid: str, modality: str = "CT", **extra: Any) -> dict[str, Any]:
    return {"id": f"series_stable:{uid}", "type": "series_stable", "series_uid": uid, "modality": modality,
            "valid": True, "reasons": [], **extra}


def _seg(uid: str, labels: list[str] | None, referenced: str | None = None) -> dict[str, Any]:
    return {"id": f"seg_stored:{uid}", "type": "seg_stored", "series_uid": uid, "modality": "SEG",
            "segment_labels": labels, "referenced_series_uid": referenced}


@pytest.fixture
def all_versions() -> Versions:
    return Versions(spine_ct="v0001", spine_ct_b="v0003", spine_mr="v0002")


def test_a_valid_series_gets_a_suggestion_per_task_of_its_modality(
    tmp_path: Path, spine_ct: TaskDefinition, infer: FakeInfer, all_versions: Versions
) -> None:
    datastore, on_change = FakeDatastore([CT_UID]), Recorder()
    service = _service(tmp_path, datastore, infer, all_versions, tasks=_tasks(spine_ct), on_change=on_change)
    answer = service.handle(_stable(CT_UID, modality="ct"))
    assert answer == {
        "accepted": True,
        "duplicate": False,
        "actions": ["suggestion queued for spine_ct", "suggestion queued for spine_ct_b"],
    }
    assert datastore.invalidations == 1
    assert len(on_change.calls) == 1
    ready_suggestion(service.suggestions, "spine_ct", CT_UID)
    ready_suggestion(service.suggestions, "spine_ct_b", CT_UID)
    assert sorted(infer.calls) == [("spine_ct", CT_UID), ("spine_ct_b", CT_UID)]
    assert service.tasks_for("MR") == ["spine_mr"]


def test_a_repeated_event_id_has_no_further_effect(
    tmp_path: Path, spine_ct: TaskDefinition, infer: FakeInfer, all_versions: Versions
) -> None:
    datastore, on_change = FakeDatastore([MR_UID]), Recorder()
    service = _service(tmp_path, datastore, infer, all_versions, tasks=_tasks(spine_ct), on_change=on_change)
    first = service.handle(_stable(MR_UID, modality="MR"))
    assert first["actions"] == ["suggestion queued for spine_mr"]
    ready_suggestion(service.suggestions, "spine_mr", MR_UID)
    again = _service(tmp_path, datastore, infer, all_versions, tasks=_tasks(spine_ct), on_change=on_change)
    for svc in (service, again):  # the same service, and one restarted on the same state folder
        assert svc.handle(_stable(MR_UID, modality="MR")) == {"accepted": True, "duplicate": True}
    assert datastore.invalidations == 1
    assert len(on_change.calls) == 1
    assert infer.calls == [("spine_mr", MR_UID)]


def test_an_invalid_series_is_flagged_and_gets_no_suggestion(
    tmp_path: Path, spine_ct: TaskDefinition, infer: FakeInfer, all_versions: Versions
) -> None:
    datastore, on_change = FakeDatastore([CT_UID]), Recorder()
    service = _service(tmp_path, datastore, infer, all_versions, tasks=_tasks(spine_ct), on_change=on_change)
    reasons = ["only 2 slices", "duplicate ImagePositionPatient at slices 0 and 1"]
    answer = service.handle(_stable(CT_UID, valid=False, reasons=reasons))
    assert answer["actions"] == [f"flagged: {reasons[0]}; {reasons[1]}"]
    assert datastore.flagged == {CT_UID: reasons}
    assert on_change.calls == []
    assert service.suggestions.state() == {}
    assert service.state()["series"] == {CT_UID: {"final": False, "suggestion_model_version": None, "flags": reasons}}


def test_a_seg_counts_only_for_tasks_that_train_on_it(
    tmp_path: Path, spine_ct: TaskDefinition, infer: FakeInfer, all_versions: Versions
) -> None:
    start, on_change = Recorder("started"), Recorder()
    tasks = {"spine_ct": spine_ct, "spine_mr": dataclasses.replace(spine_ct, name="spine_mr", modalities=("MR",))}
    service = _service(tmp_path, FakeDatastore([]), infer, all_versions, tasks=tasks, start_training=start,
                       on_change=on_change, threshold=2)

    lesion_only = service.handle(_seg("1.2.3.901", ["tumor"]))
    assert lesion_only["actions"] == [
        "not counted for spine_ct: it does not train on a SEG of ['tumor']",
        "not counted for spine_mr: it does not train on a SEG of ['tumor']",
    ]
    assert service.retrain.state()["counted"] == {}

    assert service.handle(_seg("1.2.3.902", ["C2", "tumor"]))["actions"] == []
    assert service.retrain.state()["counted"] == {"spine_ct": 1, "spine_mr": 1}

    unknown_segments = service.handle(_seg("1.2.3.903", None))  # a SEG whose labels the plugin could not read
    assert unknown_segments["actions"] == ["retraining spine_ct", "retraining spine_mr"]
    assert start.calls == [("spine_ct",), ("spine_mr",)]
    assert service.retrain.state()["counted"] == {"spine_ct": 0, "spine_mr": 0}
    assert len(on_change.calls) == 3


def test_state_merges_listing_finals_suggestions_and_flags(
    tmp_path: Path, spine_ct: TaskDefinition, infer: FakeInfer, all_versions: Versions
) -> None:
    datastore = FakeDatastore([CT_UID, MR_UID], finals=[MR_UID])
    service = _service(tmp_path, datastore, infer, all_versions, tasks={"spine_ct": spine_ct})
    service.handle(_stable(CT_UID))
    ready_suggestion(service.suggestions, "spine_ct", CT_UID)
    service.handle(_stable("9.9.9", valid=False, reasons=["no pixel data"]))

    state = service.state()
    assert state["model_versions"] == {"spine_ct": "v0001"}
    assert state["retrain"]["enabled"] is True
    assert state["series"] == {
        CT_UID: {
            "final": False,
            "suggestion_model_version": "v0001",
            "suggestions": {"spine_ct": {"model_version": "v0001", "current": True}},
        },
        MR_UID: {"final": True, "suggestion_model_version": None},
        "9.9.9": {"final": False, "suggestion_model_version": None, "flags": ["no pixel data"]},
    }
    all_versions.current["spine_ct"] = "v0002"
    assert service.state()["series"][CT_UID]["suggestion_model_version"] is None


def test_after_a_restart_suggestions_of_a_replaced_model_are_recomputed_at_start(
    tmp_path: Path, spine_ct: TaskDefinition, infer: FakeInfer, all_versions: Versions
) -> None:
    """A model published while HOPE was down is no change the watcher sees; ``start`` refreshes what was loaded."""
    tasks = {"spine_ct": spine_ct}
    service = _service(tmp_path, FakeDatastore([CT_UID]), infer, all_versions, tasks=tasks)
    service.handle(_stable(CT_UID))
    ready_suggestion(service.suggestions, "spine_ct", CT_UID)

    all_versions.current["spine_ct"] = "v0002"
    restarted = _service(tmp_path, FakeDatastore([CT_UID]), infer, all_versions, tasks=tasks)
    restarted.start()
    ready = ready_suggestion(restarted.suggestions, "spine_ct", CT_UID)
    assert ready.model_version == "v0002"
    assert len(infer.calls) == 2


def test_the_watcher_refreshes_stale_suggestions_and_reports_a_change(
    tmp_path: Path, spine_ct: TaskDefinition, infer: FakeInfer, all_versions: Versions
) -> None:
    on_change = Recorder()
    service = _service(tmp_path, FakeDatastore([CT_UID]), infer, all_versions, tasks={"spine_ct": spine_ct},
                       on_change=on_change, poll=0.05)
    service.handle(_stable(CT_UID))
    ready_suggestion(service.suggestions, "spine_ct", CT_UID)
    service.start()
    calls_before = len(on_change.calls)
    all_versions.current["spine_ct"] = "v0002"
    ready = ready_suggestion(service.suggestions, "spine_ct", CT_UID)
    assert ready.model_version == "v0002"
    wait_for(lambda: len(on_change.calls) > calls_before, "on_change after the new model")


def test_version_of_a_task_not_served_is_none(
    tmp_path: Path, spine_ct: TaskDefinition, infer: FakeInfer, all_versions: Versions
) -> None:
    service = _service(tmp_path, FakeDatastore([]), infer, all_versions, tasks={"spine_ct": spine_ct})
    assert service.version("spine_ct") == "v0001"
    assert service.version("spine_mr") is None  # known to the version source, not served here


# ---------------------------------------------------------------------------------------------- the events route
def _post(client: TestClient, body: bytes, headers: dict[str, str]) -> Any:
    return client.post("/hope/events", content=body, headers={"Content-Type": "application/json", **headers})


def test_the_events_route_refuses_forged_events_and_nothing_changes(
    tmp_path: Path, spine_ct: TaskDefinition, infer: FakeInfer, all_versions: Versions
) -> None:
    """Unsigned, badly signed and stale events are 401 with the reason: no flag, no count, no training, no event id
    used up; the plugin's signed events are handled."""
    datastore, start, on_change = FakeDatastore([CT_UID]), Recorder("started"), Recorder()
    service = _service(tmp_path, datastore, infer, all_versions, tasks={"spine_ct": spine_ct},
                       start_training=start, on_change=on_change, threshold=2)
    client = TestClient(_app(service))
    forged_invalid = json.dumps(_stable(CT_UID, valid=False, reasons=["forged"])).encode()
    forged_segs = [json.dumps(_seg(f"1.2.3.91{i}", ["C2"])).encode() for i in range(3)]
    for body in [forged_invalid, *forged_segs]:
        attempts = {
            "unsigned event refused": {},
            "badly signed event refused": EventKey(b"an attacker's guess at the key!!").sign(body),
            "stale event refused": ROUTE_KEY.sign(body, now=time.time() - MAX_SKEW_SECONDS - 60),
        }
        signed_for_another_body = ROUTE_KEY.sign(b'{"id": "an event the plugin did send"}')
        for reason, headers in [*attempts.items(), ("badly signed event refused", signed_for_another_body)]:
            response = _post(client, body, headers)
            assert response.status_code == 401, response.text
            assert reason in response.json()["detail"]
    malformed = _post(client, b'{"type": "nonsense"}', {})
    assert malformed.status_code == 401  # refused before its body is checked
    assert datastore.flagged == {} and datastore.invalidations == 0
    assert service.retrain.state()["counted"] == {} and start.calls == [] and on_change.calls == []
    assert service.state()["series"] == {CT_UID: {"final": False, "suggestion_model_version": None}}

    genuine = json.dumps(_stable(CT_UID, valid=False, reasons=["duplicate positions"])).encode()
    answer = _post(client, genuine, ROUTE_KEY.sign(genuine))
    assert answer.status_code == 200 and answer.json()["duplicate"] is False  # the forged id was not used up
    assert datastore.flagged == {CT_UID: ["duplicate positions"]}
    signed_malformed = b'{"type": "nonsense"}'
    assert _post(client, signed_malformed, ROUTE_KEY.sign(signed_malformed)).status_code == 422


def test_with_review_on_an_approval_counts_towards_retraining_not_a_stored_seg(
    tmp_path: Path, spine_ct: TaskDefinition, infer: FakeInfer, all_versions: Versions
) -> None:
    start = Recorder("started")
    service = SyncService(
        datastore=FakeDatastore([]),  # type: ignore[arg-type]  # a fake with the methods the service uses
        tasks={"spine_ct": spine_ct}, versions=all_versions, state_dir=tmp_path / "state", infer=infer,
        start_training=start, retrain_threshold=2, retrain_enabled=True, model_poll_seconds=60.0,
        count_stored_labels=False,
    )
    submitted = service.handle(_seg("1.2.3.911", ["C2"]))
    assert submitted["actions"] == ["label review is on: the label counts once a reviewer approves it"]
    assert service.retrain.state()["counted"] == {}
    assert service.label_approved() == []
    assert service.label_approved() == ["retraining spine_ct"]
    assert start.calls == [("spine_ct",)]


def test_a_label_counts_only_for_the_tasks_of_its_series_modality(
    tmp_path: Path, spine_ct: TaskDefinition, infer: FakeInfer, all_versions: Versions
) -> None:
    """A CT label with vertebrae counts for spine_ct, not spine_mr, though spine_mr has vertebrae too; an approved MR
    label counts for spine_mr only."""
    tasks = {"spine_ct": spine_ct, "spine_mr": dataclasses.replace(spine_ct, name="spine_mr", modalities=("MR",))}
    datastore = FakeDatastore([CT_UID, MR_UID], modalities={CT_UID: "CT", MR_UID: "MR"})
    service = _service(tmp_path, datastore, infer, all_versions, tasks=tasks, threshold=5)
    answer = service.handle(_seg("1.2.3.904", ["C2", "C3"], referenced=CT_UID))
    assert answer["actions"] == ["not counted for spine_mr: it does not annotate CT"]
    assert service.retrain.state()["counted"] == {"spine_ct": 1}
    assert service.label_approved(MR_UID) == ["not counted for spine_ct: it does not annotate MR"]
    assert service.retrain.state()["counted"] == {"spine_ct": 1, "spine_mr": 1}
