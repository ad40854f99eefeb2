"""The local OpenID Connect provider (``oidc-provider/provider.mjs``) as a real process, and Keycloak's realm file.

Tokens are checked as a resource server checks them: signature against the provider's JWKS (PyJWT), issuer,
audience ``hope``, and the claims HOPE reads (``preferred_username``, ``realm_access.roles``).
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urljoin, urlsplit

import jwt
import pytest
import requests

from hope.config import REPO_ROOT
from hope.processes import oidc_provider
from hope.processes.oidc_provider import (
    DEMO_USERS,
    SLICER_CLIENT,
    WEB_CLIENT,
    OidcProviderSettings,
    demo_password,
    oidc_provider_process,
    password_token,
)
from hope.processes.process import free_port

pytestmark = pytest.mark.slow

REDIRECT_URI = "http://127.0.0.1:8000/auth/callback"
REALM_FILE = REPO_ROOT / "configs" / "keycloak" / "hope-realm.json"
ROLES = {"monailabel-admin", "monailabel-reviewer", "monailabel-annotator", "monailabel-user"}
DEMO = {u["username"]: u for u in json.loads(DEMO_USERS.read_text())["users"]}
ONE_PER_ROLE = {"ada": "monailabel-admin", "rita": "monailabel-reviewer", "anna": "monailabel-annotator",
                "uma": "monailabel-user"}
TIMEOUT = 10


@pytest.fixture(scope="module")
def issuer(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running provider on a free loopback port; its issuer URL."""
    settings = OidcProviderSettings(
        port=free_port(), redirect_uris=(REDIRECT_URI,), log_dir=tmp_path_factory.mktemp("oidc")
    )
    process = oidc_provider_process(settings)
    process.start(timeout=60)
    try:
        yield settings.issuer
    finally:
        process.stop()


@pytest.fixture(scope="module")
def config(issuer: str) -> dict[str, Any]:
    """The discovery document."""
    response = requests.get(f"{issuer}/.well-known/openid-configuration", timeout=TIMEOUT)
    assert response.status_code == 200
    return dict(response.json())


@pytest.fixture(scope="module")
def jwks(config: dict[str, Any]) -> jwt.PyJWKClient:
    """A JWKS client of the provider's keys."""
    return jwt.PyJWKClient(config["jwks_uri"])


def verified(token: str, jwks: jwt.PyJWKClient, issuer: str) -> dict[str, Any]:
    """The claims of access token ``token``, verified as HOPE verifies them (RS256, issuer, audience ``hope``)."""
    header = jwt.get_unverified_header(token)
    assert header["alg"] == "RS256" and header.get("kid")
    key = jwks.get_signing_key_from_jwt(token)
    claims = jwt.decode(token, key.key, algorithms=["RS256"], audience="hope", issuer=issuer)
    for name in ("iss", "aud", "exp", "iat", "sub"):
        assert name in claims, name
    return dict(claims)


def assert_user_claims(claims: dict[str, Any], username: str, client_id: str) -> None:
    """``claims`` name ``username`` with the roles and name of the demo file, issued to ``client_id``."""
    assert claims["sub"] == username
    assert claims["preferred_username"] == username
    assert claims["name"] == DEMO[username]["name"]
    assert sorted(claims["realm_access"]["roles"]) == sorted(DEMO[username]["roles"])
    assert claims["azp"] == client_id
    assert claims["client_id"] == client_id


def test_discovery(config: dict[str, Any], issuer: str) -> None:
    assert config["issuer"] == issuer
    for endpoint in ("jwks_uri", "token_endpoint", "authorization_endpoint"):
        assert config[endpoint].startswith(issuer), endpoint
    assert "S256" in config["code_challenge_methods_supported"]
    assert "password" in config["grant_types_supported"]
    keys = requests.get(config["jwks_uri"], timeout=TIMEOUT).json()["keys"]
    assert keys and all(k["kty"] == "RSA" and k.get("kid") and "d" not in k for k in keys)


@pytest.mark.parametrize("username", sorted(DEMO))
def test_password_grant_gives_a_verifiable_jwt(issuer: str, jwks: jwt.PyJWKClient, username: str) -> None:
    tokens = password_token(issuer, SLICER_CLIENT, username, demo_password(username))
    assert tokens["token_type"] == "Bearer"
    assert 0 < tokens["expires_in"] <= 3600
    claims = verified(tokens["access_token"], jwks, issuer)
    assert_user_claims(claims, username, SLICER_CLIENT)
    assert claims["exp"] - claims["iat"] == 3600


def test_each_role_has_a_demo_user() -> None:
    for username, role in ONE_PER_ROLE.items():
        assert DEMO[username]["roles"] == [role]
    annotators = [f"annotator{i}" for i in range(1, 9)]
    assert all(DEMO[name]["roles"] == ["monailabel-annotator"] for name in annotators)


