"""The tus endpoints: OPTIONS, POST (creation), HEAD, PATCH, DELETE (termination) under /uploads/.

An upload is a job from its creation: POST allocates the job id, starts the S3 multipart upload
and creates the IngestJob (OK / UPLOADING / 0) with the upload's record in its status, and
answers 201 with the upload's URL, the job id (`Ingest-Job-Id`) and the state document. The URL
is `/uploads/<job_id>-<token>`: the job id for people, a random token so that knowing a job id
(they are sequential) is not enough to write to someone's upload. An upload belongs to the user
who created it; to anyone else it does not exist (404, the same answer as for a wrong token).
"""
from __future__ import annotations

import asyncio
import email.utils
import hmac
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ingest import jobs, logs, metrics, resumable
from ingest.api.services import Services
from ingest.api.tus import claims, protocol
from ingest.api.tus.parts import UploadStaging
from ingest.api.tus.protocol import TusError
from ingest.api.tus.session import ended, write_body
from ingest.api.upload import fail, staging_part_size

log = logging.getLogger(__name__)


def http_date(text: str | None) -> str | None:
    moment = jobs.parse_time(text)
    return email.utils.format_datetime(moment, usegmt=True) if moment else None


def upload_url(request: Request, job_id: int, token: str) -> str:
    return f"{request.scope.get('root_path', '')}/uploads/{job_id}-{token}"


async def find(request: Request) -> dict[str, Any]:
    """The job of the upload in the path, if the caller may see it; 404 otherwise (revealing nothing)."""
    services: Services = request.app.state.services
    text = request.path_params["upload_id"]
    number, _, token = text.partition("-")
    missing = TusError(404, f"no such upload: {text}")
    if not (number.isascii() and number.isdigit()) or not token or int(number) < 1:
        raise missing
    logs.bind_job(int(number))
    job = await asyncio.to_thread(services.jobs.get, jobs.job_name(int(number)))
    tus = resumable.record(job) if job else None
    if job is None or tus is None or not hmac.compare_digest(str(tus.get("token", "")).encode(), token.encode()):
        raise missing
    if (job.get("spec") or {}).get("user") != request.scope.get("ingest.user"):
        raise missing
    return job


def upload_headers(job: dict[str, Any]) -> dict[str, str]:
    tus = resumable.record(job) or {}
    status = job.get("status") or {}
    uploading = status.get("phase") == jobs.PHASE_UPLOADING
    offset = int(tus.get("offset", 0)) if uploading else int(tus.get("length", 0))
    values = {"Upload-Offset": str(offset), "Upload-Length": str(tus.get("length", 0)),
              protocol.JOB_ID_HEADER: str(job["spec"]["jobId"])}
    if tus.get("metadata"):
        values["Upload-Metadata"] = str(tus["metadata"])
    expires = http_date(tus.get("expires")) if uploading else None
    if expires:
        values["Upload-Expires"] = expires
    return values


