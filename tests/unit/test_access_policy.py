"""The route-rule table and the browser sign-in state, without a server."""

from __future__ import annotations

import time
from dataclasses import replace

import pytest

from hope.auth.binding import bind_host, check_bind, is_loopback
from hope.auth.browser import LoginSealer, LoginState
from hope.auth.identity import Role
from hope.config import ConfigError
from hope.config.auth import AuthSettings
from hope.errors import UnauthenticatedError
from hope.server.policy import RULES, Open, RouteRule, needed, unruled_routes


@pytest.mark.parametrize("method, path, role", [
    ("GET", "/info/", Role.USER),
    ("HEAD", "/datastore/image", Role.USER),
    ("POST", "/infer/spine_ct", Role.ANNOTATOR),
    ("PUT", "/datastore/label", Role.ANNOTATOR),
    ("POST", "/hope/review/1.2.3", Role.REVIEWER),
    ("PUT", "/cases/1.2.3", Role.REVIEWER),
    ("POST", "/train/spine_ct", Role.ADMIN),
    ("PUT", "/hope/retrain", Role.ADMIN),
    ("POST", "/cases/import", Role.ADMIN),
    ("GET", "/hope/audit", Role.ADMIN),
])
def test_each_route_needs_its_role(method: str, path: str, role: Role) -> None:
    assert needed(method, path) == role


def test_sign_in_itself_and_signed_events_need_no_token() -> None:
    assert needed("POST", "/auth/token") is Open.PUBLIC
    assert needed("GET", "/auth/callback") is Open.PUBLIC
    assert needed("POST", "/hope/events") is Open.SIGNED_EVENT


def test_a_request_matching_several_rules_needs_the_strictest() -> None:
    rules = [RouteRule(frozenset({"GET"}), "/cases/{study_uid}", Role.USER),
             RouteRule(frozenset({"GET"}), "/cases/audit", Role.REVIEWER),
             RouteRule(frozenset({"GET"}), "/{path:path}", Open.PUBLIC)]
    assert needed("GET", "/cases/audit", rules) == Role.REVIEWER
    assert needed("GET", "/cases/1.2", rules) == Role.USER
    assert needed("GET", "/elsewhere", rules) is Open.PUBLIC
    assert needed("DELETE", "/cases/1.2", rules) is None


def test_a_served_route_without_a_rule_is_reported() -> None:
    served = [("GET", "/info/"), ("HEAD", "/datastore/image"), ("POST", "/hope/new-thing")]
    assert unruled_routes(served) == ["POST /hope/new-thing"]
    assert not unruled_routes((method, rule.path) for rule in RULES for method in rule.methods)


def test_the_login_state_comes_back_only_sealed_by_this_server_and_fresh() -> None:
    sealer, other = LoginSealer(), LoginSealer()
    login = LoginState.start("/ohif/viewer?StudyInstanceUIDs=1.2")
    cookie = sealer.seal(login)
    assert sealer.open(cookie, login.state) == login
    with pytest.raises(UnauthenticatedError, match="not made by this server"):
        other.open(cookie, login.state)
    with pytest.raises(UnauthenticatedError, match="another sign-in"):
        sealer.open(cookie, "another-state")
    with pytest.raises(UnauthenticatedError, match="no sign-in"):
        sealer.open(None, login.state)
    stale = replace(login, started=time.time() - 3600)
    with pytest.raises(UnauthenticatedError, match="too long"):
        sealer.open(sealer.seal(stale), stale.state)


@pytest.mark.parametrize("target", ["https://evil.example/", "//evil.example/x", "/\\evil.example", "javascript:x"])
def test_the_login_returns_only_to_this_server(target: str) -> None:
    assert LoginState.start(target).next_path == "/"


def test_a_network_address_needs_sign_in() -> None:
    assert bind_host(["start_server", "--host", "10.0.0.5"]) == "10.0.0.5"
    assert bind_host(["start_server", "-i", "::1"]) == "::1"
    assert bind_host(["start_server"]) == "0.0.0.0"  # MONAI Label's default: every interface
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    check_bind("127.0.0.1", AuthSettings())
    with pytest.raises(ConfigError, match="sign-in off"):
        check_bind("0.0.0.0", AuthSettings())
    check_bind("0.0.0.0", AuthSettings(enabled=True, issuer="https://id.example.org/realms/hope"))