@pytest.mark.parametrize(("username", "password"), [("ada", "not-her-password"), ("nobody", "x"), ("ada", "")])
def test_wrong_password_is_invalid_grant(config: dict[str, Any], username: str, password: str) -> None:
    response = requests.post(config["token_endpoint"], timeout=TIMEOUT, data={
        "grant_type": "password", "client_id": SLICER_CLIENT, "username": username, "password": password,
        "scope": "openid profile"})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    with pytest.raises(RuntimeError, match="invalid_grant"):
        password_token(config["issuer"], SLICER_CLIENT, username, password)


def test_web_client_may_not_use_the_password_grant(config: dict[str, Any]) -> None:
    response = requests.post(config["token_endpoint"], timeout=TIMEOUT, data={
        "grant_type": "password", "client_id": WEB_CLIENT, "username": "ada", "password": demo_password("ada"),
        "scope": "openid profile"})
    assert response.status_code == 400
    assert "access_token" not in response.json()


def test_slicer_client_may_not_use_the_browser_flow(config: dict[str, Any]) -> None:
    verifier, challenge = _pkce()
    response = requests.get(config["authorization_endpoint"], allow_redirects=False, timeout=TIMEOUT, params={
        "client_id": SLICER_CLIENT, "response_type": "code", "scope": "openid profile",
        "redirect_uri": REDIRECT_URI, "code_challenge": challenge, "code_challenge_method": "S256"})
    assert response.status_code == 400  # no redirect URI is registered for it: an error page, no redirect
    assert "location" not in response.headers


# Authorization code + PKCE, as a browser does it ---------------------------------------------------------------

