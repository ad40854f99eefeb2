"""Faults of processes: a server killed during training, and services that crash under the launcher.

Regression tests of issue 12's "An orphaned training run": before the fix, a HOPE server killed with SIGKILL left
its training subprocess running, and that run published a new model version minutes later; and the launcher
stopped both services when one died, restarting neither.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import requests

from hope.config import REPO_ROOT
from hope.demo import store_phantom
from hope.phantoms import generate_neck_ct
from hope.processes.hope_server import hope_server_process
from hope.processes.orthanc import CREDENTIALS_FILE, OrthancCredentials, OrthancSettings, orthanc_process
from hope.processes.process import ManagedProcess, free_port, http_ok
from hope.server.lifetime import SERVER_PID_VARIABLE, TASK_MODULE
from tests.conftest import QUIET, config_dir_with
from tests.integration.helpers import nifti_bytes, poll, put_label, series_volume

pytestmark = pytest.mark.slow

EPOCH_LINE = re.compile(r"epoch\W*\d+/\d+", re.IGNORECASE)

TIMEOUT = 30
#: How long the training process may outlive its server.
DIES_WITHIN = 10.0
#: How long the models folder is watched for a version published after the server died.
WATCH_MODELS_FOR = 20.0
#: Background work off: nothing but the training run under test uses the two cores.
def _alive(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Those of ``procs`` that still run (a zombie no one has reaped yet counts as gone)."""
    alive = []
    for proc in procs:
        try:
            if proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE:
                alive.append(proc)
        except psutil.NoSuchProcess:
            pass
    return alive


def _kill_all(procs: list[psutil.Process]) -> None:
    for proc in _alive(procs):
        proc.kill()


def _training_process(server: psutil.Process) -> psutil.Process | None:
    """The server's training subprocess (``python -m monailabel.interfaces.utils.app -m train ...``), if any."""
    for child in server.children():
        try:
            cmdline = child.cmdline()
        except psutil.NoSuchProcess:
            continue
        if TASK_MODULE in cmdline and "train" in cmdline:
            return child
    return None


def _in_epochs(hope_url: str) -> bool:
    """Whether the running training task has logged an epoch (``Epoch: 1/200, Iter: ...``)."""
    details = requests.get(f"{hope_url}/train/", timeout=TIMEOUT).json().get("details") or []
    return any(EPOCH_LINE.search(line) for line in details)


def _save_final_label(hope_url: str, series_uid: str, label: bytes) -> requests.Response:
    """Save ``label``; while the answer is 409 (the series is not stable in Orthanc yet), try again, as it says."""
    deadline = time.monotonic() + 60
    while (response := put_label(hope_url, series_uid, label)).status_code == 409 and time.monotonic() < deadline:
        time.sleep(1.0)
    return response


def _versions(models: Path) -> set[str]:
    return {p.name for p in (models / "spine_ct" / "versions").glob("v*")}


@pytest.fixture
def own_orthanc(tmp_path: Path) -> Iterator[OrthancSettings]:
    """An Orthanc of this test's own: the stores of other tests are not touched."""
    settings = OrthancSettings(data_dir=tmp_path / "orthanc", http_port=free_port(), dicom_port=free_port(),
                               stable_age=1)
    process = orthanc_process(settings)
    process.start(timeout=60)
    yield settings
    process.stop()


@pytest.fixture
def hope_server(own_orthanc: OrthancSettings, tmp_path: Path) -> Iterator[tuple[ManagedProcess, str, Path]]:
    """A HOPE server of this test's own (it is killed): its process, URL and data folder."""
    data = tmp_path / "hope"
    data.mkdir()
    port = free_port()
    process = hope_server_process(own_orthanc, port, data, {"HOPE_CONFIG_DIR": str(config_dir_with(data, **QUIET))})
    process.start(timeout=300)
    yield process, f"http://127.0.0.1:{port}", data
    process.stop()


def test_training_dies_with_its_server_and_publishes_nothing(
    own_orthanc: OrthancSettings, hope_server: tuple[ManagedProcess, str, Path], spine_labels: dict[str, int]
) -> None:
    """SIGKILL the server during a long run: the run ends within seconds, and no model version appears later."""
    process, hope_url, data = hope_server
    client = own_orthanc.dicomweb_client()
    for seed in (71, 72):
        stored = store_phantom(own_orthanc.url, generate_neck_ct(seed, spine_labels), patient_id=f"FAULT-{seed}",
                               auth=own_orthanc.auth)
        image = series_volume(client, stored.study_uid, stored.series_uid)
        saved = _save_final_label(hope_url, stored.series_uid, nifti_bytes(stored.phantom.label, image))
        assert saved.status_code == 200, saved.text
    models = data / "models"
    before = _versions(models)
    assert before, "the server seeds an initial version"

    response = requests.post(f"{hope_url}/train/spine_ct", json={"max_epochs": 200}, timeout=TIMEOUT)
    assert response.status_code == 200, response.text
    assert process.process is not None
    server = psutil.Process(process.process.pid)
    poll(lambda: requests.get(f"{hope_url}/train/", timeout=TIMEOUT).json().get("status") == "RUNNING", 120,
         "the training run to start")
    run = poll(lambda: _training_process(server), 60, "the training subprocess")
    assert run.environ().get(SERVER_PID_VARIABLE) == str(server.pid), "the run knows which server it belongs to"
    # Let the run get past its start-up (app, datastore, network) into the epochs, where it would publish.
    poll(lambda: _in_epochs(hope_url), 600, "the first training epoch", interval=1.0)
    children = [run, *run.children(recursive=True)]

    server.kill()
    server.wait(timeout=TIMEOUT)
    try:
        deadline = time.monotonic() + DIES_WITHIN
        while _alive(children) and time.monotonic() < deadline:
            time.sleep(0.2)
        survivors = [" ".join(p.cmdline()[:6]) for p in _alive(children)]
        assert not survivors, f"the training run outlived its server by {DIES_WITHIN:.0f} s: {survivors}"
    finally:
        _kill_all(children)
    deadline = time.monotonic() + WATCH_MODELS_FOR
    while time.monotonic() < deadline:
        assert _versions(models) == before, "a model version was published after the server died"
        time.sleep(1.0)


