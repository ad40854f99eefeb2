"""A precomputed suggestion survives a HOPE restart: the first request after it is answered from the suggestion.

Its own Orthanc (without HOPE's plugin: the store event is posted by hand, signed as the plugin would) and its own
HOPE server, started twice on the same data folder.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from hope.demo import store_phantom
from hope.phantoms import generate_neck_ct
from hope.processes.hope_server import hope_server_process
from hope.processes.orthanc import OrthancSettings, orthanc_process
from hope.processes.process import ManagedProcess, free_port
from hope.sync.signing import EventKey

from ..conftest import config_dir_with
from .helpers import poll, post_event

pytestmark = pytest.mark.slow


@dataclass
class Restartable:
    """An Orthanc, and the port, data folder and configuration HOPE is started with each time."""

    orthanc: OrthancSettings
    port: int
    data_dir: Path
    config_dir: Path
    tmp_dir: Path  # the server's TMPDIR
    server: ManagedProcess | None = None

    @property
    def url(self) -> str:
        """HOPE's root URL (the same across restarts)."""
        return f"http://127.0.0.1:{self.port}"

    def start_hope(self) -> None:
        """Start HOPE; a previous server must have been stopped."""
        env = {"HOPE_CONFIG_DIR": str(self.config_dir), "TMPDIR": str(self.tmp_dir)}
        self.server = hope_server_process(self.orthanc, self.port, self.data_dir, env)
        self.server.start(timeout=300)

    def stop_hope(self) -> None:
        """Stop HOPE (SIGTERM, as a service manager does)."""
        if self.server is not None:
            self.server.stop()


@pytest.fixture
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Restartable]:
    tmp = tmp_path_factory.mktemp("restart")
    orthanc = OrthancSettings(data_dir=tmp / "orthanc", http_port=free_port(), dicom_port=free_port(), stable_age=1)
    orthanc_proc = orthanc_process(orthanc)
    orthanc_proc.start(timeout=60)
    configs = config_dir_with(tmp, activelearning={"background_scoring": False}, retrain={"enabled": False})
    (tmp / "hope-tmp").mkdir()
    s = Restartable(orthanc, free_port(), tmp / "hope", configs, tmp / "hope-tmp")
    try:
        yield s
    finally:
        s.stop_hope()
        orthanc_proc.stop()


def _suggestion_version(url: str, uid: str) -> str | None:
    return requests.get(f"{url}/hope/state", timeout=30).json()["series"].get(uid, {}).get("suggestion_model_version")


def test_a_precomputed_suggestion_is_served_at_once_after_a_restart(
    stack: Restartable, spine_labels: dict[str, int]
) -> None:
    stored = store_phantom(stack.orthanc.url, generate_neck_ct(41, spine_labels), patient_id="RESTART-41",
                           auth=stack.orthanc.auth)
    uid = stored.series_uid
    stack.start_hope()
    event = {"id": f"series_stable:{uid}", "type": "series_stable", "series_uid": uid,
             "study_uid": stored.study_uid, "modality": "CT"}
    key = EventKey.load(stack.orthanc.event_key_file)
    answer = post_event(stack.url, event, key).json()
    assert answer["actions"] == ["suggestion queued for spine_ct"]
    version = poll(lambda: _suggestion_version(stack.url, uid), 120, "the precomputed suggestion")
    stack.stop_hope()

    stack.start_hope()
    response = requests.post(f"{stack.url}/infer/spine_ct", params={"image": uid, "output": "json"}, timeout=60)
    assert response.status_code == 200, response.text
    params = response.json()
    assert params.get("precomputed") is True, params
    assert params["model_version"] == version
    assert _suggestion_version(stack.url, uid) == version
    # the same event again (the plugin redelivers after a restart) is still a duplicate: nothing is recomputed
    assert post_event(stack.url, event, key).json()["duplicate"] is True


def test_starts_leave_nothing_in_the_temporary_folder(stack: Restartable) -> None:
    """MONAI Label given no logging configuration copies one to a new temporary file at every start; HOPE gives it
    one in the data folder, whose log file is in the data folder too (not in the repository's app folder)."""
    for _ in range(2):
        stack.start_hope()
        assert requests.get(f"{stack.url}/info/", timeout=30).status_code == 200
        stack.stop_hope()
    assert sorted(p.name for p in stack.tmp_dir.iterdir()) == []
    assert (stack.data_dir / "logs" / "app.log").stat().st_size > 0
