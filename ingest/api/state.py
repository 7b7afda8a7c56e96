"""`get_state` from a watch-fed cache of IngestJobs, with a direct read as the fallback.

Clients poll once a second per job, so reads vastly outnumber writes: one list+watch per API
replica keeps every job's state document in memory. A job created a moment ago by another replica
may not have reached the cache yet; a miss therefore reads the object directly before answering 404.
"""
from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ingest import jobs, logs, metrics
from ingest.kube import JobStore

log = logging.getLogger(__name__)


class StateCache:
    """job id -> state document, kept current by a watch in a background thread."""

    def __init__(self, store: JobStore) -> None:
        self.store = store
        self.documents: dict[int, dict[str, Any]] = {}
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="state-cache", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def put(self, job: dict[str, Any]) -> dict[str, Any]:
        document = jobs.state_document(job)
        self.documents[document["job_id"]] = document
        return document

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._list_and_watch()
            except Exception as error:  # the watch must outlive any one failure
                log.warning("state cache watch restarting: %s", error)
                metrics.STATE_CACHE_RESTARTS.inc()
                self.synced.clear()
                self._stop.wait(1.0)

    def _list_and_watch(self) -> None:
        page = self.store.custom.list_namespaced_custom_object(
            jobs.GROUP, jobs.VERSION, self.store.namespace, jobs.PLURAL
        )
        fresh: dict[int, dict[str, Any]] = {}
        for job in page.get("items", []):
            document = jobs.state_document(job)
            fresh[document["job_id"]] = document
        self.documents = fresh
        self.synced.set()
        version = page["metadata"]["resourceVersion"]
        while not self._stop.is_set():
            for event in self.store.watch(version, timeout_seconds=60):
                job = event["object"]
                if event["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {job.get('message') if isinstance(job, dict) else job}")
                version = job["metadata"]["resourceVersion"]
                if event["type"] == "BOOKMARK":
                    continue
                if event["type"] == "DELETED":
                    job_id = int((job.get("spec") or {}).get("jobId") or 0)
                    self.documents.pop(job_id, None)
                else:
                    self.put(job)

    async def lookup(self, job_id: int) -> dict[str, Any] | None:
        document = self.documents.get(job_id)
        if document is not None:
            return document
        job = await asyncio.to_thread(self.store.get, jobs.job_name(job_id))
        return self.put(job) if job is not None else None


# Job ids are Kubernetes integers (int64): no id the service issues is larger. Checked on the text's
# length first, so a 5,000-digit id never reaches int() (which refuses over 4,300 digits).
MAX_JOB_ID = 2**63 - 1


def parse_job_id(text: str | None) -> int:
    if text is None or text == "":
        raise HTTPException(400, "job_id is required, e.g. /get_state?job_id=1234")
    if len(text) > len(str(MAX_JOB_ID)):
        raise HTTPException(400, f"job_id must be a positive integer of at most {len(str(MAX_JOB_ID))} digits, got {len(text)} characters")
    # Only ASCII digits: int() would also take " 1", "+1", "1_0" and other scripts' digits.
    if not (text.isascii() and text.isdigit()) or not 1 <= int(text) <= MAX_JOB_ID:
        raise HTTPException(400, f"job_id must be a positive integer up to {MAX_JOB_ID}, got {text!r}")
    return int(text)


async def get_state(request: Request) -> JSONResponse:
    started = time.perf_counter()
    text = request.path_params.get("job_id", request.query_params.get("job_id"))
    job_id = parse_job_id(text)
    logs.bind_job(job_id)
    cache: StateCache = request.app.state.services.cache
    cached = job_id in cache.documents
    document = await cache.lookup(job_id)
    source = "cache" if cached else "kubernetes" if document is not None else "missing"
    metrics.GET_STATE_DURATION.labels(source).observe(time.perf_counter() - started)
    if document is None:
        raise HTTPException(404, f"job ID {job_id} does not exist.")
    return JSONResponse(document)
