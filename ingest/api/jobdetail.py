"""GET /jobs/{job_id}: everything the console's Job page shows, from where it already lives.

- the state document and the job's user, operation, phase and attempts (the IngestJob);
- its problems (`status.problems`: file, reason, detail) when verification found any;
- its story: the Kubernetes Events the operator posted on it (`kubectl describe` shows the same);
- for a job that succeeded, its archived files with size and digest, read from the job's final
  metadata document in the archive (the worker verified every digest before it wrote the file);
- which administrator actions the caller may take on it now.

Nothing here is kept between requests: a job page costs one GET, one Event list and, once a job
succeeded, one object read, whatever the history. Large transactions list their first
`MAX_FILES` files and say how many there are.
"""
from __future__ import annotations

import asyncio
import datetime
import json
from typing import Any, Final

import kubernetes
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ingest import jobs
from ingest.api.caller import Caller, caller_of
from ingest.api.state import parse_job_id
from ingest.bundle import BundleError, archive_key, entry_path
from ingest.config import Settings
from ingest.kube import JobStore, retrying
from ingest.storage import Storage, is_missing

MAX_FILES: Final = 1000
MAX_EVENTS: Final = 500


def read_job(store: JobStore, job_id: int, caller: Caller) -> dict[str, Any]:
    """The job, or 404 with the same sentence whether it is absent or not the caller's."""
    job = store.get(jobs.job_name(job_id))
    if job is None or not caller.may_read(job):
        raise HTTPException(404, f"job ID {job_id} does not exist.")
    return job


def _moment(text: Any) -> datetime.datetime:
    try:
        moment = datetime.datetime.fromisoformat(str(text).replace("Z", "+00:00"))
    except ValueError:
        return datetime.datetime.min.replace(tzinfo=datetime.UTC)
    return moment if moment.tzinfo else moment.replace(tzinfo=datetime.UTC)


def timeline(store: JobStore, job: dict[str, Any]) -> list[dict[str, Any]]:
    """The job's Events, oldest first."""
    name = job["metadata"]["name"]
    core = kubernetes.client.CoreV1Api(store.client)
    # _preload_content=False: the raw urllib3 response (camelCase JSON as the server sent it)
    response: Any = retrying(lambda: core.list_namespaced_event(
        store.namespace, field_selector=f"involvedObject.name={name}", limit=MAX_EVENTS, _preload_content=False))
    events = []
    for event in json.loads(response.data).get("items", []):
        involved = event.get("involvedObject") or {}
        if involved.get("kind") not in (None, jobs.KIND):
            continue
        meta = event.get("metadata") or {}
        time = (event.get("lastTimestamp") or event.get("eventTime") or event.get("firstTimestamp")
                or meta.get("creationTimestamp"))
        events.append({
            "time": time, "type": event.get("type") or "Normal", "reason": event.get("reason") or "",
            "message": event.get("message") or "", "count": event.get("count") or 1,
        })
    events.sort(key=lambda event: _moment(event["time"]))
    return events


def problems(job: dict[str, Any]) -> list[dict[str, str]]:
    """`status.problems` as (file, reason, detail), whatever shape each entry has."""
    found = []
    for problem in (job.get("status") or {}).get("problems") or []:
        if isinstance(problem, dict):
            found.append({field: str(problem.get(field) or "") for field in ("file", "reason", "detail")})
    return found


def succeeded(document: dict[str, Any]) -> bool:
    return document["state"] == jobs.OK and bool(document["complete"])


def archived_files(storage: Storage, settings: Settings, job_id: int) -> tuple[list[dict[str, Any]], int] | None:
    """The Files entries of the job's final metadata document, with their archive keys; None when absent."""
    try:
        raw = storage.get_bytes(storage.archive, settings.metadata_key_template.format(job_id=job_id))
    except Exception as error:
        if is_missing(error):
            return None
        raise
    document = json.loads(raw)
    entries = [item for item in document if isinstance(item, dict) and item.get("destinationTable") == "Files"] \
        if isinstance(document, list) else []
    files = []
    for entry in entries[:MAX_FILES]:
        subdir, name = str(entry.get("subdir") or ""), str(entry.get("name") or "")
        file_id = entry.get("_id") if isinstance(entry.get("_id"), int) else None
        try:
            path = entry_path(subdir, name, what="Files entry")
            key: str | None = archive_key(path, job_id=job_id, template=settings.archive_key_template, file_id=file_id)
        except BundleError:
            path, key = f"data/{subdir}/{name}", None
        files.append({
            "path": path, "name": name, "subdir": subdir, "size": entry.get("size"),
            "hashtype": entry.get("hashtype") or "sha1", "hashsum": str(entry.get("hashsum") or "").lower(),
            "mimetype": entry.get("mimetype"), "file_id": file_id, "key": key,
        })
    return files, len(entries)


def actions(document: dict[str, Any], caller: Caller) -> list[str]:
    """The administrator actions that make sense on the job now (none for other callers)."""
    if not caller.admin:
        return []
    if not document["complete"]:
        return ["fail", "cancel"]
    return ["retry"] if document["state"] == jobs.FAILED else []


def job_page(store: JobStore, storage: Storage, settings: Settings, job_id: int, caller: Caller) -> dict[str, Any]:
    job = read_job(store, job_id, caller)
    document = jobs.state_document(job)
    spec, status = job.get("spec") or {}, job.get("status") or {}
    page: dict[str, Any] = {
        "job": document,
        "user": spec.get("user"),
        "operation": spec.get("operation"),
        "phase": status.get("phase"),
        "attempts": status.get("attempts"),
        "problems": problems(job),
        "events": timeline(store, job),
        "files": None,
        "files_total": None,
        "actions": actions(document, caller),
    }
    if succeeded(document):
        listed = archived_files(storage, settings, job_id)
        if listed is not None:
            page["files"], page["files_total"] = listed
    return page


async def get_job(request: Request) -> JSONResponse:
    job_id = parse_job_id(request.path_params["job_id"])
    services = request.app.state.services
    caller = caller_of(request, services.settings)
    page = await asyncio.to_thread(job_page, services.jobs, services.storage, services.settings, job_id, caller)
    return JSONResponse(page)