@pytest.fixture
def launcher(tmp_path: Path) -> Iterator[Launched]:
    """``python -m hope.launcher`` (what ``scripts/start.sh`` runs) on free ports, without the demo data."""
    data = tmp_path / "data"
    ports = {"HOPE_PORT": free_port(), "HOPE_ORTHANC_HTTP_PORT": free_port(), "HOPE_ORTHANC_DICOM_PORT": free_port()}
    env = {**os.environ, **{k: str(v) for k, v in ports.items()}, "HOPE_DATA_DIR": str(data), "HOPE_DEMO": "0",
           "HOPE_CONFIG_DIR": str(config_dir_with(tmp_path, **QUIET)), "PYTHONUNBUFFERED": "1"}
    log_path = tmp_path / "launcher.log"
    with log_path.open("wb") as log:
        process = subprocess.Popen([sys.executable, "-m", "hope.launcher"], stdout=log, stderr=subprocess.STDOUT,
                                   env=env, cwd=REPO_ROOT)
    launched = Launched(process, data, ports["HOPE_PORT"], ports["HOPE_ORTHANC_HTTP_PORT"], log_path)
    yield launched
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
    _kill_all(launched.seen)


@dataclass
class Launched:
    """A running launcher, where it keeps its data and listens, and every service process it was seen with."""

    process: subprocess.Popen
    data: Path
    hope_port: int
    orthanc_port: int
    log_path: Path
    seen: list[psutil.Process] = field(default_factory=list)

    def log(self) -> str:
        """Everything the launcher logged so far."""
        return self.log_path.read_text(errors="replace")

    def services(self) -> dict[str, psutil.Process]:
        """The launcher's Orthanc and HOPE server processes, by name (fails the test once the launcher exited)."""
        assert self.process.poll() is None, f"the launcher exited:\n{self.log()}"
        found = {}
        for child in psutil.Process(self.process.pid).children():
            with contextlib.suppress(psutil.NoSuchProcess):
                if child.name() == "Orthanc":
                    found["Orthanc"] = child
                elif "monailabel.main" in child.cmdline():
                    found["HOPE server"] = child
        self.seen.extend(p for p in found.values() if p not in self.seen)
        return found


def _back(launcher: Launched, name: str, killed: int, url: str, auth: tuple[str, str] | None) -> bool:
    """Whether ``name`` runs again as a new process (not pid ``killed``) and ``url`` answers 200."""
    service = launcher.services().get(name)
    return service is not None and service.pid != killed and http_ok(url, auth=auth)


def test_the_launcher_restarts_crashed_services_and_stops_both_on_ctrl_c(launcher: Launched) -> None:
    """Orthanc, then HOPE, killed with SIGKILL: each is logged with its exit code and comes back; Ctrl-C stops all."""
    poll(lambda: "HOPE is running" in launcher.log() or launcher.process.poll() is not None, 400,
         "the launcher to start Orthanc and HOPE")
    auth = OrthancCredentials.load(launcher.data / "secrets" / CREDENTIALS_FILE).auth
    probes = {"Orthanc": (f"http://127.0.0.1:{launcher.orthanc_port}/system", auth),
              "HOPE server": (f"http://127.0.0.1:{launcher.hope_port}/info/", None)}
    for name, (url, credentials) in probes.items():
        services = launcher.services()
        assert set(services) == set(probes), launcher.log()
        (other,) = (p for n, p in services.items() if n != name)
        killed = services[name].pid
        services[name].kill()
        poll(lambda n=name: f"{n} exited with code -9 (SIGKILL)" in launcher.log(), TIMEOUT,
             f"the launcher to log {name}'s exit")
        poll(lambda n=name, k=killed, u=url, c=credentials: _back(launcher, n, k, u, c), 120,
             f"{name} to be restarted")
        assert other in launcher.services().values(), "the other service was left alone"
        # The service may answer a moment before the launcher's readiness check sees it and says so.
        poll(lambda n=name: f"{n} is back" in launcher.log(), TIMEOUT, f"the launcher to log that {name} is back")

    launcher.process.send_signal(signal.SIGINT)
    assert launcher.process.wait(timeout=60) == 0, launcher.log()
    assert launcher.log().rstrip().endswith("stopped.")
    _, alive = psutil.wait_procs(_alive(launcher.seen), timeout=10)
    assert not alive, f"still running after Ctrl-C: {alive}"
