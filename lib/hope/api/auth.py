"""Sign-in routes: ``/auth/`` (is it on?), ``/auth/token`` (Slicer's username and password), the browser sign-in
(``/auth/login`` -> the provider -> ``/auth/callback``), ``/auth/logout`` and ``/auth/token/valid``.

MONAI Label 0.8.5's own ``/auth`` routes cannot be used: they call ``jwt.decode`` without ``algorithms`` (PyJWT 2
refuses, so every token is a 401) and need Keycloak's non-standard ``public_key`` field. HOPE's follow standard
OpenID Connect (discovery, JWKS), so they work with Keycloak and with any certified provider.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any

import requests
from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse

from hope.api.identity import current_identity
from hope.auth.browser import LOGIN_COOKIE, LOGIN_MAX_AGE_S, SESSION_COOKIE, LoginSealer, LoginState
from hope.auth.identity import Identity
from hope.auth.provider import ProviderError
from hope.auth.tokens import TokenVerifier
from hope.config.auth import AuthSettings
from hope.errors import ConflictError, UnauthenticatedError


def _token_request(settings: AuthSettings, endpoint: str, data: dict[str, str]) -> dict[str, Any]:
    try:
        response = requests.post(endpoint, data=data, timeout=settings.provider_timeout_seconds)
    except requests.RequestException as error:
        raise ProviderError(f"the sign-in provider's token endpoint did not answer ({error})") from error
    if response.status_code in {400, 401}:
        raise UnauthenticatedError(f"the sign-in provider refused: {response.text[:300]}")
    if not response.ok:
        raise ProviderError(f"the sign-in provider's token endpoint answered HTTP {response.status_code}")
    return dict(response.json())


def build_router(settings: AuthSettings, verifier: TokenVerifier | None,
                 route_table: Callable[[], list[dict[str, str]]]) -> APIRouter:
    """The ``/auth`` routes; with sign-in off, only ``/auth/``, ``/auth/token/valid`` and ``/auth/routes`` answer.

    Args:
        settings: the ``auth:`` settings.
        verifier: checks the provider's tokens (``None`` with sign-in off).
        route_table: every route the server serves and the role it needs, for ``GET /auth/routes``.
    """
    router = APIRouter(prefix="/auth", tags=["Auth"])
    sealer = LoginSealer()

    def signed_in_only() -> TokenVerifier:
        if verifier is None:
            raise ConflictError("sign-in is off on this server (auth.enabled in configs/server.yaml)")
        return verifier

    @router.get("/", summary="Whether sign-in is on, and the provider (as Slicer's MONAI Label module asks)")
    def auth_enabled() -> dict[str, Any]:
        return {"enabled": settings.enabled, "client_id": settings.password_client_id, "realm": settings.issuer}

    @router.post("/token", summary="Sign in with a username and password (Slicer); the provider's access token")
    def token(username: Annotated[str, Form()], password: Annotated[str, Form()]) -> dict[str, Any]:
        endpoints = signed_in_only().provider.endpoints()
        answer = _token_request(settings, endpoints.token_endpoint, {
            "grant_type": "password", "client_id": settings.password_client_id, "username": username,
            "password": password, "scope": "openid profile"})
        return {key: answer[key] for key in ("access_token", "token_type", "expires_in") if key in answer}

    @router.get("/token/valid", summary="Who the token (or browser session) says you are")
    def token_valid(identity: Annotated[Identity, Depends(current_identity)]) -> dict[str, Any]:
        return {"username": identity.user, "role": identity.role.label, "verified": identity.verified}

    @router.get("/routes", summary="Every route this server serves, and the role it needs")
    def routes() -> list[dict[str, str]]:
        return route_table()

    @router.get("/login", summary="Sign in in a browser: on to the provider's login page, then back to `next`")
    def login(request: Request, next: str = "/ohif/") -> RedirectResponse:  # noqa: A002 (the query parameter)
        endpoints = signed_in_only().provider.endpoints()
        started = LoginState.start(next)
        target = started.authorization_url(endpoints.authorization_endpoint, settings.browser_client_id,
                                           str(request.url_for("auth_callback")))
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(LOGIN_COOKIE, sealer.seal(started), max_age=LOGIN_MAX_AGE_S, httponly=True,
                            samesite="lax", secure=request.url.scheme == "https", path="/auth/")
        return response

    @router.get("/callback", name="auth_callback", summary="Where the provider sends the browser back")
    def callback(request: Request, code: str = "", state: str = "") -> RedirectResponse:
        checker = signed_in_only()
        login = sealer.open(request.cookies.get(LOGIN_COOKIE), state)
        if not code:
            raise UnauthenticatedError(f"the provider sent no code ({request.query_params.get('error', 'no reason')})"
                                       ": start again at /auth/login")
        answer = _token_request(settings, checker.provider.endpoints().token_endpoint, {
            "grant_type": "authorization_code", "client_id": settings.browser_client_id, "code": code,
            "redirect_uri": str(request.url_for("auth_callback")), "code_verifier": login.verifier})
        access_token = str(answer.get("access_token", ""))
        checker.verify(access_token)  # refuses a token HOPE would not accept, before any cookie is set
        response = RedirectResponse(login.next_path, status_code=303)
        response.set_cookie(SESSION_COOKIE, access_token, max_age=int(answer.get("expires_in", 3600)),
                            httponly=True, samesite="lax", secure=request.url.scheme == "https", path="/")
        response.delete_cookie(LOGIN_COOKIE, path="/auth/")
        return response

    @router.post("/logout", summary="Sign the browser out (its session cookie is removed)")
    def logout() -> RedirectResponse:
        response = RedirectResponse("/auth/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    return router
