"""An admin's session in the web console (``/console/``), in headless Chromium, on a team's HOPE (sign-in and
review on) against a real Orthanc.

Sign in at the provider's page as ``ada`` (admin) -> the console shows the store's series -> start a one-epoch
training run and watch its progress -> serve the previous version (inference reports it), then unpin -> import a
case CSV with one bad line and see that line's error -> axe-core finds no serious or critical violation.
Screenshots go to ``test-artifacts/console/``.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from playwright.sync_api import expect

from hope.config import REPO_ROOT
from hope.demo import store_phantom
from hope.phantoms import generate_neck_ct
from hope.processes.oidc_provider import demo_password
from hope.processes.orthanc import OrthancSettings

from ..conftest import SignedInHope, signed_in_hope
from .helpers import nifti_bytes, poll, series_volume

pytestmark = pytest.mark.slow

AXE = REPO_ROOT / "tools" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "console"
UI_TIMEOUT_MS = 60_000
TRAINING_TIMEOUT_MS = 300_000


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, animations="disabled")


def _session(hope: SignedInHope, user: str) -> requests.Session:
    session = requests.Session()
    session.headers.update(hope.headers(user))
    return session


@pytest.fixture(scope="module")
def console_hope(orthanc: OrthancSettings, tmp_path_factory: pytest.TempPathFactory) -> Iterator[SignedInHope]:
    """A HOPE of its own, sign-in and review on: the test trains and pins, which the session's shared servers must
    not see (the next test would be served the 1-epoch model)."""
    with signed_in_hope(orthanc, tmp_path_factory.mktemp("console"), review={"enabled": True}) as server:
        yield server


@pytest.fixture(scope="module")
def approved(console_hope: SignedInHope, orthanc: OrthancSettings, spine_labels: dict[str, int]) -> dict[str, str]:
    """A phantom study whose label ``anna`` saved and ``rita`` approved (so it trains)."""
    first = store_phantom(orthanc.url, generate_neck_ct(181, spine_labels), patient_id="CONSOLE-181",
                          auth=orthanc.auth)
    image = series_volume(orthanc.dicomweb_client(), first.study_uid, first.series_uid)
    saved = _session(console_hope, "anna").put(
        f"{console_hope.url}/datastore/label", params={"image": first.series_uid, "tag": "final"},
        files={"label": ("label.nii.gz", io.BytesIO(nifti_bytes(first.phantom.label, image)))},
        data={"params": "{}"}, timeout=300)
    assert saved.status_code == 200, saved.text
    decided = _session(console_hope, "rita").post(f"{console_hope.url}/hope/review/{saved.json()['seg_sop_uid']}",
                                               json={"decision": "approve"}, timeout=30)
    assert decided.status_code == 200, decided.text
    return {"study": first.study_uid, "series": first.series_uid}


def _versions(hope: SignedInHope) -> dict[str, Any]:
    answer = _session(hope, "uma").get(f"{hope.url}/hope/models/spine_ct/versions", timeout=30)
    answer.raise_for_status()
    return dict(answer.json())


def test_admin_console(browser: Any, console_hope: SignedInHope, approved: dict[str, str]) -> None:
    """The console reads the live server and acts through HOPE's API as an admin."""
    before = _versions(console_hope)
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # 1. Sign in at the provider's page; the console shows the store and who is signed in.
        page.goto(f"{console_hope.url}/console/")
        expect(page.get_by_role("heading", name="Sign in to HOPE")).to_be_visible()
        page.get_by_label("Username").fill("ada")
        page.get_by_label("Password").fill(demo_password("ada"))
        page.get_by_role("button", name="Sign in").click()
        expect(page.locator("body[data-ready=true]")).to_have_count(1)
        expect(page.locator("#who")).to_contain_text("Signed in as ada (admin)")
        row = page.locator("#series tr", has_text=approved["series"])
        expect(row).to_contain_text("approved")
        expect(row.get_by_role("link", name="MONAI Label")).to_have_attribute(
            "href", f"/ohif/monai-label?StudyInstanceUIDs={approved['study']}")
        expect(page.locator("#annotators")).to_contain_text("anna")
        expect(page.locator("#store-link")).to_contain_text("HOPE reaches Orthanc: yes")
        _shot(page, "01-console")

        # 2. A one-epoch training run; its progress shows without reloading.
        page.get_by_label("Task").select_option("spine_ct")
        page.get_by_label("Epochs").fill("1")
        page.get_by_label("Validation share").fill("0")
        page.get_by_role("button", name="Start training").click()
        state = page.locator("#train-state")
        expect(state).to_contain_text(re.compile(r"SUBMITTED|RUNNING"))
        expect(state).to_contain_text("DONE", timeout=TRAINING_TIMEOUT_MS)
        after = _versions(console_hope)
        assert len(after["versions"]) == len(before["versions"]) + 1
        assert after["versions"][-1]["started_by"] == "ada"
        newest = after["versions"][-1]["version"]
        expect(page.get_by_role("cell", name=newest, exact=True)).to_be_visible()
        _shot(page, "02-trained")

        # 3. Serve the previous version: the console and inference report it; then the best serves again.
        previous = before["serving"]
        page.get_by_role("button", name=f"Serve {previous}").click()
        expect(page.locator("[data-serving=spine_ct]")).to_have_text(f"Serving {previous} (pinned).")
        infer = _session(console_hope, "anna").post(f"{console_hope.url}/infer/spine_ct",
                                                 params={"image": approved["series"], "output": "json"},
                                                 timeout=600)
        assert infer.status_code == 200, infer.text
        assert infer.json()["model_version"] == previous
        _shot(page, "03-pinned")
        page.get_by_role("button", name=re.compile("^Unpin spine_ct")).click()
        expect(page.locator("[data-serving=spine_ct]")).to_contain_text("(the best)")
        assert _versions(console_hope)["pinned"] is None

        # 4. A case CSV with one bad line: nothing is imported, and that line's problem is shown.
        csv = ("study_uid,tumor_type,verdict,confirmation\n"
               f"{approved['study']},chordoma,malignant,pathology\n"
               "1.2.3.4.5,no_such_type,malignant,pathology\n")
        page.get_by_label("CSV file").set_input_files(
            {"name": "cases.csv", "mimeType": "text/csv", "buffer": csv.encode()})
        page.get_by_label("Reason").fill("console test")
        page.get_by_role("button", name="Import").click()
        alert = page.locator("#import-result [role=alert]")
        expect(alert).to_contain_text("nothing imported")
        expect(alert.locator("li", has_text="no_such_type")).to_have_text(re.compile(r"^line 3: tumor_type: "))
        expect(alert.locator("li", has_text="line 2")).to_have_count(0)
        _shot(page, "04-import-refused")

        # 5. Accessibility: axe-core (installed by scripts/setup.sh) finds no serious or critical violation.
        page.add_script_tag(path=str(AXE))
        found = page.evaluate("async () => (await axe.run()).violations")
        serious = [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
                   for v in found if v["impact"] in {"serious", "critical"}]
        assert not serious, "\n".join(serious)
        assert not errors, f"errors in the page: {errors}"
    finally:
        with contextlib.suppress(Exception):  # the state the page was left in, for failures
            _shot(page, "99-last")
        context.close()
    assert poll(lambda: _versions(console_hope)["serving"] == after["serving"], 10, "the best version to serve again")
