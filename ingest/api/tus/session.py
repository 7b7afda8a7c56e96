"""One PATCH (or the body of a creation-with-upload POST) from the lock to the committed offset.

The order is what makes an upload resumable on any replica: claim the lock (CAS), load the
checkpoint the job names, stream the body into parts, write the next checkpoint under a new
generation, then commit offset + generation and release the lock in one CAS; only then remove
the old generation. A replica that dies anywhere in between leaves the job naming a complete
checkpoint and a lock whose lease lapses. A body the client cut off is still committed up to
the last byte received (unless it carried a checksum, which can no longer be verified), so the
client's HEAD finds everything that arrived. The final byte completes the multipart upload,
records the tar index and hands the job on as Staged, the same hand-over as POST /ingest.
"""
from __future__ import annotations

import asyncio
import dataclasses
import logging
from typing import Any

from starlette.requests import Request

from ingest import jobs, metrics, resumable
from ingest.api.services import Services
from ingest.api.tus import claims
from ingest.api.tus.parts import UploadStaging
from ingest.api.tus.protocol import Checksum, TusError
from ingest.api.tus.writer import PatchWriter
from ingest.api.upload import BodyError, body_chunks, fail
from ingest.bundle import BundleError
from ingest.config import bundle_limits

log = logging.getLogger(__name__)
RENEW_INTERVAL = resumable.LEASE_SECONDS / 3


class Renewer:
    """Keeps the lease alive (and the job's progress current) while a body streams."""

    def __init__(self, services: Services, name: str, holder: str, writer: PatchWriter) -> None:
        self.services, self.name, self.holder, self.writer = services, name, holder, writer
        self.lost = False
        self._stop = asyncio.Event()
        self._task = asyncio.ensure_future(self._run())

    async def _run(self) -> None:
        settings = self.services.settings
        while not self._stop.is_set():
            try:
                await asyncio.wait_for(self._stop.wait(), RENEW_INTERVAL)
                return
            except TimeoutError:
                pass
            decide = claims.renew(self.holder, self.writer.offset + self.writer.received, self.writer.length,
                                  settings.upload_expiry_seconds)
            try:
                job = await asyncio.to_thread(self.services.jobs.update_status, self.name, decide)
            except Exception as error:  # the lease outlives a few failed renewals
                log.warning("%s: could not renew the upload lock: %s", self.name, error)
                continue
            if job is None or not claims.holds(job, self.holder):
                self.lost = True
                return
            self.services.cache.put(job)

    async def stop(self) -> None:
        self._stop.set()
        await asyncio.gather(self._task, return_exceptions=True)


async def give_up(services: Services, name: str, holder: str, writer: PatchWriter, renewer: Renewer) -> None:
    await writer.discard()
    await renewer.stop()
    try:
        await asyncio.to_thread(services.jobs.update_status, name, claims.release(holder))
    except Exception as error:  # the lease lapses by itself
        log.warning("%s: could not release the upload lock: %s", name, error)


async def refuse_bundle(services: Services, job_id: int, staging: UploadStaging, error: BundleError) -> TusError:
    """The bytes are not a bundle: the job fails at the bundle's step and nothing of it is kept."""
    job = await asyncio.to_thread(fail, services, job_id, error.task, error.message)
    if job:
        services.cache.put(job)
    await asyncio.to_thread(staging.abort)
    metrics.UPLOAD_SIZE.labels("refused").observe(0)
    log.info("job %s: refused at %s: %s", job_id, error.task, error.message)
    return TusError(400, f"job {job_id} failed at {error.task}: {error.message}")


