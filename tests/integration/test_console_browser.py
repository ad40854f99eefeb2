"""An admin's session in the web console (``/console/``), in headless Chromium, on a team's HOPE (sign-in and
review on) against a real Orthanc.

Sign in at the provider's page as ``ada`` (admin) -> the console shows the store's series -> start a one-epoch
training run and watch its progress -> serve the previous version (inference reports it), then unpin -> import a
case CSV with one bad line and see that line's error -> axe-core finds no serious or critical violation.

A reviewer (``rita``) opens the measurements of an MR phantom's saved label: HOPE's measurement report (a DICOM SR
in the study) read back by ``GET /hope/measurements/{series_uid}``, shown per level with the Cobb angle; the panel's
screenshot is ``docs/images/console-measurements.png`` (the README shows it). The route's answer and its 404
reasons are checked without the browser.
Screenshots go to ``test-artifacts/console/``.
"""

from __future__ import annotations

import contextlib
import io
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import requests
import SimpleITK as sitk
from playwright.sync_api import expect
from pydicom.dataset import Dataset

from hope.config import REPO_ROOT, load_task
from hope.demo import store_phantom, store_volume
from hope.dicom.series_writer import new_identity
from hope.measure import measure_spine
from hope.phantoms import generate_neck_ct, generate_neck_mr
from hope.processes.oidc_provider import demo_password
from hope.processes.orthanc import OrthancSettings

from ..conftest import SignedInHope, signed_in_hope
from .helpers import nifti_bytes, poll, series_volume

pytestmark = pytest.mark.slow

AXE = REPO_ROOT / "tools" / "axe" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = REPO_ROOT / "test-artifacts" / "console"
#: The Measurements panel as the README shows it.
MEASUREMENTS_SHOT = REPO_ROOT / "docs" / "images" / "console-measurements.png"
UI_TIMEOUT_MS = 60_000
TRAINING_TIMEOUT_MS = 300_000
#: Seconds a saved label's measurement report may take to be written and stored.
REPORT_TIMEOUT_S = 180
#: The levels every measurement report of an MR phantom holds.
PHANTOM_LEVELS = ("C2", "C3", "C4", "C5", "C6", "C7")


def _shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True, animations="disabled")


def _session(hope: SignedInHope, user: str) -> requests.Session:
    session = requests.Session()
    session.headers.update(hope.headers(user))
    return session


def _save_label(hope: SignedInHope, user: str, series_uid: str, label_zyx: np.ndarray,
                image: sitk.Image) -> requests.Response:
    """``PUT /datastore/label`` of a final label on ``image``'s grid, as ``user``."""
    return _session(hope, user).put(
        f"{hope.url}/datastore/label", params={"image": series_uid, "tag": "final"},
        files={"label": ("label.nii.gz", io.BytesIO(nifti_bytes(label_zyx, image)))},
        data={"params": "{}"}, timeout=300)


def _sign_in(page: Any, hope: SignedInHope, user: str) -> None:
    """Open the console and sign in at the provider's page; wait until the console has read the server."""
    page.goto(f"{hope.url}/console/")
    expect(page.get_by_role("heading", name="Sign in to HOPE")).to_be_visible()
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(demo_password(user))
    page.get_by_role("button", name="Sign in").click()
    expect(page.locator("body[data-ready=true]")).to_have_count(1)


@contextlib.contextmanager
def _console_page(browser: Any, last_shot: str) -> Iterator[tuple[Any, list[str]]]:
    """A fresh browser page and the errors it reports; a screenshot named ``last_shot`` of how it was left."""
    context = browser.new_context(viewport={"width": 1366, "height": 900})
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        yield page, errors
    finally:
        with contextlib.suppress(Exception):  # the state the page was left in, for failures
            _shot(page, last_shot)
        context.close()


