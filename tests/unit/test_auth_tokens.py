"""Access tokens as an attacker and a careless provider would send them: only well-signed, fresh tokens for HOPE pass.

The provider here is a local HTTP server serving a discovery document and a JWKS of keys made in the test, so that
the tokens a real provider never issues (``alg: none``, HS256 signed with the public key, another audience, a
rotated key) can be tried. The real provider's tokens are tried in ``tests/integration/test_sign_in.py``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from hope.auth.identity import Role
from hope.auth.tokens import TokenVerifier
from hope.config.auth import AuthSettings
from hope.errors import ForbiddenError, UnauthenticatedError


class Provider:
    """Discovery and JWKS over HTTP on a free loopback port; keys can be added (rotation) while it runs."""

    def __init__(self) -> None:
        self.keys: dict[str, Any] = {}
        self.jwks_fetches = 0
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                if self.path.endswith("/.well-known/openid-configuration"):
                    body = {"issuer": provider.issuer, "jwks_uri": f"{provider.issuer}/jwks",
                            "token_endpoint": f"{provider.issuer}/token",
                            "authorization_endpoint": f"{provider.issuer}/auth"}
                else:
                    provider.jwks_fetches += 1
                    body = {"keys": [provider.public_jwk(kid) for kid in provider.keys]}
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}/realms/hope"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def add_rsa(self, kid: str) -> None:
        self.keys[kid] = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def add_ec(self, kid: str) -> None:
        self.keys[kid] = ec.generate_private_key(ec.SECP256R1())

    def public_jwk(self, kid: str) -> dict[str, Any]:
        key = self.keys[kid]
        algorithm = jwt.algorithms.RSAAlgorithm if isinstance(key, rsa.RSAPrivateKey) else jwt.algorithms.ECAlgorithm
        jwk = json.loads(algorithm.to_jwk(key.public_key()))
        return {**jwk, "kid": kid, "use": "sig"}

    def public_pem(self, kid: str) -> bytes:
        return self.keys[kid].public_key().public_bytes(serialization.Encoding.PEM,
                                                        serialization.PublicFormat.SubjectPublicKeyInfo)

    def token(self, kid: str = "k1", alg: str = "RS256", **claims: Any) -> str:
        now = int(time.time())
        body = {"iss": self.issuer, "aud": "hope", "iat": now, "exp": now + 300, "sub": "u1",
                "preferred_username": "anna", "realm_access": {"roles": ["monailabel-annotator"]}, **claims}
        body = {k: v for k, v in body.items() if v is not None}
        return jwt.encode(body, self.keys[kid], algorithm=alg, headers={"kid": kid})


@pytest.fixture
def provider() -> Iterator[Provider]:
    served = Provider()
    served.add_rsa("k1")
    yield served
    served.server.shutdown()


def _verifier(provider: Provider, **changes: Any) -> TokenVerifier:
    return TokenVerifier(replace(AuthSettings(enabled=True, issuer=provider.issuer), **changes))


def test_a_well_signed_token_gives_the_user_and_their_highest_role(provider: Provider) -> None:
    identity = _verifier(provider).verify(provider.token(realm_access={"roles": ["monailabel-user",
                                                                                 "monailabel-reviewer"]}))
    assert (identity.user, identity.role, identity.verified) == ("anna", Role.REVIEWER, True)


def test_es256_tokens_are_accepted(provider: Provider) -> None:
    provider.add_ec("e1")
    assert _verifier(provider).verify(provider.token(kid="e1", alg="ES256")).role == Role.ANNOTATOR


#: Claims relative to now (seconds) are made when the test runs, not when the tests are collected.
RELATIVE = ("exp", "nbf")


@pytest.mark.parametrize("claims, reason", [
    ({"aud": "another-app"}, "(?i)audience"),
    ({"iss": "http://127.0.0.1:1/realms/evil"}, "issuer"),
    ({"exp": -120}, "expired"),
    ({"nbf": 600}, "not yet valid"),
    ({"exp": None}, "exp"),
])
def test_tokens_for_another_audience_issuer_or_time_are_refused(provider: Provider, claims: dict[str, Any],
                                                                reason: str) -> None:
    now = int(time.time())
    made = {k: now + v if k in RELATIVE and v is not None else v for k, v in claims.items()}
    with pytest.raises(UnauthenticatedError, match=reason):
        _verifier(provider).verify(provider.token(**made))


def test_the_clock_skew_tolerates_a_token_just_expired(provider: Provider) -> None:
    token = provider.token(exp=int(time.time()) - 10)
    assert _verifier(provider).verify(token).user == "anna"
    with pytest.raises(UnauthenticatedError, match="expired"):
        _verifier(provider, clock_skew_seconds=0).verify(token)


def test_unsigned_and_hmac_tokens_are_refused(provider: Provider) -> None:
    claims = jwt.decode(provider.token(), options={"verify_signature": False})
    unsigned = jwt.encode(claims, None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(UnauthenticatedError, match="'none'"):
        _verifier(provider).verify(unsigned)
    # The classic confusion attack: HS256 "signed" with the provider's public key as the HMAC secret.
    forged = _hs256(claims, provider.public_pem("k1"))
    with pytest.raises(UnauthenticatedError, match="HS256"):
        _verifier(provider).verify(forged)


def test_a_token_signed_by_another_key_is_refused(provider: Provider) -> None:
    provider.add_rsa("k2")
    token = provider.token(kid="k2")
    provider.keys["k2"] = rsa.generate_private_key(public_exponent=65537, key_size=2048)  # publishes another key
    with pytest.raises(UnauthenticatedError, match="Signature verification failed"):
        _verifier(provider).verify(token)


def test_a_rotated_key_is_fetched_once_and_unknown_key_ids_do_not_flood_the_provider(provider: Provider) -> None:
    verifier = _verifier(provider, jwks_refresh_seconds=3600)
    verifier.verify(provider.token())
    assert provider.jwks_fetches == 1
    for i in range(20):
        with pytest.raises(UnauthenticatedError, match="does not publish"):
            verifier.verify(_with_kid(provider, f"x{i}"))
    assert provider.jwks_fetches == 1, "unknown key ids refetched the keys within jwks_refresh_seconds"
    rotating = _verifier(provider, jwks_refresh_seconds=0)
    rotating.verify(provider.token())
    provider.add_rsa("k3")
    assert rotating.verify(provider.token(kid="k3")).user == "anna"


def _hs256(claims: dict[str, Any], secret: bytes) -> str:
    """A token HMAC-signed with ``secret`` (PyJWT itself refuses to use a public key as an HMAC secret)."""
    def part(data: dict[str, Any]) -> bytes:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=")

    signing_input = part({"alg": "HS256", "typ": "JWT", "kid": "k1"}) + b"." + part(claims)
    signature = base64.urlsafe_b64encode(hmac.new(secret, signing_input, hashlib.sha256).digest()).rstrip(b"=")
    return (signing_input + b"." + signature).decode()


def _with_kid(provider: Provider, kid: str) -> str:
    claims = jwt.decode(provider.token(), options={"verify_signature": False})
    return jwt.encode(claims, provider.keys["k1"], algorithm="RS256", headers={"kid": kid})


def test_a_user_without_any_of_hopes_roles_is_forbidden_not_unauthenticated(provider: Provider) -> None:
    with pytest.raises(ForbiddenError, match="none of HOPE's roles"):
        _verifier(provider).verify(provider.token(realm_access={"roles": ["offline_access"]}))


def test_the_roles_claim_and_role_names_are_configurable(provider: Provider) -> None:
    verifier = _verifier(provider, roles_claim="groups", role_names={
        Role.USER: "viewers", Role.ANNOTATOR: "annotators", Role.REVIEWER: "radiologists", Role.ADMIN: "it"})
    assert verifier.verify(provider.token(groups=["radiologists"], realm_access=None)).role == Role.REVIEWER


def test_garbage_is_refused(provider: Provider) -> None:
    for token in ["", "abc", "a.b.c", "Bearer x"]:
        with pytest.raises(UnauthenticatedError):
            _verifier(provider).verify(token)