def tus_endpoint(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Protocol errors become answers with the tus and CORS headers; the version is checked first."""

    async def endpoint(request: Request) -> Response:
        try:
            if request.method != "OPTIONS":
                protocol.check_resumable(request)
            return await handler(request)
        except (TusError, HTTPException) as error:
            return protocol.refuse(request, error)

    endpoint.__name__ = handler.__name__
    return endpoint


async def options(request: Request) -> Response:
    services: Services = request.app.state.services
    extra = {
        "Tus-Version": protocol.VERSION, "Tus-Extension": protocol.EXTENSIONS,
        "Tus-Max-Size": str(services.settings.max_body_bytes),
        "Tus-Checksum-Algorithm": ",".join(protocol.CHECKSUM_ALGORITHMS),
    }
    if request.headers.get("origin"):
        extra |= {"Access-Control-Allow-Methods": protocol.ALLOWED_METHODS,
                  "Access-Control-Allow-Headers": protocol.ALLOWED_HEADERS, "Access-Control-Max-Age": "86400"}
    return protocol.answer(request, 204, extra)


async def create(request: Request) -> Response:
    services: Services = request.app.state.services
    settings = services.settings
    if request.headers.get("upload-defer-length") is not None:
        raise TusError(400, "Upload-Defer-Length is not supported: send Upload-Length (the bundle's size in bytes)")
    length = protocol.non_negative(request, "upload-length")
    if length is None:
        raise TusError(400, "Upload-Length is required: the bundle's size in bytes")
    if length > settings.max_body_bytes:
        limit = settings.max_body_bytes
        raise TusError(413, f"the bundle is {length} bytes; this service accepts at most {limit} bytes")
    metadata_text = request.headers.get("upload-metadata", "")
    metadata = protocol.parse_metadata(metadata_text)
    with_body = request.headers.get("content-type", "").split(";")[0].strip().lower() == protocol.PATCH_TYPE
    checksum = protocol.parse_checksum(request.headers.get("upload-checksum")) if with_body else None

    job_id = await asyncio.to_thread(services.job_ids.next)
    logs.bind_job(job_id)
    staging = await asyncio.to_thread(UploadStaging.begin, services.storage, job_id)
    token = secrets.token_urlsafe(16)
    body = jobs.new_job(job_id=job_id, operation=jobs.OPERATION_UPLOAD, user=request.scope.get("ingest.user"),
                        staged_bucket=services.storage.staging, staged_key=staging.key)
    body["status"][resumable.FIELD] = {
        "token": token, "length": length, "offset": 0, "partSize": staging_part_size(length),
        "uploadId": staging.upload_id, "generation": 0, "metadata": metadata_text,
        "filename": metadata.get("filename") or metadata.get("name") or "",
        "expires": resumable.expiry_time(jobs.now(), settings.upload_expiry_seconds),
    }
    job = await asyncio.to_thread(services.jobs.create, body)
    services.cache.put(job)
    metrics.JOBS_SUBMITTED.labels(jobs.OPERATION_UPLOAD).inc()
    log.info("job %s: tus upload created (%d bytes declared, %r)", job_id, length, metadata.get("filename", ""))
    location = {"Location": upload_url(request, job_id, token)}
    if length == 0:
        message = "the bundle is empty (Upload-Length 0); send an uncompressed tar"
        failed = await asyncio.to_thread(fail, services, job_id, jobs.OPEN_TAR, message)
        await asyncio.to_thread(staging.abort)
        services.cache.put(failed or job)
        raise TusError(400, f"job {job_id} failed at {jobs.OPEN_TAR}: {message}", location)
    if with_body:
        try:
            job = await write_body(services, request, job, offset=0, checksum=checksum)
        except TusError as error:
            if error.status >= 500 or error.status == protocol.CHECKSUM_MISMATCH:  # the upload exists: say where
                error.headers |= {**location, protocol.JOB_ID_HEADER: str(job_id), "Upload-Offset": "0"}
            raise
    document = services.cache.put(job)
    return protocol.answer(request, 201, {**location, **upload_headers(job), "Content-Type": "application/json"},
                           bytes(JSONResponse(document).body))


async def head(request: Request) -> Response:
    job = await find(request)
    status = job.get("status") or {}
    if status.get("state") != jobs.OK:
        raise ended(job)
    return protocol.answer(request, 200, upload_headers(job))


async def patch(request: Request) -> Response:
    services: Services = request.app.state.services
    protocol.check_patch_type(request)
    offset = protocol.non_negative(request, "upload-offset")
    if offset is None:
        raise TusError(400, "Upload-Offset is required")
    checksum = protocol.parse_checksum(request.headers.get("upload-checksum"))
    job = await find(request)
    tus = resumable.record(job) or {}
    if not claims.uploading(job):
        if (job.get("status") or {}).get("state") == jobs.OK and offset == int(tus.get("length", -1)):
            return protocol.answer(request, 204, upload_headers(job))  # a repeated final PATCH: already done
        raise ended(job)
    job = await write_body(services, request, job, offset=offset, checksum=checksum)
    return protocol.answer(request, 204, upload_headers(job))


async def delete(request: Request) -> Response:
    services: Services = request.app.state.services
    job = await find(request)
    if not claims.uploading(job):
        raise ended(job)
    job_id = int(job["spec"]["jobId"])
    failed = await asyncio.to_thread(fail, services, job_id, jobs.UPLOADING, "upload terminated by the client")
    if not failed or (failed.get("status") or {}).get("state") != jobs.FAILED:
        raise ended(failed)
    services.cache.put(failed)
    await asyncio.to_thread(resumable.discard, services.storage, failed)
    log.info("job %s: upload terminated by the client", job_id)
    return protocol.answer(request, 204)


async def collection(request: Request) -> Response:
    return await (options if request.method == "OPTIONS" else create)(request)


async def upload(request: Request) -> Response:
    handler = {"OPTIONS": options, "HEAD": head, "PATCH": patch, "DELETE": delete}[request.method]
    return await handler(request)


collection_endpoint = tus_endpoint(collection)
upload_endpoint = tus_endpoint(upload)
