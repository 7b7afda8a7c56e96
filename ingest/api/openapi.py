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
    "401": "Authentication is configured and the request carries no valid credentials (bearer or OIDC token, or the "
           "trusted proxy's header).",
    "403": "The caller is not an administrator (INGEST_ADMIN_USERS).",
    "404": "No such job (or not one the caller may read: the answer is the same).",
    "409": "The action does not fit the job's state (e.g. cancel a complete job, retry one that did not fail).",
    "408": "The upload stalled: no bytes for the configured stall time. The job is FAILED.",
    "413": "The body is larger than the configured limit (the message names the limit in bytes).",
    "415": "The Content-Type is not one this endpoint accepts.",
    "503": ("The object store did not take the upload (the job is FAILED), or the replica's memory budget is spent "
            "right now: retry after `Retry-After` seconds (a job made for the request is FAILED)."),
}

PUBLIC: Final[list[dict[str, list[str]]]] = []  # no authentication, ever
PROTECTED: Final[list[dict[str, list[str]]]] = [{}, {"bearer": []}]  # a token when the deployment configures tokens

STATE_RESPONSE: Final = _json(_ref("StateDocument"), "The job's state document.")
# What a client does next with a new job: poll it. The links let schemathesis' stateful mode (and
# client generators) follow a POST with a get_state of the job it made.
SUBMITTED_RESPONSE: Final = STATE_RESPONSE | {"links": {
    "GetStateByPath": {"operationId": "get_state_by_path", "parameters": {"job_id": "$response.body#/job_id"}},
    "GetState": {"operationId": "get_state", "parameters": {"job_id": "$response.body#/job_id"}},
}}

# The job list, a job's page and the administrator actions: what the web console (/ui/) reads,
# documented so other tools can do the same. With authentication on, a user sees only their own
# jobs; administrators (INGEST_ADMIN_USERS) see every job and may act on it.
CONSOLE_PATHS: Final[dict[str, Any]] = {
    "/jobs": {"get": {
        "operationId": "list_jobs",
        "summary": "Jobs, newest first, one page at a time.",
        "description": (
            "Pages follow `continue` (an opaque token from the previous page) until it is null. A page may hold "
            "fewer than `limit` jobs with a non-null `continue` when filters match few jobs in the stretch of "
            "history one request reads: go on with the token. Newest means highest job id."
        ),
        "parameters": [
            {"name": "limit", "in": "query",
             "schema": {"type": "integer", "minimum": 1, "maximum": 500, "default": 50}},
            {"name": "continue", "in": "query", "description": "The token of the previous page; empty: the first page.",
             "schema": {"type": "string", "pattern": "^[0-9]{0,18}$"}},
            {"name": "state", "in": "query", "schema": {"type": "string", "maxLength": 64, "examples": ["FAILED"]}},
            {"name": "incomplete", "in": "query", "schema": {"type": "boolean", "default": False}},
        ],
        "responses": {"200": _json(_ref("JobList"), "A page of jobs."), **_errors(400, 401)},
    }},
    "/jobs/{job_id}": {"get": {
        "operationId": "get_job",
        "summary": "A job's page: state document, problems, Events timeline, archived files, allowed actions.",
        "parameters": [{"name": "job_id", "in": "path", "required": True, "schema": _ref("JobId")}],
        "responses": {"200": _json(_ref("JobPage"), "The job."), **_errors(400, 401, 404)},
    }},
    "/jobs/{job_id}/{action}": {"post": {
        "operationId": "act_on_job",
        "summary": "An administrator's action: fail, cancel or retry (IngestCMD's job, cancel and retry).",
        "parameters": [
            {"name": "job_id", "in": "path", "required": True, "schema": _ref("JobId")},
            {"name": "action", "in": "path", "required": True,
             "schema": {"type": "string", "enum": ["fail", "cancel", "retry"]}},
        ],
        "requestBody": {"required": False, "content": {"application/json": {"schema": _ref("ActionRequest")}}},
        "responses": {"200": STATE_RESPONSE, **_errors(400, 401, 403, 404, 409)},
    }},
    "/ui/": {"get": {
        "operationId": "console", "summary": "The web console (HTML; it reads the endpoints above).",
        "security": PUBLIC,
        "responses": {"200": {"description": "The console's page.",
                              "content": {"text/html": {"schema": {"type": "string"}}}}},
    }},
}

