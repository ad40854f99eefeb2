"""The OpenID Connect provider as HOPE sees it: its discovery document and its signing keys, cached."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

import jwt
import requests

from hope.config.auth import AuthSettings
from hope.errors import StoreError, UnauthenticatedError


class ProviderError(StoreError):
    """The sign-in provider could not be reached or answered something unusable; nothing was decided."""


@dataclass(frozen=True)
class Endpoints:
    """The provider endpoints HOPE uses, from its discovery document."""

    issuer: str
    jwks_uri: str
    token_endpoint: str
    authorization_endpoint: str
    end_session_endpoint: str | None


class OidcProvider:
    """Discovery (``<issuer>/.well-known/openid-configuration``) and the provider's JWKS, fetched lazily and cached.

    A token whose ``kid`` is unknown fetches the keys again (the provider rotated them), at most once every
    ``jwks_refresh_seconds``, so that a flood of forged key ids cannot turn HOPE into a load on the provider.
    """

    def __init__(self, settings: AuthSettings) -> None:
        self.settings = settings
        self._lock = threading.Lock()
        self._endpoints: Endpoints | None = None
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at = float("-inf")

    def _get(self, url: str) -> dict[str, Any]:
        try:
            response = requests.get(url, timeout=self.settings.provider_timeout_seconds)
            response.raise_for_status()
            document = response.json()
        except (requests.RequestException, ValueError) as error:
            raise ProviderError(f"the sign-in provider did not answer {url} usably ({error}); check that it is "
                                "running and that auth.issuer in configs/server.yaml is its issuer URL") from error
        if not isinstance(document, dict):
            raise ProviderError(f"the sign-in provider answered {url} with {type(document).__name__}, not an object")
        return document

    def endpoints(self) -> Endpoints:
        """The provider's endpoints (discovery is fetched once); its issuer must be ``auth.issuer``."""
        with self._lock:
            if self._endpoints is None:
                issuer = self.settings.issuer
                doc = self._get(f"{issuer}/.well-known/openid-configuration")
                if str(doc.get("issuer", "")).rstrip("/") != issuer:
                    raise ProviderError(f"the provider at {issuer} calls itself {doc.get('issuer')!r}: set "
                                        "auth.issuer in configs/server.yaml to exactly that")
                try:
                    self._endpoints = Endpoints(issuer=str(doc["issuer"]), jwks_uri=str(doc["jwks_uri"]),
                                                token_endpoint=str(doc["token_endpoint"]),
                                                authorization_endpoint=str(doc["authorization_endpoint"]),
                                                end_session_endpoint=doc.get("end_session_endpoint"))
                except KeyError as missing:
                    raise ProviderError(f"the provider's discovery document lacks {missing}") from None
            return self._endpoints

    def signing_key(self, kid: str) -> jwt.PyJWK:
        """The provider's public key ``kid``; fetched again if unknown (rate-limited).

        Raises:
            UnauthenticatedError: the provider has no such key (a forged or stale token).
        """
        with self._lock:
            key = self._keys.get(kid)
            due = time.monotonic() - self._fetched_at >= self.settings.jwks_refresh_seconds
        if key is None and due:
            keys = self._fetch_keys()
            with self._lock:
                self._keys, self._fetched_at = keys, time.monotonic()
                key = keys.get(kid)
        if key is None:
            raise UnauthenticatedError(f"the token is signed with key {kid[:40]!r}, which the sign-in provider "
                                       "does not publish: sign in again")
        return key

    def _fetch_keys(self) -> dict[str, jwt.PyJWK]:
        keys: dict[str, jwt.PyJWK] = {}
        for entry in self._get(self.endpoints().jwks_uri).get("keys", []):
            if not isinstance(entry, dict) or "kid" not in entry or entry.get("use", "sig") != "sig":
                continue
            try:
                keys[str(entry["kid"])] = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type this PyJWT cannot use (e.g. an encryption key); tokens never name it
        return keys
