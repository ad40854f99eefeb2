"""Fixtures of the unit tests."""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fastapi import FastAPI

from hope.config.auth import AuthSettings
from hope.server.access import AccessGuard
from hope.server.errors import install_error_handlers


class Clock:
    """A settable clock (epoch seconds) for leases, reviews and anything else that takes a ``clock``."""

    def __init__(self) -> None:
        self.now = 1_700_000_000.0  # 2023-11-14T22:13:20Z

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    """A :class:`Clock` of its own for each test."""
    return Clock()


@pytest.fixture
def temp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The temp folder the code under test (and Starlette's spooled uploads) write into, empty at the start."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def demo_app() -> FastAPI:
    """An app with HOPE's error handlers and its access guard with sign-in off (the loopback demo: everyone is
    admin, ``X-HOPE-User`` names who makes a change), for a router tested on its own."""
    app = FastAPI()
    install_error_handlers(app)
    app.add_middleware(AccessGuard, settings=AuthSettings(), verifier=None)
    return app