def _serious_violations(page: Any) -> list[str]:
    """axe-core's serious and critical violations on the page (axe-core is installed by scripts/setup.sh)."""
    page.add_script_tag(path=str(AXE))
    found = page.evaluate("async () => (await axe.run()).violations")
    return [f"{v['id']} ({v['impact']}): {v['help']} at {[n['target'] for n in v['nodes']][:3]}"
            for v in found if v["impact"] in {"serious", "critical"}]


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
    saved = _save_label(console_hope, "anna", first.series_uid, first.phantom.label, image)
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
    with _console_page(browser, "99-last") as (page, errors):
        # 1. Sign in at the provider's page; the console shows the store and who is signed in.
        _sign_in(page, console_hope, "ada")
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
        serious = _serious_violations(page)
        assert not serious, "\n".join(serious)
        assert not errors, f"errors in the page: {errors}"
    assert poll(lambda: _versions(console_hope)["serving"] == after["serving"], 10, "the best version to serve again")


@dataclass(frozen=True)
class SavedMr:
    """An MR phantom stored as sagittal slices, and the label ``anna`` saved on its grid."""

    study_uid: str
    series_uid: str
    label: np.ndarray  # (z, y, x) on the stored series' grid
    image: sitk.Image  # the stored series, read back


@pytest.fixture(scope="module")
def saved_mr(console_hope: SignedInHope, orthanc: OrthancSettings) -> SavedMr:
    """An MR phantom whose label ``anna`` saved (submitted for review): HOPE measures it and stores an SR."""
    stored = store_phantom(orthanc.url, generate_neck_mr(183, load_task("spine_mr").labels, "T2"),
                           patient_id="CONSOLE-MR-183", auth=orthanc.auth)
    image = series_volume(orthanc.dicomweb_client(), stored.study_uid, stored.series_uid)
    truth = sitk.GetImageFromArray(stored.phantom.label)
    truth.SetSpacing(stored.phantom.spacing)
    label = sitk.GetArrayFromImage(sitk.Resample(truth, image, sitk.Transform(), sitk.sitkNearestNeighbor, 0,
                                                 sitk.sitkUInt8))
    saved = _save_label(console_hope, "anna", stored.series_uid, label, image)
    assert saved.status_code == 200, saved.text
    return SavedMr(stored.study_uid, stored.series_uid, label, image)


def _measurements(hope: SignedInHope, series_uid: str, user: str = "uma") -> requests.Response:
    return _session(hope, user).get(f"{hope.url}/hope/measurements/{series_uid}", timeout=120)


def _report_of(hope: SignedInHope, series_uid: str) -> dict[str, Any]:
    """The measurements answer of the series, once its report is stored (404 until then)."""

    def answer() -> dict[str, Any] | None:
        response = _measurements(hope, series_uid)
        assert response.status_code in {200, 404}, response.text
        return response.json() if response.ok else None

    return dict(poll(answer, REPORT_TIMEOUT_S, f"the measurement report of series {series_uid}"))


def _series_of(orthanc: OrthancSettings, study_uid: str, modality: str) -> list[str]:
    found = orthanc.dicomweb_client().search_for_series(study_uid, search_filters={"Modality": modality})
    return [str(Dataset.from_json(item).SeriesInstanceUID) for item in found]


