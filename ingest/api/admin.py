"""POST /jobs/{job_id}/fail|cancel|retry: IngestCMD's actions for the administrators of the API.

The same transitions as `IngestCMD job --state FAILED`, `IngestCMD cancel` and `IngestCMD retry`
(the functions in `ingest.cli.admin` are called as they are, so the command line and the console
cannot disagree): every write is a compare-and-swap on the IngestJob's status, and the operator
reacts to it exactly as to `kubectl patch` (it stops the worker and rolls back what it wrote).

Only the users in `INGEST_ADMIN_USERS` may act (`caller.py`). Everyone else gets 403 before the job
is even looked up, so the answer says nothing about which jobs exist. An action that does not fit
the job's state (cancel a finished job, retry one that did not fail) is 409 with the reason.
"""
from __future__ import annotations

import argparse
import asyncio
import json
from collections.abc import Callable
from typing import Any, Final

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ingest import jobs, logs
from ingest.api.caller import caller_of
from ingest.api.state import parse_job_id
from ingest.cli import admin as ingestcmd
from ingest.config import Settings
from ingest.kube import JobStore

MAX_REASON: Final = 1024


def fail(store: JobStore, settings: Settings, job_id: int, reason: str) -> dict[str, Any]:
    """`IngestCMD job --state FAILED --task-percent 0 --exception REASON`, refused once the job is complete."""
    job = ingestcmd.find(store, job_id)
    if jobs.state_document(job)["complete"]:
        raise ingestcmd.CommandError(f"job ID {job_id} is already complete; there is nothing to fail.")
    fields = argparse.Namespace(job_id=job_id, state=jobs.FAILED, task=None, task_percent=0.0, exception=reason)
    return ingestcmd.command_job(store, fields)


def cancel(store: JobStore, settings: Settings, job_id: int, reason: str) -> dict[str, Any]:
    return ingestcmd.command_cancel(store, argparse.Namespace(job_id=job_id, reason=reason))


def retry(store: JobStore, settings: Settings, job_id: int, reason: str) -> dict[str, Any]:
    return ingestcmd.command_retry(store, argparse.Namespace(job_id=job_id), settings)


ACTIONS: Final[dict[str, Callable[[JobStore, Settings, int, str], dict[str, Any]]]] = {
    "fail": fail, "cancel": cancel, "retry": retry,
}


async def reason_of(request: Request, default: str) -> str:
    """The optional JSON body `{"reason": "..."}`."""
    raw = await request.body()
    if not raw.strip():
        return default
    try:
        body = json.loads(raw)
    except ValueError:
        raise HTTPException(400, "the body must be JSON, e.g. {\"reason\": \"stuck on a dead node\"}") from None
    reason = body.get("reason") if isinstance(body, dict) else None
    if reason is None:
        return default
    if not isinstance(reason, str) or len(reason) > MAX_REASON:
        raise HTTPException(400, f"reason must be a string of at most {MAX_REASON} characters")
    return reason.strip() or default


async def act(request: Request) -> JSONResponse:
    action = request.path_params["action"]
    if action not in ACTIONS:
        raise HTTPException(404, f"no such action: {action} (fail, cancel or retry)")
    services = request.app.state.services
    caller = caller_of(request, services.settings)
    if not caller.admin:
        raise HTTPException(403, "only administrators (INGEST_ADMIN_USERS) may fail, cancel or retry jobs")
    job_id = parse_job_id(request.path_params["job_id"])
    logs.bind_job(job_id)
    who = caller.user or "an administrator"
    verb = "cancelled" if action == "cancel" else "failed"
    reason = await reason_of(request, f"{verb} by {who} from the web console")
    try:
        document = await asyncio.to_thread(ACTIONS[action], services.jobs, services.settings, job_id, reason)
    except ingestcmd.CommandError as error:
        message = str(error)
        if "does not exist" in message:
            raise HTTPException(404, f"job ID {job_id} does not exist.") from None
        raise HTTPException(409, message) from None
    return JSONResponse(document)
