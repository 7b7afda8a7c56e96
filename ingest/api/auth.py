"""Optional authentication: bearer tokens, or a user named by a trusted proxy's header.

Off unless configured (Pacifica's default too, minus its implicit superuser: with auth off, jobs
simply record no user). With `INGEST_AUTH_TOKENS_FILE` (a mounted Secret: one `token user` pair
per line, or a JSON object token -> user) every endpoint but the health probes, `/`, `/metrics` and
`/openapi.json` needs `Authorization: Bearer <token>`, and answers 401 without a valid one. With
`INGEST_AUTH_HEADER` (e.g. Pacifica's `X-Http-Authed-User`) a proxy in front of the service has
authenticated the client and names the user; requests without the header get 401. The user is put
in the request scope as `ingest.user` and recorded in the IngestJob spec.
"""
from __future__ import annotations

import hmac
import json
from pathlib import Path
from typing import Mapping

from starlette.types import ASGIApp, Receive, Scope, Send

from ingest.api.errors import error_response

OPEN_PATHS = frozenset({"/", "/healthz", "/readyz", "/metrics", "/openapi.json"})


def load_tokens(path: str) -> dict[str, str]:
    """token -> user, from JSON (`{"token": "user"}`) or lines of `token user` (# comments)."""
    text = Path(path).read_text()
    if text.lstrip().startswith("{"):
        return {str(token): str(user) for token, user in json.loads(text).items()}
    tokens = {}
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            token, _, user = line.partition(" ")
            tokens[token] = user.strip() or token
    return tokens


def is_preflight(scope: Scope) -> bool:
    """tus's OPTIONS (and a browser's CORS preflight, which never carries credentials) say nothing about data."""
    return scope["method"] == "OPTIONS" and (scope["path"] == "/uploads" or scope["path"].startswith("/uploads/"))


class Authentication:
    """ASGI middleware: resolve the user or answer 401, before any handler reads the body."""

    def __init__(self, app: ASGIApp, *, tokens: Mapping[str, str] | None, header: str | None) -> None:
        self.app = app
        self.tokens = dict(tokens or {})
        self.header = header.lower().encode() if header else None

    def user(self, scope: Scope) -> str | None:
        headers = dict(scope.get("headers") or [])
        if self.header is not None:
            value = headers.get(self.header, b"").decode("latin-1").strip()
            if value:
                return value
        if self.tokens:
            scheme, _, token = headers.get(b"authorization", b"").decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                for known, user in self.tokens.items():  # compare every token in constant time
                    if hmac.compare_digest(known.encode(), token.strip().encode()):
                        return user
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or is_preflight(scope):
            await self.app(scope, receive, send)
            return
        user = self.user(scope)
        if user is None:
            how = "a valid bearer token (Authorization: Bearer ...)" if self.tokens else f"the {self.header.decode()} header set by the proxy"
            response = error_response(401, f"authentication required: send {how}",
                                      {"WWW-Authenticate": 'Bearer realm="ingest"'} if self.tokens else None)
            await response(scope, receive, send)
            return
        scope["ingest.user"] = user
        await self.app(scope, receive, send)
