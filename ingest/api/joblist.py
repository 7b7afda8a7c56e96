"""GET /jobs: one page of jobs, newest first, as the console's Jobs table shows them.

The Kubernetes API lists objects in key order (`ingest-1`, `ingest-10`, `ingest-100`, ...), which
is no order a person wants, and reading every job to sort them would make one page cost as much as
the whole history. Job ids, though, come from one counter (`ingest.ids`): the newest jobs are the
ids just below the counter. So a page is read downwards from an id, a window of ids at a time,
with a set-based label selector on `ingest.pacifica.org/job-id` (`in (120,119,...)`) through the
API server's paginated list (`limit`/`continue`; a server that ignores `limit` answers the same
window at once). The continue token is the id to go on from.

Cost per page is bounded by the ids it scans, never by how many jobs exist: unfiltered, a page
reads about `limit` ids; with filters (state, incomplete, or a user who sees only their own
jobs), matching jobs may be sparse, so a request scans at most `MAX_SCAN` ids and may answer
fewer than `limit` jobs with a continue token, as a Kubernetes list may. Ids are handed out in
blocks per API replica, so "newest first" is by job id: jobs from two replicas interleave by a
block at most.
"""
from __future__ import annotations

import asyncio
import dataclasses
from typing import Any, Final

import kubernetes
from kubernetes.client.exceptions import ApiException
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ingest import ids, jobs
from ingest.api.caller import Caller, caller_of
from ingest.kube import JobStore, retrying

DEFAULT_LIMIT: Final = 50
MAX_LIMIT: Final = 500
MAX_WINDOW: Final = 250  # ids per label selector: keeps the request line near 2 KB
MAX_SCAN: Final = 2000  # ids one request may scan before answering a partial page


@dataclasses.dataclass(frozen=True)
class Query:
    limit: int
    start: int | None  # the id to read down from; None: from the newest
    state: str | None
    incomplete: bool

    def matches(self, document: dict[str, Any]) -> bool:
        if self.state is not None and document["state"] != self.state:
            return False
        return not (self.incomplete and document["complete"])


def parse_query(params: Any) -> Query:
    text = params.get("limit", str(DEFAULT_LIMIT))  # only an absent limit takes the default: `limit=` is not an integer
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_LIMIT:
        raise HTTPException(400, f"limit must be an integer from 1 to {MAX_LIMIT}, got {text!r}")
    token = params.get("continue") or None
    if token is not None and not (token.isascii() and token.isdigit() and len(token) <= 18):
        raise HTTPException(400, f"continue must be a token from an earlier page of /jobs, got {token[:40]!r}")
    state = params.get("state") or None
    if state is not None and len(state) > 64:
        raise HTTPException(400, "state is longer than any state a job can have")
    flag = (params.get("incomplete") or "false").lower()
    if flag not in ("true", "false", "1", "0"):
        raise HTTPException(400, f"incomplete must be true or false, got {flag[:20]!r}")
    return Query(limit=int(text), start=int(token) if token is not None else None, state=state,
                 incomplete=flag in ("true", "1"))


def newest_job_id(store: JobStore) -> int:
    """The highest job id ever handed out (the counter's next value minus one); 0 before the first."""
    core = kubernetes.client.CoreV1Api(store.client)
    try:
        config_map = retrying(lambda: core.read_namespaced_config_map(ids.COUNTER_CONFIGMAP, store.namespace))
    except ApiException as error:
        if error.status == 404:
            return 0
        raise
    return max(0, int((config_map.data or {}).get(ids.JOB_IDS, "1")) - 1)


def jobs_with_ids(store: JobStore, job_ids: range) -> dict[int, dict[str, Any]]:
    """The jobs that exist among `job_ids`, by id (one paginated, label-selected list)."""
    selector = f"{jobs.JOB_ID_LABEL} in ({','.join(str(job_id) for job_id in job_ids)})"
    found: dict[int, dict[str, Any]] = {}
    for job in retrying(lambda: store.list(selector)):
        job_id = jobs.job_id_of((job.get("metadata") or {}).get("name", ""))
        if job_id is not None:
            found[job_id] = job
    return found


def list_item(job: dict[str, Any]) -> dict[str, Any]:
    """A row of the Jobs table: the state document plus who submitted it and how."""
    spec = job.get("spec") or {}
    return {**jobs.state_document(job), "user": spec.get("user"), "operation": spec.get("operation")}


def read_page(store: JobStore, query: Query, caller: Caller) -> dict[str, Any]:
    newest = newest_job_id(store)
    top = newest if query.start is None else min(query.start, newest)
    items: list[dict[str, Any]] = []
    window = min(MAX_WINDOW, query.limit + 5)  # a few more than a page: gaps of unused ids are common
    scanned = 0
    while top >= 1 and scanned < MAX_SCAN:
        ids_here = range(top, max(0, top - window), -1)
        found = jobs_with_ids(store, ids_here)
        for job_id in ids_here:
            job = found.get(job_id)
            if job is None or not caller.may_read(job):
                continue
            try:
                item = list_item(job)
            except (TypeError, ValueError):  # one unreadable job never hides the others
                continue
            if not query.matches(item):
                continue
            items.append(item)
            if len(items) == query.limit:
                return {"jobs": items, "continue": str(job_id - 1) if job_id > 1 else None}
        scanned += len(ids_here)
        top -= len(ids_here)
        if len(items) * 2 < scanned:  # sparse matches: read wider windows
            window = min(MAX_WINDOW, window * 2)
    return {"jobs": items, "continue": str(top) if top >= 1 else None}


async def list_jobs(request: Request) -> JSONResponse:
    query = parse_query(request.query_params)
    services = request.app.state.services
    caller = caller_of(request, services.settings)
    page = await asyncio.to_thread(read_page, services.jobs, query, caller)
    return JSONResponse(page)
