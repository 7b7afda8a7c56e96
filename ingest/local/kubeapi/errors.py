"""Errors as the Kubernetes API server reports them: ``kind: Status`` bodies.

Clients branch on ``reason`` and ``code`` (kopf retries on 409 Conflict, kubectl prints
``message`` verbatim, the ``kubernetes`` client raises ``ApiException`` with the body), so every
failure leaves the emulator as a Status with the same reason, code, message shape and details a
real server would send. Everything raises :class:`ApiError`; only the HTTP layer turns it into
a response.
"""
from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """A failed request, carrying the Status body the client will see."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        *,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            body["details"] = self.details
        return body


def qualified(plural: str, group: str) -> str:
    """``ingestjobs.ingest.pacifica.org`` or ``pods`` (core): how messages name a resource."""
    return f"{plural}.{group}" if group else plural


def not_found(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        404, "NotFound", f'{qualified(plural, group)} "{name}" not found',
        details={"name": name, "group": group, "kind": plural},
    )


def already_exists(plural: str, group: str, name: str) -> ApiError:
    return ApiError(
        409, "AlreadyExists", f'{qualified(plural, group)} "{name}" already exists',
        details={"name": name, "group": group, "kind": plural},
    )


def conflict(plural: str, group: str, name: str, why: str) -> ApiError:
    return ApiError(
        409, "Conflict",
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        details={"name": name, "group": group, "kind": plural},
    )


def bad_request(message: str) -> ApiError:
    return ApiError(400, "BadRequest", message)


def gone(message: str) -> ApiError:
    return ApiError(410, "Expired", message)


def method_not_allowed(message: str = "the server does not allow this method on the requested resource") -> ApiError:
    return ApiError(405, "MethodNotAllowed", message)


def unsupported_media_type(content_type: str, accepted: list[str]) -> ApiError:
    return ApiError(
        415, "UnsupportedMediaType",
        f"the body of the request was in an unknown format - accepted media types include: "
        f"{', '.join(accepted)}",
    )


def forbidden(plural: str, group: str, name: str, message: str) -> ApiError:
    return ApiError(
        403, "Forbidden", message,
        details={"name": name, "group": group, "kind": plural},
    )


class Cause:
    """One field error, rendered as Kubernetes renders ``field.Error``."""

    __slots__ = ("reason", "field", "detail")

    def __init__(self, reason: str, field: str, detail: str) -> None:
        self.reason = reason  # FieldValueInvalid, FieldValueRequired, ...
        self.field = field
        self.detail = detail  # "Invalid value: 0: spec.jobId in body should be ..."

    def text(self) -> str:
        return f"{self.field}: {self.detail}" if self.field else self.detail


def show(value: Any) -> str:
    """Render a bad value roughly like Go's ``%#v`` in field errors (strings quoted)."""
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, (int, float)):
        return json.dumps(value)
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> ApiError:
    """422 Invalid, the message joining causes like the real server does."""
    gk = f"{kind}.{group}" if group else kind
    texts = [c.text() for c in causes]
    joined = texts[0] if len(texts) == 1 else "[" + ", ".join(texts) + "]"
    return ApiError(
        422, "Invalid", f'{gk} "{name}" is invalid: {joined}',
        details={
            "name": name, "group": group, "kind": kind,
            "causes": [
                {"reason": c.reason, "message": c.detail, "field": c.field} for c in causes
            ],
        },
    )