CONSOLE_SCHEMAS: Final[dict[str, Any]] = {
    "JobList": {
        "type": "object", "additionalProperties": False, "required": ["jobs", "continue"],
        "properties": {
            "jobs": {"type": "array", "items": _ref("JobListItem")},
            "continue": {"type": ["string", "null"],
                         "description": "Pass as `continue` for the next (older) page; null at the oldest."},
        },
    },
    "Event": {
        "type": "object", "additionalProperties": False, "required": ["time", "type", "reason", "message", "count"],
        "properties": {
            "time": {"type": ["string", "null"], "description": "RFC 3339, as Kubernetes recorded it."},
            "type": {"type": "string", "examples": ["Normal", "Warning"]},
            "reason": {"type": "string", "examples": ["Staged", "WorkerStarted", "Step", "Failed", "Completed"]},
            "message": {"type": "string"}, "count": {"type": "integer"},
        },
    },
    "Problem": {
        "type": "object", "additionalProperties": False, "required": ["file", "reason", "detail"],
        "properties": {"file": {"type": "string"}, "reason": {"type": "string"}, "detail": {"type": "string"}},
    },
    "ArchivedFile": {
        "type": "object", "additionalProperties": False,
        "required": ["path", "name", "subdir", "size", "hashtype", "hashsum", "mimetype", "file_id", "key"],
        "properties": {
            "path": {"type": "string", "examples": ["data/run1/a.txt"]}, "name": {"type": "string"},
            "subdir": {"type": "string"},
            "size": {"type": ["integer", "null"]}, "hashtype": {"type": "string"}, "hashsum": {"type": "string"},
            "mimetype": {"type": ["string", "null"]}, "file_id": {"type": ["integer", "null"]},
            "key": {"type": ["string", "null"], "description": "The object key in the archive bucket."},
        },
    },
    "JobPage": {
        "type": "object", "additionalProperties": False,
        "required": ["job", "user", "operation", "phase", "attempts", "problems", "events", "files", "files_total",
                     "actions"],
        "properties": {
            "job": _ref("StateDocument"),
            "user": {"type": ["string", "null"]}, "operation": {"type": ["string", "null"]},
            "phase": {"type": ["string", "null"]}, "attempts": {"type": ["integer", "null"]},
            "problems": {"type": "array", "items": _ref("Problem")},
            "events": {"type": "array", "items": _ref("Event"),
                       "description": "The job's Kubernetes Events, oldest first."},
            "files": {"type": ["array", "null"], "items": _ref("ArchivedFile"),
                      "description": "For a job that succeeded, its archived files (the first 1,000); null otherwise."},
            "files_total": {"type": ["integer", "null"]},
            "actions": {"type": "array", "items": {"enum": ["fail", "cancel", "retry"]},
                        "description": "What the caller may do to the job now (empty unless an administrator)."},
        },
    },
    "ActionRequest": {
        "type": "object", "properties": {"reason": {"type": "string", "maxLength": 1024}},
        "description": "Why (recorded as the job's `exception` for fail and cancel).",
    },
}

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
            "responses": {"200": SUBMITTED_RESPONSE, **_errors(400, 401, 408, 413, 415, 503)},
        }},
        "/upload": {"post": {
            "operationId": "upload", "summary": "Upload a bundle (the path Pacifica's clients use).",
            "requestBody": {"$ref": "#/components/requestBodies/Bundle"},
            "responses": {"200": SUBMITTED_RESPONSE, **_errors(400, 401, 408, 413, 415, 503)},
        }},
        "/move": {"post": {
            "operationId": "move",
            "summary": "Ingest files already on storage the service reaches, given their metadata.",
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": _ref("MoveDocument")}},
            },
            "responses": {"200": SUBMITTED_RESPONSE, **_errors(400, 401, 408, 413, 415, 503)},
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
        **CONSOLE_PATHS,
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
                "description": (
                    "The raw, uncompressed tar (no multipart wrapper); chunked transfer encoding is accepted."
                ),
                "content": {
                    "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
                    "application/x-tar": {"schema": {"type": "string", "format": "binary"}},
                },
            },
        },
        "responses": {
            str(code): _json(_ref("Error"), description) | (
                {"headers": {"WWW-Authenticate": {"schema": {"type": "string"},
                                                  "description": "Present when tokens are configured."}}}
                if code == "401" else
                {"headers": {"Retry-After": {"schema": {"type": "string"},
                                             "description": "Seconds to wait when the replica is busy."}}}
                if code == "503" else {}
            )
            for code, description in _ERROR_RESPONSES.items()
        },
        "schemas": {
            "JobId": {"type": "integer", "minimum": 1, "maximum": 2**63 - 1,
                      "description": "The job id, which is also the transaction id."},
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
            **CONSOLE_SCHEMAS,
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
                "properties": {"status": {"const": "not ready"},
                               "problems": {"type": "array", "items": {"type": "string"}}},
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
                    "properties": {"destinationTable": {"type": "string",
                                                        "examples": ["Files", "Transactions.submitter"]}},
                    "allOf": [
                        {"if": {"required": ["destinationTable"],
                                "properties": {"destinationTable": {"const": "Files"}}},
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
                    "name": {"type": "string", "minLength": 1,
                             "description": "The file name (no `..`, no control characters)."},
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


def _job_list_item(state: dict[str, Any]) -> dict[str, Any]:
    """A row of GET /jobs: the state document's keys plus who submitted the job and how."""
    extra = {"user": {"type": ["string", "null"]},
             "operation": {"type": ["string", "null"], "examples": ["upload", "move"]}}
    return {**state, "required": [*state["required"], *extra], "properties": {**state["properties"], **extra}}


DOCUMENT["components"]["schemas"]["JobListItem"] = _job_list_item(DOCUMENT["components"]["schemas"]["StateDocument"])


DOCUMENT["paths"].update(TUS_PATHS)  # resumable uploads: tus's own headers and status codes


async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(DOCUMENT)
