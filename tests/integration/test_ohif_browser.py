"""An annotator's session in OHIF (the viewer HOPE serves at ``/ohif/``), in headless Chromium.

Study list (Orthanc through HOPE's DICOMweb proxy) -> the phantom study in the "MONAI Label" mode -> run
``spine_ct`` from the MONAI Label panel, the suggestion is overlaid -> paint a correction (tumor) with the Brush
of the Segmentation panel -> "Export DICOM SEG". The save must land in Orthanc as a DICOM SEG that references the
series and holds exactly what the annotator saw: the suggestion, plus the correction on the one slice painted.
HOPE must count it as the series' final label.

Screenshots of every step go to ``test-artifacts/ohif/`` (01-...png to 05-...png).
"""

from __future__ import annotations

import contextlib
import gzip
import io
import re
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import requests
from dicomweb_client import DICOMwebClient
from PIL import Image
from playwright.sync_api import TimeoutError as PlaywrightTimeout
from pydicom.dataset import Dataset

from hope.config import REPO_ROOT, load_task
from hope.demo import store_phantom
from hope.dicom.seg import seg_referenced_series_uid, seg_to_label
from hope.phantoms import Phantom, generate_neck_ct, generate_neck_mr
from hope.processes.oidc_provider import demo_password
from hope.processes.orthanc import OrthancSettings

from ..conftest import SignedInHope
from .helpers import download_series, poll, seg_series

pytestmark = pytest.mark.slow

ARTIFACTS = REPO_ROOT / "test-artifacts" / "ohif"
VIEWPORT = {"width": 1366, "height": 900}
UI_TIMEOUT_MS = 60_000
PATIENT_ID = "OHIF-121"
MR_PATIENT_ID = "OHIF-MR-123"


def _shot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), animations="disabled")
    return path


