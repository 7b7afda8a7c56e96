"""How a worker reports: guarded status writes, merged when they come fast, respect for a manual FAILED.

Every write is a compare-and-swap through `JobStore.update_status`, and every write first checks
that the job is still this worker's to report on: state OK, phase Running, this Pod named as the
worker (and, for a pool worker, the attempt it claimed). When an administrator failed the job
(IngestCMD or `kubectl patch`), or the operator gave the job to another attempt, the reporter
raises `Cancelled` and the worker stops without writing.

Writes are merged: a step that starts or ends within `COALESCE_SECONDS` of the last write waits
(at most that long, on a timer) and travels with the next one. A small job that runs from `open
tar` to `ingest metadata` 100 in a fraction of a second so costs two or three writes instead of a
dozen, while a slower job still shows Pacifica's step sequence, each step within a second. The
final write (succeeded or failed) always goes at once, carrying whatever was pending.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

from ingest import jobs
from ingest.kube import JobStore

PROGRESS_INTERVAL = 1.0
COALESCE_SECONDS = 1.0


class Cancelled(Exception):
    """The job is no longer ours: failed by an administrator, or handed to another attempt."""


class Reporter:
    def __init__(self, store: JobStore, name: str, pod: str | None, *, attempt: int | None = None,
                 stamp: Callable[[dict[str, Any]], dict[str, Any]] | None = None, known: dict[str, Any] | None = None) -> None:
        self.store = store
        self.name = name
        self.pod = pod
        self.attempt = attempt  # a pool worker's claim: only this attempt may write
        self.stamp = stamp  # fields every write carries, given the change (a pool worker's lease)
        self.task = ""
        self.job = known  # the version last written or read: the next write's first guess
        self.last_write = time.monotonic() if known is not None else 0.0
        self.lost: Cancelled | None = None
        self._first = known
        self._pending: dict[str, Any] = {}
        self._timer: threading.Timer | None = None
        self._lock = threading.RLock()

    def _ours(self, job: dict[str, Any]) -> dict[str, Any]:
        status = job.get("status") or {}
        if status.get("state") != jobs.OK or status.get("complete"):
            raise Cancelled(f"job is {status.get('state')}/{status.get('task')}: {status.get('exception') or 'no reason'}")
        if job["metadata"].get("deletionTimestamp"):
            raise Cancelled("the IngestJob is being deleted")
        if status.get("phase") != jobs.PHASE_RUNNING:
            raise Cancelled(f"job phase is {status.get('phase')}, not Running")
        if self.pod and status.get("workerPod") not in (None, self.pod):
            raise Cancelled(f"job belongs to worker {status.get('workerPod')}, not {self.pod}")
        if self.attempt is not None and int(status.get("attempts") or 0) != self.attempt:
            raise Cancelled(f"job is at attempt {status.get('attempts')}, not this worker's attempt {self.attempt}")
        return status

    def write(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Write `fields` now, with anything pending; raises Cancelled if the job is not ours."""
        with self._lock:
            if self.lost is not None:
                raise self.lost
            self._cancel_timer()
            change = {**self._pending, **fields}
            if self.stamp:
                change.update(self.stamp(change))

            def decide(job: dict[str, Any]) -> dict[str, Any]:
                self._ours(job)
                return change

            try:
                job = self.store.update_status(self.name, decide, known=self.job)
            except Cancelled as reason:
                self.lost = reason
                raise
            if job is None:
                self.lost = Cancelled("the IngestJob was deleted")
                raise self.lost
            self._pending = {}
            self.job = job
            self.last_write = time.monotonic()
            return job

    def check(self) -> dict[str, Any]:
        """The job as it stands, if it is still ours (the first call may use the claimed version)."""
        job, self._first = (self._first, None) if self._first is not None else (self.store.get(self.name), None)
        if job is None:
            raise Cancelled("the IngestJob was deleted")
        self._ours(job)
        return job

    def note(self, fields: dict[str, Any]) -> None:
        """Fields that travel with the next write, whenever that is."""
        with self._lock:
            self._pending.update(fields)

    def step(self, task: str, percent: float, **extra: Any) -> None:
        with self._lock:
            if self.lost is not None:
                raise self.lost
            self.task = task
            self._pending.update({**jobs.progress(jobs.OK, task, percent), **extra})
            if time.monotonic() - self.last_write >= COALESCE_SECONDS:
                self.write({})
            elif self._timer is None:
                delay = COALESCE_SECONDS - (time.monotonic() - self.last_write)
                self._timer = threading.Timer(max(0.0, delay), self._flush)
                self._timer.daemon = True
                self._timer.start()

    def _flush(self) -> None:
        with self._lock:
            self._timer = None
            if not self._pending or self.lost is not None:
                return
            try:
                self.write({})
            except Exception:  # Cancelled is kept in self.lost; anything else waits for the next write
                pass

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def progress(self, percent: float, **extra: Any) -> None:
        """At most one write a second, from whichever upload thread is due; others skip."""
        if time.monotonic() - self.last_write < PROGRESS_INTERVAL or not self._lock.acquire(blocking=False):
            return
        try:
            self.write({**jobs.progress(jobs.OK, self.task, min(percent, 99.9)), **extra})
        finally:
            self._lock.release()

    def failed(self, task: str, message: str) -> None:
        self.write({**jobs.progress(jobs.FAILED, task, 0.0, message), "phase": jobs.PHASE_FAILED,
                    "finishedAt": jobs.rfc3339(jobs.now())})

    def succeeded(self, **extra: Any) -> None:
        self.write({**jobs.progress(jobs.OK, jobs.INGEST_METADATA, 100.0), "phase": jobs.PHASE_SUCCEEDED,
                    "finishedAt": jobs.rfc3339(jobs.now()), **extra})

    def close(self) -> None:
        """Drop what is pending (the job ended or was lost): no timer writes after the worker is done."""
        with self._lock:
            self._cancel_timer()
            self._pending = {}
