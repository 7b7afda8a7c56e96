"""`get_state` from a watch-fed cache of IngestJobs, with a direct read as the fallback.

Clients poll once a second per job, so reads vastly outnumber writes: one list+watch per API
replica keeps the state documents of the jobs people are polling in memory. What it holds is
bounded by what is in flight, not by history:

- Start-up lists only unfinished jobs (``fieldSelector=status.complete!=true``, the CRD declares
  the field selectable), page by page (``limit`` + ``continue``), then watches every job from the
  list's resourceVersion. A restart with 100,000 retained jobs reads the few that are running.
- Each job is kept as its state document (the eight keys of the HTTP answer) and its
  resourceVersion, never the whole object.
- Finished jobs stay only while they are among the ``INGEST_STATE_CACHE_FINISHED`` most recently
  finished or asked for; an older one is read directly (one GET) when somebody asks, and kept again.

A newer version is never replaced by an older one: watch events arrive in order, but a direct GET
can race them. resourceVersions are compared as integers when both are (etcd's and the emulator's
are), and otherwise treated as opaque: the watch's copy then wins over a read. Deleted jobs leave a
bounded tombstone so a read that started before the deletion cannot bring them back.

One job whose status cannot be read (a hand-written value no rule accepts) is skipped with a log
line and a metric; it never stops the cache, and readiness stays up. A 410 Gone (the watch fell out
of the server's window) relists without dropping readiness; only a Kubernetes API that cannot be
listed at all makes the replica unready.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import sys
import threading
import time
from typing import Any, cast

from kubernetes.client.exceptions import ApiException
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse

from ingest import jobs, logs, metrics
from ingest.api.caller import caller_of
from ingest.kube import JobStore

log = logging.getLogger(__name__)

PAGE_SIZE = 500
UNFINISHED = jobs.UNFINISHED_SELECTOR
TOMBSTONES = 1024
Document = dict[str, Any]


class UnreadableJob(Exception):
    """A job whose status holds something the state document cannot be made from."""


def newer(candidate: str, current: str) -> bool | None:
    """Is ``candidate`` a later resourceVersion than ``current``? None: they cannot be ordered."""
    if candidate == current:
        return False
    if candidate.isdigit() and current.isdigit():
        return int(candidate) > int(current)
    return None


def document_of(job: dict[str, Any]) -> Document:
    try:
        return jobs.state_document(job)
    except (ValueError, TypeError, AttributeError) as error:
        name = (job.get("metadata") or {}).get("name", "?")
        raise UnreadableJob(f"IngestJob {name} has a status this service cannot read: {error}") from error


class StateCache:
    """job id -> state document, kept current by a watch in a background thread."""

    def __init__(self, store: JobStore, *, finished: int = 10_000) -> None:
        self.store = store
        self.finished_limit = max(0, finished)
        self.documents: dict[int, Document] = {}
        # Who submitted each job (spec.user), so get_state answers only what the caller may read.
        self.users: dict[int, str | None] = {}
        self._versions: dict[int, str] = {}
        self._from_watch: set[int] = set()
        self._finished: collections.OrderedDict[int, None] = collections.OrderedDict()  # LRU
        self._deleted: collections.OrderedDict[int, str] = collections.OrderedDict()
        self._lock = threading.Lock()
        self.synced = threading.Event()
        self._stop = threading.Event()
        self._selector: str | None = UNFINISHED
        self._thread = threading.Thread(target=self._run, name="state-cache", daemon=True)

    def __len__(self) -> int:
        return len(self.documents)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    # --- keeping documents -------------------------------------------------------------------
    def put(self, job: dict[str, Any]) -> Document:
        """Record a job this replica read or wrote; answers with the newest document known."""
        return self._accept(job, from_watch=False) or document_of(job)

    def _accept(self, job: dict[str, Any], *, from_watch: bool) -> Document | None:
        document = document_of(job)
        job_id = document["job_id"]
        version = str((job.get("metadata") or {}).get("resourceVersion") or "")
        with self._lock:
            tombstone = self._deleted.get(job_id)
            if tombstone is not None and not from_watch and newer(version, tombstone) is not True:
                return None  # a read that started before the deletion
            current = self._versions.get(job_id)
            if current is not None and version:
                later = newer(version, current)
                if later is False or (later is None and job_id in self._from_watch and not from_watch):
                    return self.documents[job_id]
            if from_watch:
                self._deleted.pop(job_id, None)
                self._from_watch.add(job_id)
            else:
                self._from_watch.discard(job_id)
            self.documents[job_id] = document
            self._versions[job_id] = version
            user = (job.get("spec") or {}).get("user")
            self.users[job_id] = sys.intern(user) if isinstance(user, str) else None
            if document["complete"]:
                self._finished[job_id] = None
                self._finished.move_to_end(job_id)
                self._trim()
            else:
                self._finished.pop(job_id, None)
        return document

    def _trim(self) -> None:
        while len(self._finished) > self.finished_limit:
            job_id, _ = self._finished.popitem(last=False)
            self._forget(job_id)

    def _forget(self, job_id: int) -> None:
        self.documents.pop(job_id, None)
        self.users.pop(job_id, None)
        self._versions.pop(job_id, None)
        self._from_watch.discard(job_id)
        self._finished.pop(job_id, None)

    def _deleted_job(self, job: dict[str, Any]) -> None:
        metadata = job.get("metadata") or {}
        job_id = int((job.get("spec") or {}).get("jobId") or jobs.job_id_of(metadata.get("name", "")) or 0)
        with self._lock:
            self._forget(job_id)
            self._deleted[job_id] = str(metadata.get("resourceVersion") or "")
            self._deleted.move_to_end(job_id)
            while len(self._deleted) > TOMBSTONES:
                self._deleted.popitem(last=False)

    def _skip(self, job: dict[str, Any], error: UnreadableJob) -> None:
        metrics.STATE_CACHE_UNREADABLE.inc()
        log.warning("skipping in the get_state cache: %s", error)
        name = (job.get("metadata") or {}).get("name", "")
        job_id = jobs.job_id_of(name)
        if job_id:
            with self._lock:
                self._forget(job_id)

    # --- list and watch ----------------------------------------------------------------------
    def _run(self) -> None:
        version: str | None = None
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
            except ApiException as error:
                if error.status == 410:
                    log.info("state cache watch expired (410 Gone); listing again")
                    version = None
                    continue
                self._failed(error)
                version = None
            except Exception as error:  # the watch must outlive any one failure
                self._failed(error)
                version = None

    def _failed(self, error: Exception) -> None:
        log.warning("state cache watch restarting: %s", error)
        metrics.STATE_CACHE_RESTARTS.inc()
        self.synced.clear()
        self._stop.wait(1.0)

    def _list(self) -> str:
        """Fill the cache with the unfinished jobs, page by page; the version to watch from."""
        fresh: list[dict[str, Any]] = []
        token: str | None = None
        while True:
            kwargs: dict[str, Any] = {"limit": PAGE_SIZE}
            if self._selector:
                kwargs["field_selector"] = self._selector
            if token:
                kwargs["_continue"] = token
            try:
                page = cast(dict[str, Any], self.store.custom.list_namespaced_custom_object(
                    jobs.GROUP, jobs.VERSION, self.store.namespace, jobs.PLURAL, **kwargs))
            except ApiException as error:
                if error.status == 400 and self._selector and "field label" in str(error.body):
                    log.warning("the API server cannot select on %s; listing every job", self._selector)
                    self._selector = None  # an older server: list all, keep what fits
                    fresh, token = [], None
                    continue
                raise
            for job in page.get("items", []):
                if not self._selector and (job.get("status") or {}).get("complete") is True:
                    continue
                fresh.append(job)
            token = (page.get("metadata") or {}).get("continue")
            if not token:
                version = str(page["metadata"]["resourceVersion"])
                break
        with self._lock:
            for job_id in list(self.documents):
                self._forget(job_id)
        for job in fresh:
            try:
                self._accept(job, from_watch=True)
            except UnreadableJob as error:
                self._skip(job, error)
        self.synced.set()
        log.info("state cache holds %d unfinished jobs (resourceVersion %s)", len(fresh), version)
        return version

    def _watch(self, version: str) -> str:
        """Follow every job from ``version`` until the server ends the watch; the last version."""
        for event in self.store.watch(version, timeout_seconds=60):
            if self._stop.is_set():
                break
            job = event["object"]
            version = str(job["metadata"]["resourceVersion"])
            if event["type"] == "BOOKMARK":
                continue
            if event["type"] == "DELETED":
                self._deleted_job(job)
                continue
            try:
                self._accept(job, from_watch=True)
            except UnreadableJob as error:
                self._skip(job, error)
        return version

    # --- answering ---------------------------------------------------------------------------
    async def owner(self, job_id: int) -> str | None:
        """The user recorded in the job (spec.user); read directly if the cache let it go meanwhile."""
        if job_id in self.users:
            return self.users[job_id]
        job = await asyncio.to_thread(self.store.get, jobs.job_name(job_id))
        user = ((job or {}).get("spec") or {}).get("user")
        return user if isinstance(user, str) else None

    async def lookup(self, job_id: int) -> Document | None:
        document = self.documents.get(job_id)
        if document is not None:
            if job_id in self._finished:
                with self._lock:
                    if job_id in self._finished:
                        self._finished.move_to_end(job_id)
            return document
        job = await asyncio.to_thread(self.store.get, jobs.job_name(job_id))
        if job is None:
            return None
        return self.put(job)


# Job ids are Kubernetes integers (int64): no id the service issues is larger. Checked on the text's
# length first, so a 5,000-digit id never reaches int() (which refuses over 4,300 digits).
MAX_JOB_ID = 2**63 - 1


def parse_job_id(text: str | None) -> int:
    if text is None or text == "":
        raise HTTPException(400, "job_id is required, e.g. /get_state?job_id=1234")
    if len(text) > len(str(MAX_JOB_ID)):
        digits = len(str(MAX_JOB_ID))
        raise HTTPException(400, f"job_id must be a positive integer of at most {digits} digits, "
                                 f"got {len(text)} characters")
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
    try:
        document = await cache.lookup(job_id)
    except UnreadableJob as error:
        metrics.STATE_CACHE_UNREADABLE.inc()
        raise HTTPException(500, str(error)) from None
    source = "cache" if cached else "kubernetes" if document is not None else "missing"
    metrics.GET_STATE_DURATION.labels(source).observe(time.perf_counter() - started)
    if document is None:
        raise HTTPException(404, f"job ID {job_id} does not exist.")
    caller = caller_of(request, request.app.state.services.settings)
    if caller.restricted and not caller.may_read({"spec": {"user": await cache.owner(job_id)}}):
        # Another user's job is answered exactly as a missing one: its id, state and exception
        # (which may name that user's files) are not this caller's to read.
        raise HTTPException(404, f"job ID {job_id} does not exist.")
    return JSONResponse(document)