def _colored_fraction(png: bytes) -> float:
    """Share of strongly coloured pixels in the middle of a viewport screenshot (the CT itself is grey)."""
    rgb = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    h, w, _ = rgb.shape
    middle = rgb[h // 4 : 3 * h // 4, w // 4 : 3 * w // 4]
    return float(((middle.max(axis=2) - middle.min(axis=2)) > 60).mean())


def _nrrd_labels(data: bytes) -> np.ndarray:
    """The ``(z, y, x)`` uint8 volume of the NRRD that ``/infer`` sent to OHIF."""
    end = data.index(b"\n\n")
    lines = data[:end].decode().splitlines()[1:]
    header = dict(line.split(": ", 1) for line in lines if ": " in line and not line.startswith("#"))
    assert header["type"] in {"unsigned char", "uint8", "uchar"}, header
    raw = data[end + 2 :]
    if header.get("encoding") == "gzip":
        raw = gzip.decompress(raw)
    x, y, z = (int(v) for v in header["sizes"].split())
    return np.frombuffer(raw, dtype=np.uint8).reshape(z, y, x)


def _seg_of(client: DICOMwebClient, study_uid: str, series_uid: str) -> Dataset | None:
    """The SEG instance in the store that references ``series_uid``, if any."""
    for seg in seg_series(client):
        if seg.StudyInstanceUID != study_uid:
            continue
        instance = client.retrieve_series(study_uid, seg.SeriesInstanceUID, media_types=(("application/dicom", "*"),))
        if seg_referenced_series_uid(instance[0]) == series_uid:
            return instance[0]
    return None


def _open_in_mode(row: Any, mode_button: Any) -> None:
    """Expand the study row and click the mode's button.

    The study list refetches after the MRN filter's debounce, and a refetch collapses a row expanded just before
    it: the row is clicked again (it toggles) whenever its mode buttons are not showing.
    """

    def expanded() -> bool:
        if mode_button.is_visible():
            return True
        row.click()
        with contextlib.suppress(PlaywrightTimeout):  # the list collapsed it again: click again
            mode_button.wait_for(state="visible", timeout=5_000)
        return mode_button.is_visible()

    poll(expanded, UI_TIMEOUT_MS / 1000, "the study row to show the MONAI Label mode's button")
    mode_button.click()


def _completed(api: requests.Session, hope_url: str) -> int:
    response = api.get(f"{hope_url}/datastore/", params={"output": "stats"}, timeout=60)
    response.raise_for_status()
    return int(response.json()["completed"])


def _annotate(browser: Any, orthanc: OrthancSettings, hope_url: str, labels: dict[str, int],
              api: requests.Session, patient_id: str, phantom: Phantom, sign_in: tuple[str, str] | None = None,
              shots: str = "", model: str = "spine_ct") -> Dataset:
    """The annotator's session in OHIF on ``phantom`` (stored for ``patient_id``) with ``model`` (whose labels are
    ``labels``), signed in at the provider's page first when ``sign_in`` (user, password) is given; the SEG it saved.
    Screenshots are named ``<shots>01-...png`` on. ``api`` carries the credentials of HOPE's API calls made beside
    the browser."""
    from playwright.sync_api import expect

    served = api.get(f"{hope_url}/ohif/app-config.js", timeout=30)
    assert served.ok and "HOPE's OHIF v3 configuration" in served.text, (
        "HOPE does not serve configs/ohif/app-config.js at /ohif/app-config.js (MONAI Label's bundled one answers): "
        "mount hope.api.ohif.ohif_router() in front of MONAI Label's routes (hope.server.routes)"
    )
    stored = store_phantom(orthanc.url, phantom, patient_id=patient_id, auth=orthanc.auth)
    client = orthanc.dicomweb_client()

    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    try:
        # 1. The study list, from Orthanc through HOPE's DICOMweb proxy.
        page.goto(f"{hope_url}/ohif/")
        if sign_in is not None:  # HOPE sent the browser to the provider's login page
            expect(page.get_by_role("heading", name="Sign in to HOPE")).to_be_visible()
            _shot(page, shots + "00-sign-in")
            page.get_by_label("Username").fill(sign_in[0])
            page.get_by_label("Password").fill(sign_in[1])
            page.get_by_role("button", name="Sign in").click()
        page.get_by_role("button", name="Confirm and Hide").click()  # OHIF's "investigational use" notice
        page.locator("[data-cy='input-mrn']").fill(patient_id)
        # Wait for the filtered list: a click on the unfiltered one can land, once the list is re-laid out, on
        # another study's row or mode button (the viewer of another study opened, and the row was gone).
        page.wait_for_url(re.compile(r"[?&]mrn="))
        expect(page.locator("[data-cy^='studyRow-']")).to_have_count(1)
        row = page.locator(f"[data-cy='studyRow-{stored.study_uid}']")
        expect(row).to_contain_text(patient_id)
        _shot(page, shots + "01-study-list")

        # 2. The phantom study in the MONAI Label mode: the image is rendered (the overlay shows window and level).
        _open_in_mode(row, page.locator(f"[data-cy='mode-monai-label-{stored.study_uid}']"))
        page.get_by_text(re.compile(r"^W:")).first.wait_for()
        axial = page.locator("[data-cy='viewport-pane']").first
        expect(axial.locator("canvas").first).to_be_visible()
        before = _colored_fraction(axial.screenshot(animations="disabled"))
        _shot(page, shots + "02-study")

        # 3. The model from the MONAI Label panel (its server is the HOPE that serves the page): the suggestion is
        #    overlaid. The NRRD OHIF received is kept to compare with what is saved.
        page.locator(".monaiLabelPanel .settingsTable button.actionButton").click()  # connect
        page.get_by_text("Auto-Segmentation").click()
        page.locator(".monaiLabelPanel select", has=page.locator(f"option[value='{model}']")).first.select_option(model)
        with page.expect_response(lambda r: f"/infer/{model}" in r.url and r.request.method == "POST") as infer:
            page.locator("button[title='Run Segmentation']").click()
        assert infer.value.ok, f"/infer answered HTTP {infer.value.status}"
        suggestion = _nrrd_labels(infer.value.body())
        page.get_by_text("Running Segmentation - Successful").wait_for()
        assert set(np.unique(suggestion).tolist()) - {0}, "the suggestion is empty"

        def overlaid() -> float | None:
            fraction = _colored_fraction(axial.screenshot(animations="disabled"))
            return fraction if fraction > before + 0.003 else None

        poll(overlaid, 30, "the suggestion to be drawn over the image")
        _shot(page, shots + "03-suggestion")

        # 4. A correction: paint tumor with the Brush on the axial slice on screen.
        page.locator("[data-cy^='panelSegmentation']").click()
        page.locator("[data-cy='Brush']").click()
        page.locator("[data-cy='data-row']", has_text="tumor").click()
        box = axial.bounding_box()
        assert box is not None
        cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
        page.mouse.move(cx - 40, cy - 25)
        page.mouse.down()
        for step in range(1, 21):
            page.mouse.move(cx - 40 + 4 * step, cy - 25 + 2 * step)
        page.mouse.up()
        _shot(page, shots + "04-correction")

        # 5. Save: Segmentation panel menu -> Export & Download -> Export DICOM SEG (saved through HOPE).
        page.locator("div.bg-primary-dark.h-10 button").first.click()  # the "..." left of the segmentation's name
        page.get_by_text("Export & Download").click()
        page.get_by_text("Export DICOM SEG").click()
        outcome = page.get_by_text(re.compile(r"^(Saved to Orthanc as DICOM SEG|Not saved: )")).first
        outcome.wait_for()
        _shot(page, shots + "05-saved")
        assert outcome.inner_text().startswith("Saved"), outcome.inner_text()
        assert not errors, f"errors in the page: {errors}"
    finally:
        with contextlib.suppress(Exception):  # the state the page was left in, for failures
            _shot(page, shots + "99-last")
        context.close()

    # The SEG is in Orthanc, references the series, and holds the suggestion plus the painted correction.
    seg = poll(lambda: _seg_of(client, stored.study_uid, stored.series_uid), 30, "the SEG in Orthanc")
    with tempfile.TemporaryDirectory() as tmp:
        sources = download_series(client, stored.study_uid, stored.series_uid, Path(tmp))
    saved = seg_to_label(seg, sources, labels)
    assert saved.shape == suggestion.shape
    changed = saved != suggestion
    assert changed.any(), "the saved label is the suggestion unchanged: the brush correction is missing"
    planes = [np.unique(np.nonzero(changed)[axis]).tolist() for axis in range(3)]
    assert min(len(plane) for plane in planes) == 1, f"the correction was painted on one slice, not on {planes}"
    assert set(np.unique(saved[changed]).tolist()) == {labels["tumor"]}

    return seg


def test_annotate_in_ohif(browser: Any, orthanc: OrthancSettings, hope_url: str, spine_labels: dict[str, int]) -> None:
    """The loopback demo: no sign-in. HOPE counts the saved SEG as the series' final label."""
    api = requests.Session()
    before = _completed(api, hope_url)
    seg = _annotate(browser, orthanc, hope_url, spine_labels, api, PATIENT_ID, generate_neck_ct(121, spine_labels))
    series_uid = seg_referenced_series_uid(seg)
    assert poll(lambda: _completed(api, hope_url) == before + 1, 30, "HOPE's completed count to go up")
    state = api.get(f"{hope_url}/hope/state", timeout=60).json()
    assert state["series"][series_uid]["final"] is True


def test_annotate_mr_in_ohif(browser: Any, orthanc: OrthancSettings, hope_url: str) -> None:
    """An MR series (a sagittal T2 phantom): spine_mr from the panel, a correction, the SEG; then HOPE stores the
    label's measurements as an SR in the study, and OHIF lists it beside the MR and the SEG."""
    labels = load_task("spine_mr").labels
    seg = _annotate(browser, orthanc, hope_url, labels, requests.Session(), MR_PATIENT_ID,
                    generate_neck_mr(123, labels, "T2"), shots="mr-", model="spine_mr")
    client = orthanc.dicomweb_client()
    study_uid = str(seg.StudyInstanceUID)
    poll(lambda: client.search_for_series(study_uid, search_filters={"Modality": "SR"}), 120,
         "the measurement SR in the study")
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        page = context.new_page()
        page.goto(f"{hope_url}/ohif/viewer?StudyInstanceUIDs={study_uid}")
        page.get_by_role("button", name="Confirm and Hide").click()
        page.get_by_text("SR", exact=True).first.wait_for()  # the report's thumbnail in the study browser
        _shot(page, "mr-06-report-listed")
    finally:
        context.close()


def _sign_in(page: Any, hope_url: str, next_path: str, username: str) -> None:
    page.goto(f"{hope_url}/auth/login?next={next_path}")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(demo_password(username))
    page.get_by_role("button", name="Sign in").click()


def _approve_in_console(browser: Any, team_hope: SignedInHope, series_uid: str) -> None:
    """The reviewer signs in to the console and approves the label from the review queue."""
    context = browser.new_context(viewport=VIEWPORT)
    context.set_default_timeout(UI_TIMEOUT_MS)
    try:
        page = context.new_page()
        _sign_in(page, team_hope.url, "/console/", "rita")
        row = page.locator("#review-queue tr", has_text=series_uid)
        row.get_by_label("Comment").fill("C2 to C7 correct; tumor margin fine")
        row.get_by_role("button", name="Approve").click()
        page.get_by_text(re.compile(f"The label of {re.escape(series_uid)} by anna is approved")).wait_for()
        _shot(page, "team-06-approved")
    finally:
        context.close()


def test_annotate_signed_in_then_review(browser: Any, orthanc: OrthancSettings, team_hope: SignedInHope,
                                        spine_labels: dict[str, int]) -> None:
    """A team: the annotator signs in at the provider's page, saves a SEG that names her, the label is submitted
    (not final); a reviewer approves it in the console, and only then does it count. An admin action in her browser
    is refused with a readable page."""
    annotator = requests.Session()
    annotator.headers.update(team_hope.headers("anna"))
    before = _completed(annotator, team_hope.url)
    seg = _annotate(browser, orthanc, team_hope.url, spine_labels, annotator, "OHIF-AUTH-122",
                    generate_neck_ct(122, spine_labels),
                    sign_in=("anna", demo_password("anna")), shots="team-")
    assert str(seg.ContentCreatorName) == "anna" and str(seg.OperatorsName) == "anna"
    series_uid = seg_referenced_series_uid(seg)

    review = annotator.get(f"{team_hope.url}/hope/review/series/{series_uid}", timeout=30).json()
    assert review["state"] == "submitted", review
    assert _completed(annotator, team_hope.url) == before, "a submitted label counted before its review"
    listing = annotator.get(f"{team_hope.url}/datastore/", params={"output": "all"}, timeout=60).json()
    assert listing["objects"][series_uid]["state"] == "submitted"
    assert not listing["objects"][series_uid]["labels"], "a submitted label is listed as final"
    _approve_in_console(browser, team_hope, series_uid)
    assert poll(lambda: _completed(annotator, team_hope.url) == before + 1, 30, "the approved label to count")
    listing = annotator.get(f"{team_hope.url}/datastore/", params={"output": "all"}, timeout=60).json()
    assert listing["objects"][series_uid]["state"] == "approved"

    context = browser.new_context(viewport=VIEWPORT)
    try:
        page = context.new_page()
        _sign_in(page, team_hope.url, "/hope/audit", "anna")
        refusal = page.get_by_role("alert")
        refusal.wait_for()
        assert "needs the admin role" in refusal.inner_text()
        _shot(page, "team-07-refused")
    finally:
        context.close()
