"""Every route has a role, and a real server with a real OpenID Connect provider proves it.

The server's whole route table (``GET /auth/routes``: every route it serves, from its router, with the role each
needs) is walked: each route answers 401 without a token, 403 with the role just below its own, and lets the right
role through. The server refuses to start with a route that has no rule (``hope.server.policy``), so a new route that
forgets its rule fails here or at start-up. The requests name things that do not exist (a model ``no_such_model``,
a study ``1.2.3.4``) or carry no body, so that getting through the guard changes nothing.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import requests

from hope.demo import store_phantom
from hope.phantoms import generate_neck_ct
from hope.processes.hope_server import hope_server_process
from hope.processes.orthanc import OrthancSettings
from hope.processes.process import free_port

from ..conftest import ROLE_USERS, SignedInHope

ROLES = ["user", "annotator", "reviewer", "admin"]
PLACEHOLDERS = {"model": "no_such_model", "task": "no_such_task", "strategy": "no_such_strategy",
                "method": "no_such_method", "study_uid": "1.2.3.4", "series_uid": "1.2.3.4",
                "seg_sop_uid": "1.2.3.4", "path:path": "studies", "name": "console.js",
                "event_id": "series_stable:1.2.3.4:x"}


def _concrete(path: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: PLACEHOLDERS[m.group(1)], path)


def _route_table(team_hope: SignedInHope) -> list[dict[str, str]]:
    response = requests.get(f"{team_hope.url}/auth/routes", headers=team_hope.headers("ada"), timeout=30)
    assert response.status_code == 200, response.text
    return list(response.json())


def _call(team_hope: SignedInHope, route: dict[str, str], username: str | None) -> requests.Response:
    headers = team_hope.headers(username) if username else {}
    return requests.request(route["method"], team_hope.url + _concrete(route["path"]), headers=headers,
                            allow_redirects=False, timeout=120)


def test_the_route_table_lists_every_kind_of_route(team_hope: SignedInHope) -> None:
    table = {(r["method"], r["path"]): r["needs"] for r in _route_table(team_hope)}
    assert table[("POST", "/infer/{model}")] == "annotator"
    assert table[("POST", "/train/{model}")] == "admin"
    assert table[("POST", "/hope/review/{seg_sop_uid}")] == "reviewer"
    assert table[("GET", "/info/")] == "user"
    assert table[("POST", "/hope/events")] == "signed event"
    assert table[("POST", "/auth/token")] == "public"
    assert len(table) >= 50, f"only {len(table)} routes: the table is not the server's whole route table"


def test_each_route_refuses_no_token_and_a_lower_role_and_admits_its_own(team_hope: SignedInHope) -> None:
    wrong: list[str] = []
    for route in _route_table(team_hope):
        needs, name = route["needs"], f"{route['method']} {route['path']}"
        if needs not in ROLES:
            continue
        anonymous = _call(team_hope, route, None)
        if anonymous.status_code != 401:
            wrong.append(f"{name} without a token: {anonymous.status_code}, not 401")
        rank = ROLES.index(needs)
        if rank > 0:
            below = _call(team_hope, route, ROLE_USERS[ROLES[rank - 1]])
            if below.status_code != 403 or needs not in below.json().get("detail", ""):
                wrong.append(f"{name} as {ROLES[rank - 1]}: {below.status_code} {below.text[:120]}, not 403")
        admitted = _call(team_hope, route, ROLE_USERS[needs])
        if admitted.status_code in {401, 403} or admitted.status_code >= 500:
            wrong.append(f"{name} as {needs}: {admitted.status_code} {admitted.text[:160]}")
    assert not wrong, "\n".join(wrong)


def test_public_routes_and_signed_events_need_no_token_but_a_token_does_not_sign_an_event(
        team_hope: SignedInHope) -> None:
    assert requests.get(f"{team_hope.url}/auth/", timeout=30).json()["enabled"] is True
    event = requests.post(f"{team_hope.url}/hope/events", json={"type": "seg_stored"},
                          headers=team_hope.headers("ada"), timeout=30)
    assert event.status_code == 401 and "sign" in event.json()["detail"]


@pytest.mark.parametrize("authorization", ["Bearer not-a-jwt", "Basic YWRhOmFkYQ==", "Bearer ", "Token x"])
def test_a_malformed_authorization_is_401_with_a_reason(team_hope: SignedInHope, authorization: str) -> None:
    response = requests.get(f"{team_hope.url}/info/", headers={"Authorization": authorization}, timeout=30)
    assert response.status_code == 401
    assert response.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert response.json()["detail"]


def test_slicer_signs_in_with_a_password_through_hope(team_hope: SignedInHope) -> None:
    token = requests.post(f"{team_hope.url}/auth/token", data={"username": "anna", "password": "wrong"}, timeout=30)
    assert token.status_code == 401
    from hope.processes.oidc_provider import demo_password

    token = requests.post(f"{team_hope.url}/auth/token",
                          data={"username": "anna", "password": demo_password("anna")}, timeout=30)
    assert token.status_code == 200, token.text
    answer = token.json()
    valid = requests.get(f"{team_hope.url}/auth/token/valid", timeout=30,
                         headers={"Authorization": f"{answer['token_type']} {answer['access_token']}"})
    assert valid.json() == {"username": "anna", "role": "annotator", "verified": True}


def test_x_hope_user_cannot_sign_a_change_for_someone_else(team_hope: SignedInHope, orthanc: OrthancSettings,
                                                           spine_labels: dict[str, int]) -> None:
    stored = store_phantom(orthanc.url, generate_neck_ct(131, spine_labels), patient_id="ROLES-131",
                           auth=orthanc.auth)
    body = {"tumor_type": "chordoma", "verdict": "malignant", "confirmation": "pathology", "reason": "biopsy",
            "who": "mallory"}
    headers = {**team_hope.headers("rita"), "X-HOPE-User": "mallory"}
    put = requests.put(f"{team_hope.url}/cases/{stored.study_uid}", json=body, headers=headers, timeout=30)
    assert put.status_code in {200, 201}, put.text
    audit = requests.get(f"{team_hope.url}/cases/{stored.study_uid}/audit", headers=team_hope.headers("rita"),
                         timeout=30).json()
    assert {entry["who"] for entry in audit} == {"rita"}


def test_a_change_with_the_browser_session_from_another_site_is_refused(team_hope: SignedInHope) -> None:
    cookie = {"Cookie": f"hope_session={team_hope.token('ada')}"}
    read = requests.get(f"{team_hope.url}/info/", headers=cookie, timeout=30)
    assert read.status_code == 200
    forged = requests.put(f"{team_hope.url}/hope/retrain", json={"enabled": False}, timeout=30,
                          headers={**cookie, "Origin": "https://evil.example"})
    assert forged.status_code == 403 and "Origin" in forged.json()["detail"]


def test_a_browser_is_sent_to_sign_in_and_shown_a_readable_refusal(team_hope: SignedInHope) -> None:
    page = requests.get(f"{team_hope.url}/ohif/", headers={"Accept": "text/html"}, allow_redirects=False,
                        timeout=30)
    assert page.status_code == 303 and page.headers["Location"].startswith("/auth/login?next=%2Fohif%2F")
    login = requests.get(f"{team_hope.url}{page.headers['Location']}", allow_redirects=False, timeout=30)
    assert login.status_code == 303 and login.headers["Location"].startswith(team_hope.issuer)
    refused = requests.get(f"{team_hope.url}/hope/audit", timeout=30,
                           headers={"Accept": "text/html", "Cookie": f"hope_session={team_hope.token('anna')}"})
    assert refused.status_code == 403 and "text/html" in refused.headers["content-type"]
    assert "needs the admin role" in refused.text and "<h1>" in refused.text


def test_serving_a_network_without_sign_in_is_refused_at_start(orthanc: OrthancSettings, tmp_path: Path) -> None:
    from ..conftest import config_dir_with

    configs = config_dir_with(tmp_path)
    process = hope_server_process(orthanc, free_port(), tmp_path, {"HOPE_CONFIG_DIR": str(configs)}, host="0.0.0.0")
    try:
        with pytest.raises(RuntimeError, match="exited"):
            process.start(timeout=300)
        assert "with sign-in off" in process.log_tail(80)
    finally:
        process.stop()


