"""GET /openapi.json: the HTTP contract as an OpenAPI 3.1 document, written by hand.

Written out rather than generated from the routes because the contract is Pacifica's, not
whatever the handlers happen to return: every status code a client may see, the exact keys and
types of the state document, and the error document. tests/integration/test_openapi.py checks the
document is valid and runs schemathesis against the live API, so it cannot drift from the code.

Authentication is optional (`ingest.api.auth`): when tokens are configured, every path but the
probes, `/`, `/metrics` and this document needs a bearer token and answers 401 without one, so
those operations list both "no security" and "bearer" and document 401.
"""
from __future__ import annotations

import importlib.metadata
from typing import Any, Final

from starlette.requests import Request
from starlette.responses import JSONResponse

from ingest import jobs
from ingest.api.tus.openapi import PATHS as TUS_PATHS

TASKS: Final = sorted(set(jobs.UPLOAD_TASKS) | set(jobs.MOVE_TASKS))


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*codes: int) -> dict[str, Any]:
    return {str(code): {"$ref": f"#/components/responses/{code}"} for code in codes}


_ERROR_RESPONSES: Final = {
    "400": "The request is malformed; `message` says what is wrong.",
    "401": "Authentication is configured and the request carries no valid bearer token.",
    "404": "No such job.",
    "408": "The upload stalled: no bytes for the configured stall time. The job is FAILED.",
    "413": "The body is larger than the configured limit (the message names the limit in bytes).",
    "415": "The Content-Type is not one this endpoint accepts.",
    "503": "The object store did not take the upload. The job is FAILED.",
}

PUBLIC: Final[list[dict[str, list[str]]]] = []  # no authentication, ever
PROTECTED: Final = [{}, {"bearer": []}]  # a token when the deployment configures tokens

STATE_RESPONSE: Final = _json(_ref("StateDocument"), "The job's state document.")

