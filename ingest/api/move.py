"""POST /move: ingest files that already sit on storage the service can reach, given their metadata.

The body is the metadata document whose Files entries carry a `source`. Upstream accepted `{}` or
`["x"]` and then left the job at UPLOADING forever; here a document that is not valid JSON, not a
list of objects, or whose items lack what `load metadata` needs is refused at once with 400 and no
job is made. So is a source the caller may not read whatever the file (`ingest.sources`: an s3
bucket or prefix not on the allow-list, the service's own buckets, a path outside the caller's
roots), with one sentence that tells nothing about the source. Whether each source exists, is a
regular file reached without links, and matches its size and digest is the worker's `move files`
step: those failures are FAILED jobs.
"""
from __future__ import annotations

import asyncio
import hashlib
import logging

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ingest import jobs, logs, metrics, sources
from ingest.api.budget import MOVE_DOCUMENT_COST, Exhausted, Reservation, busy
from ingest.api.services import Services
from ingest.api.upload import BodyError, body_chunks, fail, mark_staged
from ingest.bundle import BundleError, parse_move_document
from ingest.config import bundle_limits

log = logging.getLogger(__name__)


def document_limit(services: Services) -> tuple[int, str]:
    """The largest move document this replica takes, and why: the setting, or what its memory budget can parse."""
    configured = services.settings.max_metadata_bytes
    parsable = services.budget.large_limit // MOVE_DOCUMENT_COST
    if parsable < configured:
        return (
            parsable,
            f"this API replica can parse move documents of at most {parsable} bytes (INGEST_API_MEMORY_BUDGET_BYTES)",
        )
    return configured, f"this service accepts move documents of at most {configured} bytes"


async def read_document(request: Request, services: Services, reservation: Reservation) -> bytes:
    """The body, within the limit; its memory (and its parsing's) reserved before it is read."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type != "application/json":
        raise HTTPException(
            415, f"/move takes the metadata document as application/json, not {content_type or 'no Content-Type'}"
        )
    limit, why = document_limit(services)
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"the move document is {declared} bytes; {why}")
    parts: list[bytes] = []
    size = 0
    try:
        if declared and declared.isdigit():
            reservation.grow(int(declared) * MOVE_DOCUMENT_COST, "this move document")
        async for chunk in body_chunks(request, stall_seconds=services.settings.upload_stall_seconds):
            size += len(chunk)
            if size > limit:
                raise HTTPException(413, f"the move document passed {limit} bytes; {why}")
            reservation.grow(size * MOVE_DOCUMENT_COST - reservation.held, "this move document")
            parts.append(chunk)
    except BodyError as error:  # no job exists yet: the client just gets the reason
        raise HTTPException(error.status, error.message) from None
    except Exhausted as error:
        raise busy(error) from None
    return b"".join(parts)


async def move(request: Request) -> Response:
    with request.app.state.services.budget.reservation() as reservation:
        return await submit(request, reservation)


async def submit(request: Request, reservation: Reservation) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    raw = await read_document(request, services, reservation)
    user = request.scope.get("ingest.user")
    try:  # seconds of CPU for a large document: on a thread, so the event loop keeps serving
        manifest = await asyncio.to_thread(parse_move_document, raw, bundle_limits(settings))
    except BundleError as error:
        if error.task == jobs.LOAD_METADATA:
            raise HTTPException(400, error.message) from None
        # A later step's problem (e.g. a missing source): the job records it where upstream would.
    else:
        for entry in manifest.files:
            refusal = sources.check(entry.source, label=entry.label, user=user, roots=settings.move_roots,
                                    s3_sources=settings.move_s3_sources,
                                    own_buckets=(settings.staging_bucket, settings.archive_bucket))
            if refusal is not None:
                raise HTTPException(400, refusal)
        del manifest
    reservation.shrink(reservation.held - 2 * len(raw))  # the parse is over: the body and its upload copy remain
    job_id = await asyncio.to_thread(services.job_ids.next)
    logs.bind_job(job_id)
    key = jobs.staged_move_key(job_id)
    body = jobs.new_job(job_id=job_id, operation=jobs.OPERATION_MOVE, user=user,
                        staged_bucket=services.storage.staging, staged_key=key)
    services.cache.put(await asyncio.to_thread(services.jobs.create, body))
    metrics.JOBS_SUBMITTED.labels(jobs.OPERATION_MOVE).inc()
    try:
        await asyncio.to_thread(services.storage.put_bytes, services.storage.staging, key, raw, "application/json")
    except Exception as error:
        message = f"the object store did not take the move document: {error}"
        await asyncio.to_thread(fail, services, job_id, jobs.UPLOADING, message)
        raise HTTPException(503, f"job {job_id} failed: {message}") from None
    digest = await asyncio.to_thread(lambda: hashlib.sha256(raw).hexdigest())
    job = await asyncio.to_thread(mark_staged, services, job_id, len(raw), digest)
    log.info("job %s: move document staged (%d bytes)", job_id, len(raw))
    return JSONResponse(services.cache.put(job))
