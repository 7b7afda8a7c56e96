"""Optional authentication that cannot be forged: bearer tokens, OIDC tokens, a trusted proxy's header.

Off unless configured (Pacifica's default too, minus its implicit superuser: with auth off, jobs
simply record no user). Any of three ways names the user, and once one is configured every
endpoint but the health probes, `/`, `/metrics` and `/openapi.json` answers 401 without it:

- `INGEST_AUTH_TOKENS_FILE` (a mounted Secret): `token user` lines or a JSON object token -> user.
  Every line must name a user: a token is a secret and must never become a user name (it would be
  stored in the job and sent to the policy service). Start-up refuses a file that breaks this.
- `INGEST_AUTH_OIDC_ISSUER`: JWTs signed by the issuer (`ingest.api.oidc`).
- `INGEST_AUTH_HEADER` (e.g. Pacifica's `X-Http-Authed-User`): a proxy in front has authenticated
  the client and names the user. Believed only when the socket peer is in
  `INGEST_AUTH_TRUSTED_PROXIES`; from anyone else the header is ignored, so a client that reaches
  the API directly cannot name itself. The peer is the TCP peer: uvicorn runs with proxy headers
  off (`ingest.api.__main__`), so `X-Forwarded-For` cannot make a client look like the proxy.

The user is put in the request scope as `ingest.user` and recorded in the IngestJob spec.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
from collections.abc import Mapping
from pathlib import Path
from typing import TypedDict

from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.api.errors import error_response
from ingest.api.oidc import IssuerUnavailable, OidcVerifier
from ingest.config import Settings
from ingest.users import is_user_name

OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/openapi.json", "/ui"})
OPEN_PREFIXES = ("/ui/",)  # the web console's static files: no data, the page asks for a token
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class AuthConfigError(ValueError):
    """The authentication settings cannot be served safely; the API refuses to start."""


def load_tokens(path: str) -> dict[str, str]:
    """token -> user, from JSON (`{"token": "user"}`) or lines of `token user` (# comments)."""
    text = Path(path).read_text()
    if text.lstrip().startswith("{"):
        try:
            pairs = list(json.loads(text).items())
        except (ValueError, AttributeError) as error:
            raise AuthConfigError(f"{path}: not a JSON object of token -> user ({error})") from None
        where = [f"key {position + 1}" for position in range(len(pairs))]
    else:
        pairs, where = [], []
        for number, line in enumerate(text.splitlines(), 1):
            line = line.strip()
            if line and not line.startswith("#"):
                token, _, user = line.partition(" ")
                pairs.append((token, user.strip()))
                where.append(f"line {number}")
    tokens: dict[str, str] = {}
    for (token, user), place in zip(pairs, where, strict=True):
        if not isinstance(token, str) or not token:
            raise AuthConfigError(f"{path}, {place}: the token is empty")
        if not is_user_name(user):
            raise AuthConfigError(f"{path}, {place}: a token must be followed by the user it names "
                                  "(letters, digits and . _ @ + -); a token is never a user name")
        tokens[token] = user
    return tokens


def is_preflight(scope: Scope) -> bool:
    """tus's OPTIONS (and a browser's CORS preflight, which never carries credentials) say nothing about data."""
    path: str = scope["path"]
    return scope["method"] == "OPTIONS" and (path == "/uploads" or path.startswith("/uploads/"))
def trusted_networks(cidrs: tuple[str, ...]) -> tuple[Network, ...]:
    try:
        return tuple(ipaddress.ip_network(cidr, strict=False) for cidr in cidrs)
    except ValueError as error:
        raise AuthConfigError(f"INGEST_AUTH_TRUSTED_PROXIES: {error}") from None


class Authentication:
    """ASGI middleware: resolve the user or answer 401, before any handler reads the body."""

    def __init__(self, app: ASGIApp, *, tokens: Mapping[str, str] | None = None, header: str | None = None,
                 trusted: tuple[Network, ...] = (), oidc: OidcVerifier | None = None) -> None:
        self.app = app
        self.tokens = [(token.encode(), user) for token, user in (tokens or {}).items()]
        self.header = header.lower().encode() if header else None
        self.trusted = trusted
        self.oidc = oidc

    def from_trusted_proxy(self, scope: Scope) -> bool:
        client = scope.get("client")
        if not client or not self.trusted:
            return False
        try:
            address = ipaddress.ip_address(client[0])
        except ValueError:  # a Unix socket peer has no address: not a proxy we were told of
            return False
        return any(address in network for network in self.trusted)

    def token_user(self, token: bytes) -> str | None:
        found = None
        for known, user in self.tokens:  # compare every token, in constant time
            if hmac.compare_digest(known, token):
                found = user
        return found

    async def user(self, scope: Scope) -> str | None:
        headers = dict(scope.get("headers") or [])
        if self.header is not None and self.header in headers and self.from_trusted_proxy(scope):
            value = headers[self.header].decode("latin-1").strip()
            return value if is_user_name(value) else None
        scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return None
        user = self.token_user(token.encode("latin-1"))
        if user is None and self.oidc is not None and token.count(".") == 2:
            user = await asyncio.to_thread(self.oidc.user, token)
        return user

    def how(self) -> str:
        ways = []
        if self.tokens or self.oidc:
            ways.append("a valid bearer token (Authorization: Bearer ...)")
        if self.header:
            ways.append(f"come through the authenticating proxy (which sets {self.header.decode()})")
        return " or ".join(ways)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] in OPEN_PATHS
            or scope["path"].startswith(OPEN_PREFIXES)
            or is_preflight(scope)
        ):
            await self.app(scope, receive, send)
            return
        try:
            user = await self.user(scope)
        except IssuerUnavailable:
            response = error_response(503, "the identity provider does not answer; try again shortly",
                                      {"Retry-After": "5"})
            await response(scope, receive, send)
            return
        if user is None:
            challenge = {"WWW-Authenticate": 'Bearer realm="ingest"'} if self.tokens or self.oidc else None
            response = error_response(401, f"authentication required: {self.how()}", challenge)
            await response(scope, receive, send)
            return
        scope["ingest.user"] = user
        await self.app(scope, receive, send)


