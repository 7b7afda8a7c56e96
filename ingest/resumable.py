"""A resumable (tus) upload as the IngestJob records it, and the staging objects it leaves behind.

A tus upload lives across many requests, possibly on different API replicas, so nothing about it
may stay in one process: `status.tus` in the IngestJob says how far it got (the committed offset,
the S3 multipart upload id, the generation of its checkpoint) and who is writing to it now (a
lock with a lease, so a replica that dies mid-PATCH does not lock the upload forever). The bytes
themselves are parts of one S3 multipart upload of the staged bundle; what does not fill a part
yet, and the tar scanner's state, sit in the staging bucket under `uploads/<job_id>/`, one pair
of objects per generation, so a checkpoint is never overwritten while the job still names it.

The API writes this record; the operator's sweeper reads it to expire abandoned uploads and calls
`discard` to abort their parts. Both import this module, never each other.
"""
from __future__ import annotations

import datetime
import logging
from collections.abc import Mapping
from typing import Any, Final

from minio.error import S3Error

from ingest import jobs
from ingest.storage import Storage, is_missing

log = logging.getLogger(__name__)

FIELD: Final = "tus"
LEASE_SECONDS: Final = 30.0  # a PATCH renews its lock well within this; a dead replica's lapses


def prefix(job_id: int) -> str:
    """Where an upload's checkpoints live in the staging bucket (no user path can produce it)."""
    return f"uploads/{job_id}/"


def checkpoint_key(job_id: int, generation: int) -> str:
    return f"{prefix(job_id)}{generation}.state"


def pending_key(job_id: int, generation: int) -> str:
    """The bytes past the last whole part at this generation (less than one part)."""
    return f"{prefix(job_id)}{generation}.pending"


def record(job: Mapping[str, Any]) -> dict[str, Any] | None:
    """The job's tus record, or None for a job that was not created through tus."""
    value = (job.get("status") or {}).get(FIELD)
    return value if isinstance(value, dict) else None


def expiry_time(now: datetime.datetime, expiry_seconds: float) -> str:
    return jobs.rfc3339(now + datetime.timedelta(seconds=expiry_seconds))


def lock_holder(job: Mapping[str, Any], now: datetime.datetime) -> str | None:
    """Who holds the upload's lock now; a lapsed lease holds nothing."""
    lock = (record(job) or {}).get("lock") or {}
    until = jobs.parse_time(lock.get("until"))
    if not lock.get("holder") or until is None or until <= now:
        return None
    return str(lock["holder"])


def expired(job: Mapping[str, Any], now: datetime.datetime) -> bool:
    """An upload still receiving bytes whose expiry passed with nobody writing to it."""
    status = job.get("status") or {}
    tus = record(job)
    if tus is None or status.get("phase") != jobs.PHASE_UPLOADING or status.get("state") != jobs.OK:
        return False
    expires = jobs.parse_time(tus.get("expires"))
    return expires is not None and expires <= now and lock_holder(job, now) is None


def expiry_reason(job: Mapping[str, Any], expiry_seconds: float) -> str:
    tus = record(job) or {}
    return (
        f"the upload expired: no PATCH for {expiry_seconds:g} s (INGEST_UPLOAD_EXPIRY_SECONDS) after "
        f"{tus.get('offset', 0)} of {tus.get('length', 0)} bytes"
    )


def abort_parts(storage: Storage, key: str, upload_id: str) -> None:
    """Abort the S3 multipart upload (its parts go); one that is already gone is fine."""
    try:
        storage.minio._abort_multipart_upload(storage.staging, key, upload_id)  # the SDK keeps multipart calls private
    except S3Error as error:
        if error.code != "NoSuchUpload" and not is_missing(error):
            raise


def remove_checkpoints(storage: Storage, job_id: int) -> None:
    found = storage.minio.list_objects(storage.staging, prefix=prefix(job_id), recursive=True)
    keys = [item.object_name for item in found]
    if keys:
        storage.remove(storage.staging, keys)


def discard(storage: Storage, job: Mapping[str, Any]) -> None:
    """Everything an unfinished tus upload left in staging: its parts and its checkpoints."""
    tus = record(job)
    if tus is None:
        return
    job_id = int((job.get("spec") or {}).get("jobId") or 0)
    remove_checkpoints(storage, job_id)
    if tus.get("uploadId"):
        abort_parts(storage, jobs.staged_bundle_key(job_id), str(tus["uploadId"]))
