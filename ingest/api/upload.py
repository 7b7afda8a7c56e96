"""POST /ingest (and /upload): stream a bundle into staging, learning its tar index on the way.

The job exists before the first byte is read (OK / UPLOADING / 0, as upstream), so a client that
polls early finds it. The body then flows, in one pass, through the incremental tar scanner (a
body that is not a tar is known at the first block) and a bounded pipe into a multipart upload to
the staging bucket; on the pipe's thread the bytes are also hashed (SHA-256 of the bundle, SHA-1 of
each large member for the worker's server-side copies). Whatever happens to the body -
the client goes away, stops sending, or sends too much - the job ends FAILED with the byte count,
never left at UPLOADING.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ingest import jobs, lifecycle, logs, metrics
from ingest.api.budget import MEMBER_COST, RETRY_AFTER_SECONDS, Exhausted, Reservation, busy
from ingest.api.errors import error_response
from ingest.api.pipe import Pipe, run_in_thread
from ingest.api.services import Services
from ingest.bundle import BundleError, MemberHasher, TarScanner
from ingest.config import bundle_limits

log = logging.getLogger(__name__)

# Pacifica's clients send application/octet-stream; curl's --data-binary sends a form type. A JSON
# or multipart body is a client that meant another endpoint (or wraps the tar): tell it so.
REFUSED_TYPES = {"application/json", "multipart/form-data", "text/plain"}
PROGRESS_INTERVAL = 5.0


class BodyError(Exception):
    """The body broke off or broke a limit; `status` is the HTTP answer, `message` the job's exception."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


async def body_chunks(request: Request, *, stall_seconds: float) -> AsyncIterator[bytes]:
    """The request body, chunk by chunk; a client silent for `stall_seconds` is an error."""
    received = 0
    while True:
        try:
            message = await asyncio.wait_for(request.receive(), timeout=stall_seconds)
        except TimeoutError:
            raise BodyError(
                408, f"the upload stalled: no data for {stall_seconds:g} s after {received} bytes") from None
        if message["type"] == "http.disconnect":
            raise BodyError(400, f"the upload broke off after {received} bytes: the client disconnected")
        chunk = message.get("body", b"")
        received += len(chunk)
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


STAGING_PART = 8 * 1024 * 1024  # two in flight and one filling: ~24 MiB per upload, whatever its size
CHUNKED_STAGING_PART = 16 * 1024 * 1024  # unknown length: 10,000 parts of this allow 156 GiB


