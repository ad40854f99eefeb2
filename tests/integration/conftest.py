"""Fixtures shared by the integration tests: the real clients annotators use."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from playwright.sync_api import sync_playwright

SLICER_CLIENT = "plugins/slicer/MONAILabel/MONAILabelLib/client.py"


def _slicer_client_path() -> Path:
    """``client.py`` of the Slicer plugin, as installed with the monailabel wheel (``<prefix>/monailabel/...``)."""
    dist = importlib.metadata.distribution("monailabel")
    for file in dist.files or []:
        if str(file).endswith(SLICER_CLIENT):
            return Path(dist.locate_file(file)).resolve()
    return Path(sys.prefix) / "monailabel" / SLICER_CLIENT  # data files land under the environment's prefix


@pytest.fixture(scope="module")
def slicer_lib() -> ModuleType:
    """The Slicer plugin's client module, imported from the installed file.

    It needs only the standard library and ``requests`` (nothing from Slicer); it imports ``cgi``, which is
    deprecated since Python 3.11, hence the silenced warning. The locked monailabel wheel ships it: a missing file
    is a broken environment, an error of every test that uses it.
    """
    path = _slicer_client_path()
    assert path.is_file(), f"the monailabel wheel's Slicer plugin is not installed ({path} is missing)"
    spec = importlib.util.spec_from_file_location("monailabel_slicer_client", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def slicer(slicer_lib: ModuleType, hope_url: str, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """``MONAILabelClient`` as Slicer builds it: server URL, a temporary folder, a client id."""
    return slicer_lib.MONAILabelClient(hope_url, tmpdir=str(tmp_path_factory.mktemp("slicer")), client_id="slicer")


#: Debian's Chromium (never a browser Playwright downloads), and its flags for a headless run as root.
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Debian's Chromium, headless, driven by Playwright (never a downloaded browser)."""
    if not CHROMIUM.is_file():
        pytest.skip(f"{CHROMIUM} is missing: install Debian's chromium (scripts/setup.sh does, HOPE_WITH_BROWSER=1)")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()