def _pkce() -> tuple[str, str]:
    """A PKCE ``(code_verifier, code_challenge)`` pair (S256)."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def _follow(session: requests.Session, response: requests.Response, stop_at: str) -> requests.Response:
    """Follow redirects by hand until one points at ``stop_at`` (never requested) or a page is answered."""
    for _ in range(10):
        if response.status_code not in (302, 303) or response.headers["location"].startswith(stop_at):
            return response
        response = session.get(urljoin(response.url, response.headers["location"]), allow_redirects=False,
                               timeout=TIMEOUT)
    raise AssertionError("too many redirects")


def _login_form(session: requests.Session, config: dict[str, Any], challenge: str, state: str) -> requests.Response:
    """The login page the authorization endpoint sends a browser to."""
    response = session.get(config["authorization_endpoint"], allow_redirects=False, timeout=TIMEOUT, params={
        "client_id": WEB_CLIENT, "response_type": "code", "scope": "openid profile", "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge, "code_challenge_method": "S256", "state": state})
    page = _follow(session, response, REDIRECT_URI)
    assert page.status_code == 200, page.text
    assert "<h1>Sign in to HOPE</h1>" in page.text
    assert '<label for="username">Username</label>' in page.text
    assert '<label for="password">Password</label>' in page.text
    assert 'type="password"' in page.text
    return page


def _form_action(page: requests.Response) -> str:
    action = page.text.split('<form method="post" action="', 1)[1].split('"', 1)[0]
    return urljoin(page.url, action)


def _sign_in(config: dict[str, Any], username: str, password: str,
             session: requests.Session | None = None) -> tuple[requests.Response, str, str]:
    """Start a browser flow and submit the login form: the last response (not followed past the redirect URI),
    the ``state`` and the PKCE ``code_verifier``."""
    session = session or requests.Session()
    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(16)
    page = _login_form(session, config, challenge, state)
    response = session.post(_form_action(page), data={"username": username, "password": password},
                            allow_redirects=False, timeout=TIMEOUT)
    return _follow(session, response, REDIRECT_URI), state, verifier


@pytest.mark.parametrize("username", sorted(ONE_PER_ROLE))
def test_authorization_code_with_pkce(config: dict[str, Any], issuer: str, jwks: jwt.PyJWKClient,
                                      username: str) -> None:
    response, state, verifier = _sign_in(config, username, demo_password(username))
    assert response.status_code in (302, 303), response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    query = parse_qs(urlsplit(location).query)
    assert query["state"] == [state]
    assert query["iss"] == [issuer]
    code = query["code"][0]

    exchange = {"grant_type": "authorization_code", "client_id": WEB_CLIENT, "code": code,
                "redirect_uri": REDIRECT_URI}
    wrong = requests.post(config["token_endpoint"], timeout=TIMEOUT,
                          data={**exchange, "code_verifier": _pkce()[0]})
    assert wrong.status_code == 400 and wrong.json()["error"] == "invalid_grant"  # PKCE is checked

    tokens = requests.post(config["token_endpoint"], timeout=TIMEOUT, data={**exchange, "code_verifier": verifier})
    assert tokens.status_code == 200, tokens.text
    body = tokens.json()
    assert body["token_type"] == "Bearer"
    claims = verified(body["access_token"], jwks, issuer)
    assert_user_claims(claims, username, WEB_CLIENT)
    id_token = jwt.decode(body["id_token"], jwks.get_signing_key_from_jwt(body["id_token"]).key,
                          algorithms=["RS256"], audience=WEB_CLIENT, issuer=issuer)
    assert id_token["sub"] == username

    refreshed = requests.post(config["token_endpoint"], timeout=TIMEOUT, data={
        "grant_type": "refresh_token", "client_id": WEB_CLIENT, "refresh_token": body["refresh_token"]})
    assert refreshed.status_code == 200, refreshed.text
    assert_user_claims(verified(refreshed.json()["access_token"], jwks, issuer), username, WEB_CLIENT)

    again = requests.post(config["token_endpoint"], timeout=TIMEOUT, data={**exchange, "code_verifier": verifier})
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"  # a code is used once


def test_signed_in_browser_gets_a_code_without_the_form(config: dict[str, Any]) -> None:
    session = requests.Session()
    first, _, _ = _sign_in(config, "anna", demo_password("anna"), session)
    assert first.headers["location"].startswith(REDIRECT_URI + "?")
    _, challenge = _pkce()
    response = session.get(config["authorization_endpoint"], allow_redirects=False, timeout=TIMEOUT, params={
        "client_id": WEB_CLIENT, "response_type": "code", "scope": "openid profile", "redirect_uri": REDIRECT_URI,
        "code_challenge": challenge, "code_challenge_method": "S256"})
    response = _follow(session, response, REDIRECT_URI)
    assert response.status_code in (302, 303), response.text
    assert "code" in parse_qs(urlsplit(response.headers["location"]).query)


def test_code_without_pkce_is_refused(config: dict[str, Any]) -> None:
    response = requests.get(config["authorization_endpoint"], allow_redirects=False, timeout=TIMEOUT, params={
        "client_id": WEB_CLIENT, "response_type": "code", "scope": "openid profile", "redirect_uri": REDIRECT_URI})
    assert response.status_code in (302, 303)
    query = parse_qs(urlsplit(response.headers["location"]).query)
    assert query["error"] == ["invalid_request"] and "code" not in query


@pytest.mark.parametrize(("username", "password"), [("ada", "wrong"), ("nobody", "x")])
def test_wrong_password_at_the_form_does_not_redirect(config: dict[str, Any], username: str, password: str) -> None:
    response, _, _ = _sign_in(config, username, password)
    assert response.status_code in (200, 401)
    assert "location" not in response.headers
    assert "Wrong username or password" in response.text
    assert "<h1>Sign in to HOPE</h1>" in response.text


# Keycloak (production) -------------------------------------------------------------------------------------------

def _realm() -> dict[str, Any]:
    return dict(json.loads(Path(REALM_FILE).read_text()))


def test_keycloak_realm_roles_and_clients() -> None:
    realm = _realm()
    assert realm["realm"] == "hope" and realm["enabled"] is True
    assert {r["name"] for r in realm["roles"]["realm"]} == ROLES
    clients = {c["clientId"]: c for c in realm["clients"]}
    assert set(clients) == {"hope-web", "hope-slicer"}

    web = clients["hope-web"]
    assert web["publicClient"] is True and web["standardFlowEnabled"] is True
    assert web["implicitFlowEnabled"] is False and web["directAccessGrantsEnabled"] is False
    assert web["attributes"]["pkce.code.challenge.method"] == "S256"
    assert set(web["redirectUris"]) == {REDIRECT_URI, "https://hope.example.org/auth/callback"}
    assert web["webOrigins"]

    slicer = clients["hope-slicer"]
    assert slicer["publicClient"] is True and slicer["directAccessGrantsEnabled"] is True
    assert slicer["standardFlowEnabled"] is False and slicer["implicitFlowEnabled"] is False

    for client in clients.values():
        mappers = [m for m in client["protocolMappers"] if m["protocolMapper"] == "oidc-audience-mapper"]
        assert len(mappers) == 1, client["clientId"]
        assert mappers[0]["config"]["included.custom.audience"] == "hope"
        assert mappers[0]["config"]["access.token.claim"] == "true"
        # Keycloak reads every attribute and mapper setting as a string
        assert all(isinstance(v, str) for v in {**client["attributes"], **mappers[0]["config"]}.values())


def test_keycloak_realm_users_match_the_demo_file() -> None:
    users = {u["username"]: u for u in _realm()["users"]}
    assert set(users) == set(ONE_PER_ROLE)
    assert {role for u in users.values() for role in u["realmRoles"]} == ROLES
    for username, user in users.items():
        assert user["enabled"] is True
        assert user["realmRoles"] == DEMO[username]["roles"]
        (credential,) = user["credentials"]
        assert credential == {"type": "password", "value": demo_password(username), "temporary": False}


def test_missing_node_modules_says_to_run_setup(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(oidc_provider, "PROVIDER_DIR", tmp_path)
    settings = OidcProviderSettings(port=free_port(), redirect_uris=(REDIRECT_URI,), log_dir=tmp_path)
    with pytest.raises(RuntimeError, match="scripts/setup.sh"):
        oidc_provider_process(settings)
