"""Shared fixtures: a real Orthanc (Debian package) and a real HOPE server on free loopback ports."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from hope.config import DEFAULT_CONFIG_DIR, load_task
from hope.processes.hope_server import hope_server_process
from hope.processes.oidc_provider import (
    SLICER_CLIENT,
    OidcProviderSettings,
    demo_password,
    oidc_provider_process,
    password_token,
)
from hope.processes.orthanc import OrthancSettings, orthanc_process
from hope.processes.process import ManagedProcess, free_port
from hope.sync.signing import EventKey

SHARED_DATA = Path(os.environ.get("HOPE_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip ``gpu`` tests without CUDA."""
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


def config_dir_with(tmp: Path, **server: Any) -> Path:
    """A copy of ``configs/`` in ``tmp`` whose ``server.yaml`` sections are updated with ``server``."""
    dest = tmp / "configs"
    shutil.copytree(DEFAULT_CONFIG_DIR, dest, dirs_exist_ok=True)
    settings = yaml.safe_load((dest / "server.yaml").read_text())
    for section, values in server.items():
        settings.setdefault(section, {}).update(values)
    (dest / "server.yaml").write_text(yaml.safe_dump(settings))
    return dest


#: Background scoring and automatic retraining off, so tests that train or time things are not raced by them.
QUIET = {"activelearning": {"background_scoring": False}, "retrain": {"enabled": False}}


@contextmanager
def running_hope(orthanc: OrthancSettings, data: Path, env: dict[str, str] | None = None, port: int | None = None,
                 **server: dict[str, Any]) -> Iterator[tuple[str, ManagedProcess]]:
    """A real HOPE server on a loopback port (``port``, or a free one) against ``orthanc``, with its state in
    ``data``; its URL and process. ``server.yaml`` is :data:`QUIET`, updated with ``server`` sections; ``env`` adds
    to its environment."""
    configs = config_dir_with(data, **{section: {**QUIET.get(section, {}), **values}
                                       for section, values in {**QUIET, **server}.items()})
    port = port or free_port()
    process = hope_server_process(orthanc, port, data, {"HOPE_CONFIG_DIR": str(configs), **(env or {})})
    try:
        process.start(timeout=300)
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.stop()


@dataclass
class SignedInHope:
    """A HOPE server with sign-in on, and the real OpenID Connect provider it trusts (its demo users)."""

    url: str
    issuer: str
    process: ManagedProcess
    _tokens: dict[str, str] = field(default_factory=dict)

    def token(self, username: str) -> str:
        """An access token of the demo user ``username`` (password grant at the provider, as Slicer's is)."""
        if username not in self._tokens:
            answer = password_token(self.issuer, SLICER_CLIENT, username, demo_password(username))
            self._tokens[username] = str(answer["access_token"])
        return self._tokens[username]

    def headers(self, username: str) -> dict[str, str]:
        """``Authorization: Bearer`` headers of ``username``."""
        return {"Authorization": f"Bearer {self.token(username)}"}


#: A demo user per role (configs/auth/demo-users.json).
ROLE_USERS = {"user": "uma", "annotator": "anna", "reviewer": "rita", "admin": "ada"}


@contextmanager
def signed_in_hope(orthanc: OrthancSettings, data: Path, **server: dict[str, Any]) -> Iterator[SignedInHope]:
    """A real HOPE server with sign-in on (``auth`` updated with ``server["auth"]``), trusting a real OpenID Connect
    provider (``oidc-provider/``) started on a free port with the demo users; both stop on exit."""
    port = free_port()
    callbacks = tuple(f"http://{host}:{port}/auth/callback" for host in ("127.0.0.1", "localhost"))
    provider_settings = OidcProviderSettings(port=free_port(), redirect_uris=callbacks, log_dir=data)
    provider = oidc_provider_process(provider_settings)
    provider.start(timeout=60)
    try:
        auth = {"enabled": True, "issuer": provider_settings.issuer, **server.pop("auth", {})}
        with running_hope(orthanc, data, port=port, auth=auth, **server) as (url, process):
            yield SignedInHope(url, provider_settings.issuer, process)
    finally:
        provider.stop()


@pytest.fixture(scope="session")
def team_hope(orthanc: OrthancSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedInHope]:
    """HOPE as a team runs it: sign-in on, label review on, against the test Orthanc."""
    with signed_in_hope(orthanc, tmp_path_factory.mktemp("team"), review={"enabled": True}) as server:
        yield server


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data``: small real images for tests (never copied into the repo)."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared data folder {SHARED_DATA} is missing")
    return SHARED_DATA


@pytest.fixture(scope="session")
def spine_labels() -> dict[str, int]:
    """The label map of the ``spine_ct`` task, from ``configs/``."""
    return load_task("spine_ct").labels


@pytest.fixture(scope="session")
def orthanc(tmp_path_factory: pytest.TempPathFactory) -> Iterator[OrthancSettings]:
    """A real Orthanc with DICOMweb and GDCM, SQLite index, in a temporary folder, on free ports.

    Closed as deployed: its HTTP API needs ``settings.auth`` (``settings.dicomweb_client()`` is logged in), and no
    DICOM sender is allowed (a module that C-STOREs starts its own, with ``helpers.C_STORE_ACCESS``).
    """
    settings = OrthancSettings(
        data_dir=tmp_path_factory.mktemp("orthanc"), http_port=free_port(), dicom_port=free_port(), stable_age=1
    )
    process = orthanc_process(settings)
    process.start(timeout=60)
    yield settings
    process.stop()


@pytest.fixture(scope="session")
def hope_tmp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The temporary folder (``TMPDIR``) of the :func:`hope_url` server: what a request leaves there leaks."""
    return tmp_path_factory.mktemp("hope-tmp")


@pytest.fixture(scope="session")
def hope_url(orthanc: OrthancSettings, tmp_path_factory: pytest.TempPathFactory, hope_tmp: Path) -> Iterator[str]:
    """A real HOPE server (``monailabel start_server --app apps/hope``) against the test Orthanc.

    Background scoring and automatic retraining are off here, so tests that train or time things are not raced
    by background work; the modules that test those features start their own server.
    """
    with running_hope(orthanc, tmp_path_factory.mktemp("hope"), {"TMPDIR": str(hope_tmp)}) as (url, _):
        yield url


@pytest.fixture(scope="session")
def event_key(orthanc: OrthancSettings) -> EventKey:
    """The key the test HOPE server checks store events with (``helpers.post_event`` signs with it)."""
    return EventKey.load(orthanc.event_key_file)