DOCUMENT: Final[dict[str, Any]] = {
    "openapi": "3.1.0",
    "info": {
        "title": "Pacifica ingest (Kubernetes-native)",
        "version": importlib.metadata.version("pacifica-ingest-k8s"),
        "description": (
            "Pacifica's ingest contract: POST a bundle (an uncompressed tar of metadata.txt and data/), "
            "get a job id at once, poll /get_state until `complete`."
        ),
    },
    "security": PROTECTED,
    "paths": {
        "/": {"get": {
            "operationId": "root", "summary": "Pacifica's liveness answer.", "security": PUBLIC,
            "responses": {"200": _json(_ref("Root"), "The service is up.")},
        }},
        "/healthz": {"get": {
            "operationId": "healthz", "summary": "Liveness probe.", "security": PUBLIC,
            "responses": {"200": _json(_ref("Health"), "The process serves requests.")},
        }},
        "/readyz": {"get": {
            "operationId": "readyz", "summary": "Readiness probe: job cache synced and object store reachable.",
            "security": PUBLIC,
            "responses": {
                "200": _json(_ref("Ready"), "Ready to take uploads."),
                "503": _json(_ref("NotReady"), "Not ready; `problems` says why."),
            },
        }},
        "/ingest": {"post": {
            "operationId": "ingest", "summary": "Upload a bundle (the path Pacifica's documentation names).",
            "requestBody": {"$ref": "#/components/requestBodies/Bundle"},
            "responses": {"200": STATE_RESPONSE, **_errors(400, 401, 408, 413, 415, 503)},
        }},
        "/upload": {"post": {
            "operationId": "upload", "summary": "Upload a bundle (the path Pacifica's clients use).",
            "requestBody": {"$ref": "#/components/requestBodies/Bundle"},
            "responses": {"200": STATE_RESPONSE, **_errors(400, 401, 408, 413, 415, 503)},
        }},
        "/move": {"post": {
            "operationId": "move",
            "summary": "Ingest files already on storage the service reaches, given their metadata.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("MoveDocument")}},
            },
            "responses": {"200": STATE_RESPONSE, **_errors(400, 401, 408, 413, 415, 503)},
        }},
        "/get_state": {"get": {
            "operationId": "get_state", "summary": "The state document of a job.",
            "parameters": [{"name": "job_id", "in": "query", "required": True, "schema": _ref("JobId")}],
            "responses": {"200": STATE_RESPONSE, **_errors(400, 401, 404)},
        }},
        "/get_state/{job_id}": {"get": {
            "operationId": "get_state_by_path", "summary": "The state document of a job (id in the path).",
            "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": _ref("JobId")}],
            "responses": {"200": STATE_RESPONSE, **_errors(400, 401, 404)},
        }},
        "/openapi.json": {"get": {
            "operationId": "openapi", "summary": "This document.", "security": PUBLIC,
            "responses": {"200": _json({"type": "object"}, "The OpenAPI document of this service.")},
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics (text exposition format).", "security": PUBLIC,
            "responses": {"200": {
                "description": "Metrics in the Prometheus text format.",
                "content": {"text/plain": {"schema": {"type": "string"}}},
            }},
        }},
    },
    "components": {
        "securitySchemes": {
            "bearer": {
                "type": "http", "scheme": "bearer",
                "description": "Required only when the deployment configures tokens (INGEST_AUTH_TOKENS_FILE).",
            },
        },
        "requestBodies": {
            "Bundle": {
                "required": True,
                "description": "The raw, uncompressed tar (no multipart wrapper); chunked transfer encoding is accepted.",
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "application/x-tar": {"schema": {"type": "string", "format": "binary"}},
                },
            },
        },
        "responses": {
            str(code): _json(_ref("Error"), description) | (
                {"headers": {"WWW-Authenticate": {"schema": {"type": "string"}, "description": "Present when tokens are configured."}}}
                if code == "401" else {}
            )
            for code, description in _ERROR_RESPONSES.items()
        },
        "schemas": {
            "JobId": {"type": "integer", "minimum": 1, "description": "The job id, which is also the transaction id."},
            "StateDocument": {
                "type": "object",
                "additionalProperties": False,
                "required": ["job_id", "state", "task", "task_percent", "complete", "updated", "created", "exception"],
                "properties": {
                    "job_id": {"type": "integer"},
                    "state": {"type": "string", "description": "OK or FAILED (an administrator may write others).",
                              "examples": [jobs.OK, jobs.FAILED]},
                    "task": {"type": "string", "enum": TASKS},
                    "task_percent": {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$", "examples": ["0.0", "100.0"]},
                    "complete": {"type": "boolean", "description": "FAILED, or ingest metadata at 100."},
                    "updated": {"$ref": "#/components/schemas/WireTime"},
                    "created": {"$ref": "#/components/schemas/WireTime"},
                    "exception": {"type": "string", "description": "Why the job failed (empty unless FAILED)."},
                },
            },
            "WireTime": {"type": "string", "pattern": r"^([0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2})?$",
                         "description": "UTC, YYYY-MM-DD HH:MM:SS."},
            "Error": {
                "type": "object",
                "additionalProperties": False,
                "required": ["status", "message"],
                "properties": {
                    "status": {"type": "string", "examples": ["404 Not Found"]},
                    "message": {"type": "string"},
                },
            },
            "Root": {"type": "object", "required": ["message"], "additionalProperties": False,
                     "properties": {"message": {"const": "Pacifica Ingest Up and Running"}}},
            "Health": {"type": "object", "required": ["status"], "additionalProperties": False,
                       "properties": {"status": {"const": "ok"}}},
            "Ready": {"type": "object", "required": ["status"], "additionalProperties": False,
                      "properties": {"status": {"const": "ready"}}},
            "NotReady": {
                "type": "object", "required": ["status", "problems"], "additionalProperties": False,
                "properties": {"status": {"const": "not ready"}, "problems": {"type": "array", "items": {"type": "string"}}},
            },
            "MoveDocument": {
                "type": "array",
                "description": (
                    "Pacifica metadata: a list of objects with destinationTable; Files entries also carry "
                    "`source`, where the file is now. What JSON Schema cannot say (safe paths, one value per "
                    "Transactions field, one entry per file) is checked too: 400 names the item. A missing or "
                    "unusable `source`, an unknown hashtype or a hashsum that does not fit it are not refused "
                    "here: the job fails at `move files` (upstream's step for them)."
                ),
                "items": {
                    "type": "object",
                    "required": ["destinationTable"],
                    "properties": {"destinationTable": {"type": "string", "examples": ["Files", "Transactions.submitter"]}},
                    "allOf": [
                        {"if": {"required": ["destinationTable"], "properties": {"destinationTable": {"const": "Files"}}},
                         "then": _ref("FilesEntry")},
                        {"if": {"required": ["destinationTable"], "properties": {"destinationTable": {
                            "pattern": "^Transactions\\.", "not": {"const": "Transactions._id"}}}},
                         "then": {"required": ["value"]}},
                    ],
                },
            },
            "FilesEntry": {
                "type": "object",
                "required": ["name", "subdir", "size", "hashtype", "hashsum"],
                "properties": {
                    "name": {"type": "string", "minLength": 1, "description": "The file name (no `..`, no control characters)."},
                    "subdir": {"type": "string", "description": "The folder under data/ (relative, no `..`)."},
                    "size": {"type": "integer", "minimum": 0},
                    "hashtype": {"type": "string", "examples": ["sha1"]},
                    "hashsum": {"type": "string", "examples": ["f572d396fae9206628714fb2ce00f72e94f2258f"]},
                    "mimetype": {"type": "string", "maxLength": 255, "pattern": "^[\\x20-\\x7e]*$"},
                    "source": {"description": "Where the file is now: a path under a move root, or s3://bucket/key."},
                },
            },
        },
    },
}


DOCUMENT["paths"].update(TUS_PATHS)  # resumable uploads: tus's own headers and status codes


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(DOCUMENT)