class AuthOptions(TypedDict):
    """The Authentication middleware's keyword arguments."""

    tokens: dict[str, str] | None
    header: str | None
    trusted: tuple[Network, ...]
    oidc: OidcVerifier | None


def authentication_options(settings: Settings) -> AuthOptions | None:
    """The middleware's arguments from the settings; None if authentication is off.

    Raises AuthConfigError for settings that would be unsafe or lock everyone out."""
    if not (settings.auth_tokens_file or settings.auth_header or settings.auth_oidc_issuer):
        return None
    if settings.auth_header and not settings.auth_trusted_proxies:
        raise AuthConfigError("INGEST_AUTH_HEADER is set but INGEST_AUTH_TRUSTED_PROXIES is empty: the header would "
                              "be believed from nobody; list the proxies' addresses (CIDRs)")
    oidc = None
    if settings.auth_oidc_issuer:
        if not settings.auth_oidc_audience:
            raise AuthConfigError("INGEST_AUTH_OIDC_ISSUER is set but INGEST_AUTH_OIDC_AUDIENCE is empty: a token "
                                  "issued for another service would be accepted")
        oidc = OidcVerifier(issuer=settings.auth_oidc_issuer, audience=settings.auth_oidc_audience,
                            user_claim=settings.auth_oidc_user_claim)
    return AuthOptions(
        tokens=load_tokens(settings.auth_tokens_file) if settings.auth_tokens_file else None,
        header=settings.auth_header or None,
        trusted=trusted_networks(settings.auth_trusted_proxies),
        oidc=oidc,
    )
