"""The tus 1.0.0 wire protocol: its headers, how they are read, and what every answer carries.

Kept apart from the handlers so the rules of the protocol (which header, which status) read in
one place: 412 for a missing or other Tus-Resumable, 415 for a PATCH that is not
`application/offset+octet-stream`, 400 for malformed numbers, metadata or checksums, 460 for a
checksum mismatch. Answers are JSON errors like every other endpoint's, plus the tus headers and
the CORS headers a browser page (tus-js-client, Uppy) needs to read them.
"""
from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from ingest.api.errors import error_response

if TYPE_CHECKING:
    from _hashlib import HASH

VERSION: Final = "1.0.0"
EXTENSIONS: Final = "creation,creation-with-upload,termination,expiration,checksum"
CHECKSUM_ALGORITHMS: Final = {"sha1": hashlib.sha1, "sha256": hashlib.sha256}
PATCH_TYPE: Final = "application/offset+octet-stream"
JOB_ID_HEADER: Final = "Ingest-Job-Id"
CHECKSUM_MISMATCH: Final = 460

# Everything a browser script may read from a tus answer, and send in a tus request.
EXPOSED: Final = ", ".join((
    "Location", "Tus-Resumable", "Tus-Version", "Tus-Extension", "Tus-Max-Size", "Tus-Checksum-Algorithm",
    "Upload-Offset", "Upload-Length", "Upload-Metadata", "Upload-Expires", "Upload-Defer-Length", JOB_ID_HEADER,
))
ALLOWED_HEADERS: Final = ", ".join((
    "Authorization", "Content-Type", "Tus-Resumable", "Upload-Offset", "Upload-Length", "Upload-Metadata",
    "Upload-Checksum", "X-Requested-With",
))
ALLOWED_METHODS: Final = "POST, HEAD, PATCH, DELETE, OPTIONS"


class TusError(Exception):
    """A request the protocol refuses: the HTTP status and a sentence for the client."""

    def __init__(self, status: int, message: str, headers: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = dict(headers or {})


def cors(request: Request) -> dict[str, str]:
    origin = request.headers.get("origin")
    if not origin:
        return {}
    return {"Access-Control-Allow-Origin": origin, "Access-Control-Expose-Headers": EXPOSED, "Vary": "Origin"}


def headers(request: Request, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Tus-Resumable, CORS and `extra`: what every tus answer carries."""
    return {"Tus-Resumable": VERSION, "Cache-Control": "no-store", **cors(request), **dict(extra or {})}


def answer(request: Request, status: int, extra: Mapping[str, str] | None = None, body: bytes = b"") -> Response:
    return Response(body, status_code=status, headers=headers(request, extra))


def refuse(request: Request, error: TusError | HTTPException) -> Response:
    if isinstance(error, HTTPException):
        error = TusError(error.status_code, str(error.detail), error.headers)
    if error.status == CHECKSUM_MISMATCH:  # not in http.HTTPStatus: error_response cannot phrase it
        response = Response(
            f'{{"status":"460 Checksum Mismatch","message":{json.dumps(error.message, ensure_ascii=False)}}}',
            status_code=CHECKSUM_MISMATCH, media_type="application/json",
        )
    else:
        response = error_response(error.status, error.message)
    response.headers.update(headers(request, error.headers))
    if request.method == "HEAD":  # a HEAD answer has no body; its status says it all
        response.body = b""
        response.headers["content-length"] = "0"
    return response


def check_resumable(request: Request) -> None:
    version = request.headers.get("tus-resumable")
    if version != VERSION:
        got = "no Tus-Resumable header" if version is None else f"Tus-Resumable {version!r}"
        raise TusError(412, f"this server speaks tus {VERSION}; the request has {got}", {"Tus-Version": VERSION})


def non_negative(request: Request, name: str) -> int | None:
    text = request.headers.get(name)
    if text is None:
        return None
    if not (text.isascii() and text.isdigit()):
        raise TusError(400, f"{name} must be a non-negative integer, got {text!r}")
    return int(text)


def parse_metadata(text: str | None) -> dict[str, str]:
    """Upload-Metadata: `key base64value` pairs separated by commas; a value may be absent."""
    values: dict[str, str] = {}
    if not text:
        return values
    for item in text.split(","):
        key, _, encoded = item.strip().partition(" ")
        if not key or " " in encoded.strip() or key in values:
            raise TusError(400, f"Upload-Metadata is malformed at {item.strip()[:60]!r} (want 'key base64value')")
        try:
            values[key] = base64.b64decode(encoded.strip(), validate=True).decode("utf-8") if encoded.strip() else ""
        except (binascii.Error, UnicodeDecodeError):
            raise TusError(400, f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text") from None
    return values


@dataclasses.dataclass(frozen=True, slots=True)
class Checksum:
    """An Upload-Checksum header: the algorithm and the digest the body must have."""

    algorithm: str
    digest: bytes

    def hasher(self) -> HASH:
        return CHECKSUM_ALGORITHMS[self.algorithm]()


def parse_checksum(text: str | None) -> Checksum | None:
    if text is None:
        return None
    algorithm, _, encoded = text.strip().partition(" ")
    if algorithm not in CHECKSUM_ALGORITHMS:
        known = ", ".join(CHECKSUM_ALGORITHMS)
        raise TusError(400, f"Upload-Checksum algorithm {algorithm!r} is not supported (use {known})")
    try:
        digest = base64.b64decode(encoded.strip(), validate=True)
    except binascii.Error:
        raise TusError(400, "Upload-Checksum must be '<algorithm> <base64 digest>'") from None
    if len(digest) != CHECKSUM_ALGORITHMS[algorithm]().digest_size:
        size = CHECKSUM_ALGORITHMS[algorithm]().digest_size
        raise TusError(400, f"Upload-Checksum: a {algorithm} digest is {size} bytes, got {len(digest)}")
    return Checksum(algorithm, digest)


def check_patch_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != PATCH_TYPE:
        raise TusError(415, f"a tus PATCH body must be sent as Content-Type {PATCH_TYPE}, not {content_type or 'none'}")