async def write_body(services: Services, request: Request, job: dict[str, Any], *, offset: int,
                     checksum: Checksum | None) -> dict[str, Any]:
    """Stream the request body into the upload at `offset`; the job as committed."""
    settings = services.settings
    name = job["metadata"]["name"]
    job_id = int(job["spec"]["jobId"])
    holder = claims.new_holder()
    claim = claims.claim(holder, offset, settings.upload_expiry_seconds)
    claimed = await asyncio.to_thread(services.jobs.update_status, name, claim)
    if claimed is None or not claims.holds(claimed, holder):
        raise ended(claimed)
    tus = resumable.record(claimed) or {}
    length, generation = int(tus["length"]), int(tus.get("generation", 0))
    staging = UploadStaging(services.storage, job_id, str(tus["uploadId"]))
    try:
        checkpoint, pending = await asyncio.to_thread(staging.load, generation, bundle_limits(settings))
    except Exception as error:
        await asyncio.to_thread(services.jobs.update_status, name, claims.release(holder))
        log.exception("job %s: could not load the upload's checkpoint", job_id)
        raise TusError(503, f"the object store did not give back the upload's checkpoint: {error}") from None
    writer = PatchWriter(staging, checkpoint, pending, offset=offset, length=length, part_size=int(tus["partSize"]),
                         checksum=checksum)
    renewer = Renewer(services, name, holder, writer)
    broke: BodyError | None = None
    try:
        try:
            async for chunk in body_chunks(request, stall_seconds=settings.upload_stall_seconds):
                if renewer.lost:
                    raise TusError(409, "this request lost the upload's lock (it was too slow); HEAD and resume")
                await writer.write(chunk)
        except BodyError as error:
            broke = error
        if broke is not None and (checksum is not None or writer.received == 0):
            raise TusError(broke.status, f"{broke.message}; nothing of this PATCH was kept")
        final = broke is None and offset + writer.received == length
        index = checkpoint.scanner.finish() if final else None
        checkpoint, pending = await writer.finish()
    except BundleError as error:
        await give_up(services, name, holder, writer, renewer)
        raise await refuse_bundle(services, job_id, staging, error) from None
    except TusError:
        await give_up(services, name, holder, writer, renewer)
        raise
    except Exception as error:
        await give_up(services, name, holder, writer, renewer)
        log.exception("job %s: a PATCH failed", job_id)
        raise TusError(503, f"the object store did not take the bytes: {error}") from None

    new_offset = offset + writer.received
    await renewer.stop()
    try:
        if final:
            await asyncio.to_thread(staging.complete, checkpoint.parts)
            assert index is not None  # finish() gave it: the body is complete
            index = dataclasses.replace(index, sha1=checkpoint.digests)
            await asyncio.to_thread(services.storage.put_bytes, services.storage.staging, jobs.staged_index_key(job_id),
                                    index.to_json().encode(), "application/json")
            await asyncio.to_thread(services.jobs.patch, name, {"spec": {"staged": {"size": length}}})
        else:
            await asyncio.to_thread(staging.save, generation + 1, checkpoint, pending)
        decide = claims.commit(holder, offset=new_offset, length=length, generation=generation + 1,
                               expiry_seconds=settings.upload_expiry_seconds, staged=final)
        written = await asyncio.to_thread(services.jobs.update_status, name, decide)
    except Exception as error:
        await asyncio.to_thread(services.jobs.update_status, name, claims.release(holder))
        log.exception("job %s: could not commit a PATCH", job_id)
        raise TusError(503, f"could not record the upload's progress: {error}") from None
    if written is None or (resumable.record(written) or {}).get("generation") != generation + 1:
        await asyncio.to_thread(staging.forget, generation + 1)  # never named: nobody else reads it
        raise ended(written)
    services.cache.put(written)
    await asyncio.to_thread(cleanup, staging, generation, final)
    if final:
        log.info("job %s: staged %d bytes through tus", job_id, length)
        metrics.UPLOAD_SIZE.labels("staged").observe(length)
    elif broke is not None:
        log.info("job %s: the client broke off at %d; %d bytes kept", job_id, new_offset, writer.received)
    return written


def cleanup(staging: UploadStaging, generation: int, final: bool) -> None:
    try:
        if final:
            resumable.remove_checkpoints(staging.storage, staging.job_id)
        else:
            staging.forget(generation)
    except Exception as error:  # a left-over checkpoint is removed with the upload's others later
        log.warning("job %s: could not remove an old checkpoint: %s", staging.job_id, error)


def ended(job: dict[str, Any] | None) -> TusError:
    """Why a PATCH cannot write: the upload ended, or another request holds it now."""
    if job is None:
        return TusError(404, "no such upload")
    status = job.get("status") or {}
    if status.get("state") != jobs.OK:
        where = f"job {job['spec']['jobId']} {status.get('state')} at {status.get('task')}"
        return TusError(410, f"the upload ended: {where}: "
                             f"{status.get('exception') or 'no reason recorded'}")
    if status.get("phase") != jobs.PHASE_UPLOADING:
        return TusError(409, f"the upload is complete: job {job['spec']['jobId']} is at {status.get('task')}")
    return TusError(409, "another request took over this upload; HEAD for the offset and resume")
