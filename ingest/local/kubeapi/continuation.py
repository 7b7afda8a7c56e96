"""``continue`` tokens for paginated lists, shaped like the real server's.

A token is base64 of ``{"v": "meta.k8s.io/v1", "rv": <version of the first page>, "start":
<the last key served>}``: opaque to clients, which only hand it back. The version fixes the
snapshot every page of one list shows; the key says where the next page begins. When the version
has left the compaction window the list cannot go on consistently, and the answer is what a real
server sends: 410 with reason ``Expired``, plus a fresh token (version -1, "now") in the Status's
``metadata.continue`` for a client that accepts an inconsistent remainder.
"""
from __future__ import annotations

import base64
import json
from typing import Any

from . import errors
from .errors import ApiError

VERSION = "meta.k8s.io/v1"
LATEST = -1  # an "inconsistent" token: continue from the key, at the current version

EXPIRED_MESSAGE = (
    "The provided continue parameter is too old to display a consistent list result. You can "
    "start a new list without the continue parameter, or use the continue token in this response "
    "to retrieve the remainder of the results. Continuing with the provided token results in an "
    "inconsistent list - objects that were created, modified, or deleted between the time the "
    "first chunk was returned and now may show up in the list."
)

Key = tuple[str, str]


def encode(rv: int, last: Key) -> str:
    data = json.dumps({"v": VERSION, "rv": rv, "start": list(last)}, separators=(",", ":"))
    return base64.urlsafe_b64encode(data.encode()).decode().rstrip("=")


def decode(token: str, *, current: int | None = None) -> tuple[int, Key]:
    """(snapshot version, last key served); a malformed token is 400, as on a real server."""
    try:
        padded = token + "=" * (-len(token) % 4)
        data = json.loads(base64.urlsafe_b64decode(padded.encode()))
        if data.get("v") != VERSION:
            raise ValueError("unknown version")
        rv = int(data["rv"])
        ns, name = data["start"]
        if not isinstance(ns, str) or not isinstance(name, str) or not name:
            raise ValueError("bad key")
    except (ValueError, KeyError, TypeError, AttributeError):
        raise errors.bad_request("continue key is not valid: malformed token") from None
    if rv == LATEST and current is not None:
        rv = current
    elif rv <= 0:
        raise errors.bad_request("continue key is not valid: incorrect encoded start "
                                 "resourceVersion (version meta.k8s.io/v1)")
    return rv, (ns, name)


class Expired(ApiError):
    """410 Gone for a token whose snapshot was compacted; carries the inconsistent token."""

    def __init__(self, token: str | None) -> None:
        super().__init__(410, "Expired", EXPIRED_MESSAGE)
        self.token = token

    def status(self) -> dict[str, Any]:
        body = super().status()
        if self.token:
            body["metadata"] = {"continue": self.token}
        return body


def expired(after: Key | None) -> Expired:
    return Expired(encode(LATEST, after) if after is not None else None)
