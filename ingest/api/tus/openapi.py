"""The tus endpoints in the OpenAPI document (`ingest.api.openapi` merges `PATHS` into its paths).

tus is its own protocol with its own status codes (412 for another version, 460 for a checksum
mismatch) and headers as its parameters; the document names them so a reader (or a generated
client) sees the whole surface, and tests/integration/test_tus.py holds the service to them with
the real tuspy client.
"""
from __future__ import annotations

from typing import Any, Final

TUS_RESUMABLE: Final = {"name": "Tus-Resumable", "in": "header", "required": True, "schema": {"const": "1.0.0"},
                        "description": "The protocol version; any other (or none) gets 412 with Tus-Version."}
UPLOAD_ID: Final = {"name": "upload_id", "in": "path", "required": True,
                    "schema": {"type": "string", "pattern": "^[0-9]+-[A-Za-z0-9_-]+$"},
                    "description": "`<job_id>-<token>`, from the Location of the creation answer."}
OFFSET_HEADER: Final = {"schema": {"type": "integer", "minimum": 0}, "description": "Bytes the service has."}


def _answer(description: str, **headers: str) -> dict[str, Any]:
    return {"description": description,
            "headers": {name: {"schema": {"type": "string"}, "description": text} for name, text in headers.items()}}


def _error(description: str) -> dict[str, Any]:
    schema = {"$ref": "#/components/schemas/Error"}
    return {"description": description, "content": {"application/json": {"schema": schema}}}


_COMMON_ERRORS: Final = {
    "401": {"$ref": "#/components/responses/401"},
    "404": _error("No such upload, or it belongs to another user (the same answer, revealing nothing)."),
    "410": _error("The upload's job ended (terminated, expired or refused); `message` says how."),
    "412": _error("Tus-Resumable is missing or another version."),
}
_UPLOAD_STATE: Final = {
    "Upload-Offset": "Bytes received so far.", "Upload-Length": "The declared length.",
    "Upload-Metadata": "As the client sent it at creation.", "Upload-Expires": "When it expires without a PATCH.",
    "Ingest-Job-Id": "The job id (poll /get_state with it).",
}

PATHS: Final[dict[str, Any]] = {
    "/uploads/": {
        "options": {
            "operationId": "tus_options", "summary": "What this tus server supports (no credentials needed).",
            "security": [],
            "responses": {"204": _answer(
                "The protocol's capabilities.", **{"Tus-Version": "1.0.0", "Tus-Extension": "Supported extensions.",
                                                   "Tus-Max-Size": "The largest Upload-Length (INGEST_MAX_BODY_BYTES).",
                                                   "Tus-Checksum-Algorithm": "sha1,sha256"})},
        },
        "post": {
            "operationId": "tus_create",
            "summary": "Create a resumable upload: the job exists from now on (OK / UPLOADING / 0).",
            "description": (
                "Headers: `Upload-Length` (required, bytes), `Upload-Metadata` (tus: `key base64value` pairs, "
                "comma-separated; `filename` is recorded). With a body of type application/offset+octet-stream "
                "(creation-with-upload) the first bytes go in at once. `Upload-Defer-Length` is not supported."
            ),
            "parameters": [TUS_RESUMABLE,
                           {"name": "Upload-Length", "in": "header", "required": True,
                            "schema": {"type": "integer", "minimum": 0}, "description": "The bundle's size in bytes."}],
            "responses": {
                "201": {**_answer("Created; Location is its URL.", Location="The upload's URL.", **_UPLOAD_STATE),
                        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/StateDocument"}}}},
                "400": _error("A header is malformed, or the first bytes are not a tar (the job FAILED)."),
                "413": _error("Upload-Length is above Tus-Max-Size."),
                **{code: _COMMON_ERRORS[code] for code in ("401", "412")},
            },
        },
    },
    "/uploads/{upload_id}": {
        "options": {
            "operationId": "tus_upload_options", "summary": "CORS preflight and capabilities.", "security": [],
            "parameters": [UPLOAD_ID],
            "responses": {"204": _answer("As OPTIONS /uploads/.")},
        },
        "head": {
            "operationId": "tus_head", "summary": "Where the upload stands: resume from Upload-Offset.",
            "parameters": [UPLOAD_ID, TUS_RESUMABLE],
            "responses": {"200": _answer("The upload's state.", **_UPLOAD_STATE), **_COMMON_ERRORS},
        },
        "patch": {
            "operationId": "tus_patch", "summary": "Append bytes at Upload-Offset; the last byte hands the bundle on.",
            "parameters": [UPLOAD_ID, TUS_RESUMABLE,
                           {"name": "Upload-Offset", "in": "header", "required": True, **OFFSET_HEADER},
                           {"name": "Upload-Checksum", "in": "header", "required": False, "schema": {"type": "string"},
                            "description": "`sha1|sha256 <base64 digest>` of this PATCH's body."}],
            "requestBody": {"required": True, "content": {
                "application/offset+octet-stream": {"schema": {"type": "string", "format": "binary"}}}},
            "responses": {
                "204": _answer("The bytes are kept.", **_UPLOAD_STATE),
                "400": _error("A malformed header, or bytes that are not a tar (the job FAILED; `message` says why)."),
                "409": _error("Upload-Offset is not the upload's offset (the answer's Upload-Offset is)."),
                "413": _error("The bytes go past Upload-Length."),
                "415": _error("The body is not application/offset+octet-stream."),
                "423": _error("Another request is writing to this upload."),
                "460": _error("The body does not match Upload-Checksum; nothing was kept."),
                "503": _error("The object store or the Kubernetes API failed; HEAD and retry."),
                **_COMMON_ERRORS,
            },
        },
        "delete": {
            "operationId": "tus_terminate", "summary": "Terminate: the job FAILS at UPLOADING, its parts are removed.",
            "parameters": [UPLOAD_ID, TUS_RESUMABLE],
            "responses": {"204": _answer("Terminated."), "409": _error("The upload is complete; its job goes on."),
                          **_COMMON_ERRORS},
        },
    },
}
PATHS["/uploads"] = {method: {**operation, "operationId": operation["operationId"] + "_no_slash"}
                     for method, operation in PATHS["/uploads/"].items()}
