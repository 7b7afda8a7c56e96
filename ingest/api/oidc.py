"""OIDC bearer tokens: a JWT signed by the configured issuer names the user.

What facilities run today: users log in at the site's identity provider (Keycloak, Dex, ...) and
send its access token. PyJWT does the cryptography; this module only decides what to trust:

- The keys come from the issuer's own discovery document (`/.well-known/openid-configuration` ->
  `jwks_uri`), and the document must name the configured issuer.
- Only asymmetric algorithms are accepted, and only the key's own: a token cannot choose `none`,
  nor HMAC with the public key as the secret.
- `exp`, `iss` and `aud` are required and checked (30 s of clock leeway).
- The key set is cached; a token with an unknown key id refreshes it at most once per
  `REFRESH_SECONDS`, so a flood of made-up key ids costs the identity provider nothing.

Fetching keys is blocking network I/O: `user()` runs on a thread (the middleware sees to it).
"""
from __future__ import annotations

import json
import logging
import threading
import time
import urllib.request
from typing import Any, Final

import jwt

from ingest.users import is_user_name

log = logging.getLogger(__name__)

ALGORITHMS: Final = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
REFRESH_SECONDS: Final = 30.0  # at most one key-set fetch per this long on unknown key ids
MAX_AGE_SECONDS: Final = 3600.0  # keys are re-read this often anyway (rotation)
LEEWAY_SECONDS: Final = 30
FETCH_TIMEOUT: Final = 5.0
MAX_DOCUMENT_BYTES: Final = 1024 * 1024


class IssuerUnavailable(Exception):
    """The identity provider did not answer: the request can be retried, it is not unauthenticated."""


def _fetch_json(url: str) -> dict[str, Any]:
    try:
        with urllib.request.urlopen(url, timeout=FETCH_TIMEOUT) as response:
            document = json.loads(response.read(MAX_DOCUMENT_BYTES + 1)[:MAX_DOCUMENT_BYTES])
    except (OSError, ValueError) as error:
        raise IssuerUnavailable(f"{url}: {error}") from None
    if not isinstance(document, dict):
        raise IssuerUnavailable(f"{url} did not answer a JSON object")
    return document


class OidcVerifier:
    """Verifies bearer JWTs of one issuer for one audience; thread-safe."""

    def __init__(self, *, issuer: str, audience: str, user_claim: str) -> None:
        self.issuer = issuer
        self.audience = audience
        self.user_claim = user_claim
        self._lock = threading.Lock()
        self._keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}  # kid -> (key, the alg the issuer pinned)
        self._fetched = float("-inf")

    def _refresh(self, *, forced: bool) -> None:
        now = time.monotonic()
        with self._lock:
            age = now - self._fetched
            if (forced and age < REFRESH_SECONDS) or (not forced and age < MAX_AGE_SECONDS):
                return
            discovery = _fetch_json(f"{self.issuer}/.well-known/openid-configuration")
            if discovery.get("issuer", "").rstrip("/") != self.issuer or not isinstance(discovery.get("jwks_uri"), str):
                raise IssuerUnavailable(f"the discovery document of {self.issuer} names another issuer or no jwks_uri")
            listed = _fetch_json(discovery["jwks_uri"]).get("keys")
            keys: dict[str, tuple[jwt.PyJWK, str | None]] = {}
            for data in listed if isinstance(listed, list) else []:
                # Public signing keys only: an `oct` (shared secret) key would let HMAC in.
                if not isinstance(data, dict) or data.get("kty") not in ("RSA", "EC", "OKP") \
                        or data.get("use", "sig") != "sig" or not isinstance(data.get("kid"), str):
                    continue
                try:
                    keys[data["kid"]] = (jwt.PyJWK(data), data.get("alg"))
                except jwt.PyJWTError as error:
                    log.warning("OIDC: skipping key %s of %s: %s", data["kid"], self.issuer, error)
            self._keys = keys
            self._fetched = now

    def _key(self, key_id: str) -> tuple[jwt.PyJWK, str | None] | None:
        self._refresh(forced=False)
        if key_id not in self._keys:
            self._refresh(forced=True)
        return self._keys.get(key_id)

    def user(self, token: str) -> str | None:
        """The user the token names, or None if it is not a valid token of this issuer for us."""
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            return None
        key_id, algorithm = header.get("kid"), header.get("alg")
        if not isinstance(key_id, str) or algorithm not in ALGORITHMS:
            return None
        found = self._key(key_id)
        if found is None or (found[1] is not None and found[1] != algorithm):
            return None
        try:
            claims = jwt.decode(
                token, found[0].key, algorithms=[algorithm], audience=self.audience, issuer=self.issuer,
                leeway=LEEWAY_SECONDS, options={"require": ["exp", "iss", "aud"]},
            )
        except jwt.PyJWTError as error:
            log.info("OIDC token refused: %s", error)
            return None
        user = claims.get(self.user_claim)
        return user if is_user_name(user) else None