def staging_part_size(length: int | None) -> int:
    """S3 allows 10,000 parts: a body of known length gets parts just large enough for it."""
    if length is None:
        return CHUNKED_STAGING_PART
    return max(STAGING_PART, -(-length // 9_000))


def declared_length(request: Request, limit: int) -> int | None:
    text = request.headers.get("content-length")
    if text is None:
        return None
    if not text.isdigit():
        raise HTTPException(400, f"Content-Length must be a number of bytes, got {text!r}")
    length = int(text)
    if length > limit:
        raise HTTPException(413, f"the bundle is {length} bytes; this service accepts at most {limit} bytes")
    return length


def check_content_type(request: Request) -> None:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type in REFUSED_TYPES:
        raise HTTPException(
            415, "a bundle is an uncompressed tar sent as the raw body "
                 f"(application/octet-stream or application/x-tar), not {content_type}"
        )


def fail(services: Services, job_id: int, task: str, message: str, **extra: Any) -> dict[str, Any]:
    """Record a failure unless the job already ended (an administrator or the operator was first)."""
    job, _ = services.jobs.apply(jobs.job_name(job_id), lifecycle.upload_failed, task=task, message=message, **extra)
    return job or {}


class UploadHeartbeat:
    """Throttled `uploadedBytes` reports, so the operator can tell a slow upload from a dead one."""

    def __init__(self, services: Services, job_id: int) -> None:
        self.services = services
        self.name = jobs.job_name(job_id)
        self.last = time.monotonic()
        self.task: asyncio.Task[None] | None = None

    def report(self, received: int) -> None:
        if time.monotonic() - self.last < PROGRESS_INTERVAL or (self.task and not self.task.done()):
            return
        self.last = time.monotonic()
        self.task = asyncio.create_task(asyncio.to_thread(self._write, received))

    def _write(self, received: int) -> None:
        try:
            self.services.jobs.apply(self.name, lifecycle.upload_progress, received=received)
        except Exception as error:  # progress is advisory; the upload goes on
            log.warning("job %s: could not report upload progress: %s", self.name, error)

    async def settle(self) -> None:
        if self.task:
            await asyncio.gather(self.task, return_exceptions=True)


def observe_upload(outcome: str, size: int, started: float) -> None:
    metrics.UPLOAD_SIZE.labels(outcome).observe(size)
    metrics.UPLOAD_DURATION.labels(outcome).observe(time.monotonic() - started)


PIPE_BYTES = 9 * 1024 * 1024  # what the pipe holds at most: 8 blocks queued, one filling
MEMBERS_PER_RESERVATION = 4096


def staging_cost(length: int | None, part_size: int) -> int:
    """Memory one upload holds while staging: the pipe, and the SDK's part filling plus two in flight."""
    body = length if length is not None else PIPE_BYTES + 3 * part_size
    return min(body, PIPE_BYTES) + 3 * min(body, part_size)


def reserve_metadata(reservation: Reservation) -> Callable[[int], None]:
    """For the scanner: reserve metadata.txt's bytes before it keeps them (BodyError if they do not fit)."""

    def reserve(size: int) -> None:
        if not reservation.budget.fits_ever(reservation.held + size):
            raise BodyError(413, f"metadata.txt is {size} bytes, more than this API replica's memory budget can hold "
                                 "(INGEST_API_MEMORY_BUDGET_BYTES)")
        try:
            reservation.grow(size, f"metadata.txt of {size} bytes")
        except Exhausted as error:
            raise BodyError(503, error.message) from None

    return reserve


def reserve_members(scanner: TarScanner, reservation: Reservation, accounted: list[int]) -> None:
    """Reserve what the index keeps for its members, a step of them at a time."""
    if scanner.member_count > accounted[0]:
        try:
            reservation.grow(MEMBERS_PER_RESERVATION * MEMBER_COST, f"the index of {scanner.member_count} tar members")
        except Exhausted as error:
            raise BodyError(503, error.message) from None
        accounted[0] += MEMBERS_PER_RESERVATION


def retry_later(status: int) -> dict[str, str] | None:
    return {"Retry-After": str(RETRY_AFTER_SECONDS)} if status == 503 else None


async def ingest(request: Request) -> Response:
    with request.app.state.services.budget.reservation() as reservation:
        return await stage(request, reservation)


async def stage(request: Request, reservation: Reservation) -> Response:
    started = time.monotonic()
    services: Services = request.app.state.services
    settings = services.settings
    check_content_type(request)
    expected = declared_length(request, settings.max_body_bytes)
    part_size = staging_part_size(expected)
    try:  # before the job exists: a busy replica answers 503 and makes nothing
        reservation.grow(staging_cost(expected, part_size), "an upload's staging buffers")
    except Exhausted as error:
        raise busy(error) from None
    job_id = await asyncio.to_thread(services.job_ids.next)
    logs.bind_job(job_id)
    bundle_key = jobs.staged_bundle_key(job_id)
    body = jobs.new_job(
        job_id=job_id, operation=jobs.OPERATION_UPLOAD, user=request.scope.get("ingest.user"),
        staged_bucket=services.storage.staging, staged_key=bundle_key,
    )
    services.cache.put(await asyncio.to_thread(services.jobs.create, body))
    metrics.JOBS_SUBMITTED.labels(jobs.OPERATION_UPLOAD).inc()
    log.info("job %s: upload started (%s bytes declared)", job_id, expected if expected is not None else "unknown")

    scanner = TarScanner(bundle_limits(settings), before_metadata=reserve_metadata(reservation))
    member_hasher = MemberHasher(scanner.members)
    pipe = Pipe(observe=member_hasher.update)
    accounted = [0]  # members reserved for
    writer = run_in_thread(
        lambda: pipe.drain_into(lambda source: services.storage.put_stream(
            services.storage.staging, bundle_key, source, length=-1 if expected is None else expected,
            part_size=part_size, parallel=2)),
        f"stage-{job_id}",
    )
    heartbeat = UploadHeartbeat(services, job_id)
    received = 0
    bundle_error: BundleError | None = None
    try:
        async for chunk in body_chunks(request, stall_seconds=settings.upload_stall_seconds):
            received += len(chunk)
            if received > settings.max_body_bytes:
                raise BodyError(413, f"the bundle passed this service's limit of {settings.max_body_bytes} bytes")
            if bundle_error is None:
                try:
                    scanner.feed(chunk)
                except BundleError as error:
                    bundle_error = error
                    pipe.abort(error)
                else:
                    reserve_members(scanner, reservation, accounted)
                    await pipe.write(chunk)
            heartbeat.report(received)
        if expected is not None and received != expected:
            raise BodyError(400, f"the upload broke off after {received} of {expected} bytes")
        if bundle_error is None:
            try:
                index = scanner.finish()
            except BundleError as error:
                bundle_error = error
                pipe.abort(error)
    except Exception as error:
        if not isinstance(error, BodyError):
            log.exception("job %s: staging failed", job_id)
            error = BodyError(503, f"the object store did not take the bundle ({received} bytes received): {error}")
        pipe.abort(error)
        await asyncio.gather(writer, heartbeat.settle(), return_exceptions=True)
        await asyncio.to_thread(fail, services, job_id, jobs.UPLOADING, error.message, uploadedBytes=received)
        log.warning("job %s: %s", job_id, error.message)
        observe_upload("failed", received, started)
        return error_response(error.status, f"job {job_id} failed: {error.message}", retry_later(error.status))

    await heartbeat.settle()
    if bundle_error is not None:
        await asyncio.gather(writer, return_exceptions=True)
        job = await asyncio.to_thread(
            fail, services, job_id, bundle_error.task, bundle_error.message, uploadedBytes=received)
        log.info("job %s: refused at %s: %s", job_id, bundle_error.task, bundle_error.message)
        observe_upload("refused", received, started)
        return JSONResponse(services.cache.put(job) if job else jobs.state_document(body))

    await pipe.close()
    try:
        await writer
        index = dataclasses.replace(index, sha1=member_hasher.digests)  # complete once the writer is
        if received > settings.pool_max_bundle_bytes:  # a smaller bundle is read whole, in one GET
            await asyncio.to_thread(  # streamed: the index is never one string in memory
                services.storage.put_chunks, services.storage.staging, jobs.staged_index_key(job_id),
                index.json_chunks(), "application/json",
            )
    except Exception as error:
        log.exception("job %s: staging failed", job_id)
        message = f"the object store did not take the bundle ({received} bytes received): {error}"
        await asyncio.to_thread(fail, services, job_id, jobs.UPLOADING, message, uploadedBytes=received)
        observe_upload("failed", received, started)
        return error_response(503, f"job {job_id} failed: {message}")
    job = await asyncio.to_thread(mark_staged, services, job_id, received, pipe.sha256.hexdigest())
    log.info("job %s: staged %d bytes", job_id, received)
    observe_upload("staged", received, started)
    return JSONResponse(services.cache.put(job))


def mark_staged(services: Services, job_id: int, size: int, sha256: str) -> dict[str, Any]:
    """Record the bundle in the spec (still ours to change while UPLOADING), then hand it on: to the
    warm pool workers (a label they select on) when it is small enough, else to a worker Pod."""
    name = jobs.job_name(job_id)
    settings = services.settings
    patch: dict[str, Any] = {"spec": {"staged": {"size": size, "sha256": sha256}}}
    if settings.worker_mode == "pool" and size <= settings.pool_max_bundle_bytes:
        patch["metadata"] = {"labels": {jobs.POOL_LABEL: jobs.POOL_WAITING}}
    patched = services.jobs.patch(name, patch)
    job, _ = services.jobs.apply(name, lifecycle.staged, size=size, known=patched)
    return job or {}
