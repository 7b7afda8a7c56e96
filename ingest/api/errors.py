"""Errors as JSON documents, never a traceback.

Pacifica answers errors with `{"status": "404 Not Found", "message": ...}`; so do we, for every
error Starlette or our handlers raise, including the ones nobody planned for (500).
"""
from __future__ import annotations

import http
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ingest.kube import transient

log = logging.getLogger(__name__)


def error_response(code: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    phrase = http.HTTPStatus(code).phrase
    return JSONResponse({"status": f"{code} {phrase}", "message": message}, status_code=code, headers=headers)


async def http_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    message = exc.detail
    if exc.status_code == 404 and message == http.HTTPStatus(404).phrase:
        message = f"no such endpoint: {request.url.path}"
    elif exc.status_code == 405 and message == http.HTTPStatus(405).phrase:
        message = f"{request.method} is not allowed on {request.url.path}"
    return error_response(exc.status_code, str(message), dict(exc.headers or {}))


async def unexpected_error(request: Request, exc: Exception) -> JSONResponse:
    if transient(exc):
        log.warning("%s %s: the Kubernetes API is unavailable: %s", request.method, request.url.path, exc)
        return error_response(503, "the Kubernetes API is unavailable right now; try again shortly",
                              {"Retry-After": "5"})
    log.exception("unexpected error serving %s %s", request.method, request.url.path)
    return error_response(500, f"internal error: {type(exc).__name__}; the service log has the details")


HANDLERS = {HTTPException: http_error, Exception: unexpected_error}
