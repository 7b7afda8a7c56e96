"""How a worker reports: guarded status writes, throttled progress, and respect for a manual FAILED.

Every write is a compare-and-swap through `JobStore.update_status`, and every write first checks
that the job is still this worker's to report on: state OK, phase Running, this Pod named as the
worker. When an administrator failed the job (IngestCMD or `kubectl patch`), or the operator gave
the job to another attempt, the reporter raises `Cancelled` and the worker stops without writing.
"""
from __future__ import annotations

import threading
import time
from typing import Any

from ingest import jobs
from ingest.kube import JobStore

PROGRESS_INTERVAL = 1.0


class Cancelled(Exception):
    """The job is no longer ours: failed by an administrator, or handed to another attempt."""


class Reporter:
    def __init__(self, store: JobStore, name: str, pod: str | None) -> None:
        self.store = store
        self.name = name
        self.pod = pod
        self.task = ""
        self._lock = threading.Lock()
        self._last = 0.0

    def _ours(self, job: dict[str, Any]) -> dict[str, Any]:
        status = job.get("status") or {}
        if status.get("state") != jobs.OK or status.get("complete"):
            raise Cancelled(f"job is {status.get('state')}/{status.get('task')}: {status.get('exception') or 'no reason'}")
        if status.get("phase") != jobs.PHASE_RUNNING:
            raise Cancelled(f"job phase is {status.get('phase')}, not Running")
        if self.pod and status.get("workerPod") not in (None, self.pod):
            raise Cancelled(f"job belongs to worker {status.get('workerPod')}, not {self.pod}")
        return status

    def write(self, fields: dict[str, Any]) -> dict[str, Any]:
        def decide(job: dict[str, Any]) -> dict[str, Any]:
            self._ours(job)
            return fields

        job = self.store.update_status(self.name, decide)
        if job is None:
            raise Cancelled("the IngestJob was deleted")
        return job

    def check(self) -> dict[str, Any]:
        """The job as it stands, if it is still ours."""
        job = self.store.get(self.name)
        if job is None:
            raise Cancelled("the IngestJob was deleted")
        self._ours(job)
        return job

    def step(self, task: str, percent: float, **extra: Any) -> None:
        self.task = task
        with self._lock:
            self._last = time.monotonic()
            self.write({**jobs.progress(jobs.OK, task, percent), **extra})

    def progress(self, percent: float, **extra: Any) -> None:
        """At most one write a second, from whichever upload thread is due; others skip."""
        if time.monotonic() - self._last < PROGRESS_INTERVAL or not self._lock.acquire(blocking=False):
            return
        try:
            self._last = time.monotonic()
            self.write({**jobs.progress(jobs.OK, self.task, min(percent, 99.9)), **extra})
        finally:
            self._lock.release()

    def failed(self, task: str, message: str) -> None:
        self.write({**jobs.progress(jobs.FAILED, task, 0.0, message), "phase": jobs.PHASE_FAILED,
                    "finishedAt": jobs.rfc3339(jobs.now())})

    def succeeded(self, **extra: Any) -> None:
        self.write({**jobs.progress(jobs.OK, jobs.INGEST_METADATA, 100.0), "phase": jobs.PHASE_SUCCEEDED,
                    "finishedAt": jobs.rfc3339(jobs.now()), **extra})