def test_measurements_route_answers_the_report_or_why_there_is_none(
        console_hope: SignedInHope, orthanc: OrthancSettings, approved: dict[str, str], saved_mr: SavedMr) -> None:
    """The route reads the SR HOPE stored for the saved MR label (its numbers are the label's); a series without a
    report, a CT series and an unknown series are 404 with why; a path that is no UID is 422."""
    answer = _report_of(console_hope, saved_mr.series_uid)
    assert answer["series_uid"] == saved_mr.series_uid
    assert [answer["sr_series_uid"]] == _series_of(orthanc, saved_mr.study_uid, "SR")
    assert [answer["seg_series_uid"]] == _series_of(orthanc, saved_mr.study_uid, "SEG")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d", answer["created"])
    stored = answer["measurements"]
    expected = measure_spine(saved_mr.label, load_task("spine_mr").labels, saved_mr.image.GetSpacing(),
                             saved_mr.image.GetDirection()).as_dict()
    assert [level["level"] for level in stored["levels"]] == [level["level"] for level in expected["levels"]]
    assert set(PHANTOM_LEVELS) <= {level["level"] for level in stored["levels"]}
    for got, want in zip(stored["levels"], expected["levels"], strict=True):
        assert got["canal_area_mm2"] == pytest.approx(want["canal_area_mm2"], rel=1e-3)
        assert got["cord_area_mm2"] == pytest.approx(want["cord_area_mm2"], rel=1e-3)
    assert stored["cobb_c2_c7_deg"] == pytest.approx(expected["cobb_c2_c7_deg"], abs=1e-3)
    assert set(stored["skipped"]) == set(expected["skipped"])

    bare = new_identity("CONSOLE-MR-BARE", modality="MR", study_description="HOPE console test",
                        series_description="MR without a label")
    store_volume(orthanc.url, np.zeros((8, 16, 16), np.int16), (1.0, 1.0, 1.0), bare, auth=orthanc.auth)
    reasons = {
        bare.series_instance_uid: "has no measurement report yet: save a final label of this MR series to get one",
        approved["series"]: "has no measurement report: it is CT, and HOPE measures MR series only",
        "1.2.3.4": "series 1.2.3.4 is not in the DICOM store",
    }
    for series_uid, reason in reasons.items():
        refused = _measurements(console_hope, series_uid, "rita")
        assert refused.status_code == 404 and reason in refused.json()["detail"], refused.text
    assert _measurements(console_hope, "not-a-uid").status_code == 422


def test_a_reviewer_reads_the_measurements_of_a_saved_mr_label(browser: Any, console_hope: SignedInHope,
                                                                saved_mr: SavedMr) -> None:
    """From the series table to the Measurements panel: levels C2..C7 with their numbers, the Cobb angle, the area
    chart; a UID the store does not hold shows why; axe-core finds no serious or critical violation."""
    series = saved_mr.series_uid
    _report_of(console_hope, series)

    def listed() -> bool:
        page = _session(console_hope, "rita").get(f"{console_hope.url}/hope/console/series",
                                                  params={"modality": "MR", "limit": 500}, timeout=60).json()
        return any(row["series_uid"] == series and row["state"] == "submitted" for row in page["items"])

    poll(listed, 60, "the saved MR label in the console's series listing")
    with _console_page(browser, "99-last-measurements") as (page, errors):
        _sign_in(page, console_hope, "rita")
        page.get_by_label("Modality", exact=True).select_option("MR")
        page.get_by_role("button", name="Show", exact=True).click()
        row = page.locator("#series tr", has_text=series)
        row.get_by_role("button", name=f"Measurements of series {series}").click()
        levels = page.locator("#measurement-levels")
        # the panel waits for the server, which may be computing a suggestion for the same series: not expect's 5 s
        expect(levels.locator("caption")).to_contain_text(series, timeout=UI_TIMEOUT_MS)
        for level in PHANTOM_LEVELS:
            expect(levels.get_by_role("cell", name=level, exact=True)).to_be_visible()
        expect(levels.get_by_role("columnheader", name="Canal area (mm²)")).to_be_visible()
        expect(page.locator("#measurement-cobb")).to_have_text(re.compile(r"^C2–C7 Cobb angle: -?\d+\.\d°"))
        expect(page.get_by_role("img", name=re.compile("^Bar chart of the canal and cord area"))).to_be_visible()
        expect(page.locator("#measurement-discs")).to_contain_text("C2/C3")
        MEASUREMENTS_SHOT.parent.mkdir(parents=True, exist_ok=True)
        page.locator("#measurements").screenshot(path=str(MEASUREMENTS_SHOT), animations="disabled")
        _shot(page, "05-measurements")

        page.get_by_label("Series UID").fill("1.2.3.4")
        page.get_by_role("button", name="Show measurements").click()
        expect(page.locator("#measurement-report [role=alert]")).to_contain_text(
            "HTTP 404: series 1.2.3.4 is not in the DICOM store", timeout=UI_TIMEOUT_MS)
        page.get_by_label("Series UID").fill(series)
        page.get_by_role("button", name="Show measurements").click()
        expect(levels.get_by_role("cell", name="C7", exact=True)).to_be_visible(timeout=UI_TIMEOUT_MS)

        serious = _serious_violations(page)
        assert not serious, "\n".join(serious)
        assert not errors, f"errors in the page: {errors}"
