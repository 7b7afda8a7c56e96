"""The PATCH lock on an upload: claimed, renewed and released by compare-and-swap on the IngestJob.

Two clients (or one client retrying through another replica) may PATCH the same upload at once;
only one may write. The writer's identity and a lease go into `status.tus.lock` with the job's
resourceVersion, so of two replicas racing for it exactly one wins and the other answers 423. The
holder renews the lease while the body streams and releases it with the commit of the new offset;
if the replica dies, the lease lapses and the next PATCH claims the upload again. Every write
below first checks that the lock is still ours: a holder that lost it writes nothing.
"""
from __future__ import annotations

import datetime
import os
import socket
import uuid
from collections.abc import Callable
from typing import Any

from ingest import jobs, lifecycle, resumable
from ingest.api.tus.protocol import TusError

Decide = Callable[[dict[str, Any]], "dict[str, Any] | None"]


def new_holder() -> str:
    return f"{socket.gethostname()}/{os.getpid()}/{uuid.uuid4().hex[:12]}"


def lease_until(now: datetime.datetime) -> str:
    return jobs.rfc3339(now + datetime.timedelta(seconds=resumable.LEASE_SECONDS))


def uploading(job: dict[str, Any]) -> bool:
    status = job.get("status") or {}
    return status.get("state") == jobs.OK and status.get("phase") == jobs.PHASE_UPLOADING and not status.get("complete")


def percent(offset: int, length: int) -> float:
    return round(100.0 * offset / length, 2) if length else 0.0


def claim(holder: str, offset: int, expiry_seconds: float) -> Decide:
    """Take the lock for a PATCH at `offset`; TusError 423 if another writer holds it, 409 if the offset moved."""

    def decide(job: dict[str, Any]) -> dict[str, Any] | None:
        if not uploading(job):
            return None
        now = jobs.now()
        tus = resumable.record(job) or {}
        other = resumable.lock_holder(job, now)
        if other is not None and other != holder:
            raise TusError(423, "another request is writing to this upload right now; retry after it ends "
                                f"(its lock lapses within {resumable.LEASE_SECONDS:g} s if it died)")
        if int(tus.get("offset", 0)) != offset:
            raise TusError(409, f"Upload-Offset is {offset} but the upload is at {tus.get('offset', 0)}",
                           {"Upload-Offset": str(tus.get("offset", 0))})
        return {resumable.FIELD: {"lock": {"holder": holder, "until": lease_until(now)},
                                  "expires": resumable.expiry_time(now, expiry_seconds)},
                "updated": jobs.rfc3339(now)}

    return decide


def holds(job: dict[str, Any] | None, holder: str) -> bool:
    if job is None or not uploading(job):
        return False
    return ((resumable.record(job) or {}).get("lock") or {}).get("holder") == holder


def renew(holder: str, received_to: int, length: int, expiry_seconds: float) -> Decide:
    """Extend the lease and report progress while the body streams."""

    def decide(job: dict[str, Any]) -> dict[str, Any] | None:
        if not holds(job, holder):
            return None
        now = jobs.now()
        return {resumable.FIELD: {"lock": {"holder": holder, "until": lease_until(now)},
                                  "expires": resumable.expiry_time(now, expiry_seconds)},
                "uploadedBytes": received_to, "taskPercent": percent(received_to, length), "updated": jobs.rfc3339(now)}

    return decide


def commit(holder: str, *, offset: int, length: int, generation: int, expiry_seconds: float, staged: bool) -> Decide:
    """Record the new offset and checkpoint generation and release the lock (and hand a complete bundle on)."""

    def decide(job: dict[str, Any]) -> dict[str, Any] | None:
        if not holds(job, holder):
            return None
        now = jobs.now()
        change: dict[str, Any] = {
            resumable.FIELD: {"offset": offset, "generation": generation, "lock": None,
                              "expires": resumable.expiry_time(now, expiry_seconds)},
            "uploadedBytes": offset, "taskPercent": percent(offset, length), "updated": jobs.rfc3339(now),
        }
        if staged:  # the same hand-over as POST /upload's, by the lifecycle's own rule
            change |= lifecycle.staged(lifecycle.Job.of(job), now, size=offset) or {}
        return change

    return decide


def release(holder: str) -> Decide:
    """Give the lock back without moving the offset (a refused or broken PATCH)."""

    def decide(job: dict[str, Any]) -> dict[str, Any] | None:
        if not holds(job, holder):
            return None
        return {resumable.FIELD: {"lock": None}}

    return decide
