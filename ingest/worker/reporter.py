"""How a worker reports, fenced: every write is a lifecycle transition checked against its owner.

A worker attempt is identified by (attempt number, Pod name, Pod uid); the operator records that
owner in the job when it starts the Pod. Every status write is a compare-and-swap whose transition
first checks the job still names this owner (`lifecycle.Job.owned_by`), so an administrator's
FAILED, a retry that handed the job to attempt n+1, or a `kubectl delete` all make the next write
raise `Cancelled`, and the worker stops without writing anything - nor rolling anything back: the
files are then the operator's to remove, once no worker of the job can write.

Between writes a watchdog proves the job is still ours at least every third of the lease
(INGEST_LEASE_SECONDS; the heartbeat). A worker that could not prove it for half the lease -
frozen, partitioned from the API, its Pod force-deleted - raises its stop flag before it writes
another archive object; the operator waits a whole lease after the last heartbeat before it
trusts that a Pod which vanished without terminating is dead.
"""
from __future__ import annotations

import logging
import threading
import time
from typing import Any, Callable

from ingest import jobs, lifecycle
from ingest.kube import JobStore

log = logging.getLogger(__name__)
PROGRESS_INTERVAL = 1.0
CLAIM_WAIT_SECONDS = 60.0  # the operator records the owner just after creating the Pod


class Cancelled(Exception):
    """The job is no longer ours: failed by an administrator, handed to another attempt, deleted."""


class Reporter:
    def __init__(self, store: JobStore, name: str, owner: lifecycle.Owner, *, lease: float = 30.0) -> None:
        self.store = store
        self.lease = lease
        self.name = name
        self.owner = owner
        self.task = ""
        self.lost: str | None = None
        self._lock = threading.Lock()
        self._last = 0.0
        self._confirmed = time.monotonic()

    def _move(self, transition: Callable[..., dict[str, Any] | None], **facts: Any) -> dict[str, Any]:
        """Apply a fenced transition; Cancelled when the job is no longer this worker's."""
        if self.lost:
            raise Cancelled(self.lost)
        job, written = self.store.apply(self.name, transition, owner=self.owner, **facts)
        if job is None:
            self.lost = "the IngestJob was deleted"
        elif not written:
            self.lost = describe_loss(lifecycle.Job.of(job), self.owner)
        if self.lost:
            raise Cancelled(self.lost)
        self._confirmed = time.monotonic()
        return job  # type: ignore[return-value]

    def claim(self, wait: float = CLAIM_WAIT_SECONDS) -> dict[str, Any]:
        """The job, once the operator has recorded this Pod as its owner (it does so right after
        creating the Pod); Cancelled if the job names someone else or ends meanwhile."""
        deadline = time.monotonic() + wait
        while True:
            raw = self.store.get(self.name)
            if raw is None:
                raise Cancelled("the IngestJob was deleted")
            job = lifecycle.Job.of(raw)
            if job.owned_by(self.owner):
                self._confirmed = time.monotonic()
                return raw
            waiting = job.phase == jobs.PHASE_STAGED and not job.failed and job.attempts + 1 == self.owner.attempt
            if not waiting or time.monotonic() > deadline:
                self.lost = describe_loss(job, self.owner)
                raise Cancelled(self.lost)
            time.sleep(0.2)

    def write(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Extra fields (file ids, counts) for the job, at its current step."""
        return self._move(lambda job, now, *, owner: fields if job.owned_by(owner) else None)

    def check(self) -> dict[str, Any]:
        """Prove the job is still ours (a heartbeat write)."""
        return self._move(lifecycle.heartbeat)

    def step(self, task: str, percent: float, **extra: Any) -> None:
        self.task = task
        with self._lock:
            self._last = time.monotonic()
            self._move(lifecycle.step, task=task, percent=percent, **extra)

    def progress(self, percent: float, **extra: Any) -> None:
        """At most one write a second, from whichever upload thread is due; others skip."""
        if time.monotonic() - self._last < PROGRESS_INTERVAL or not self._lock.acquire(blocking=False):
            return
        try:
            self._last = time.monotonic()
            self._move(lifecycle.step, task=self.task, percent=min(percent, 99.9), **extra)
        finally:
            self._lock.release()

    def committing(self) -> None:
        self._move(lifecycle.committing)

    def committed_anyway(self) -> None:
        """The metadata service took the transaction although the job was lost meanwhile: say so."""
        self.store.apply(self.name, lifecycle.committed_anyway)

    def failed(self, task: str, message: str, problems: list[dict[str, str]] | None = None) -> None:
        self._move(lifecycle.bundle_failed, task=task, message=message, problems=problems or [])

    def succeeded(self, **extra: Any) -> None:
        self._move(lifecycle.succeeded, **extra)

    def watch(self, stop: threading.Event) -> threading.Thread:
        """The watchdog: a heartbeat every LEASE/3 s; sets `stop` when the job is lost or unproven."""

        def run() -> None:
            while not stop.wait(self.lease / 6):
                if time.monotonic() - self._confirmed > self.lease / 2 and self.lost is None:
                    log.warning("could not prove the job is ours for %.0f s: stopping", self.lease / 2)
                    stop.set()  # the heartbeat below decides whether we go on
                if time.monotonic() - self._confirmed < self.lease / 3:
                    continue
                try:
                    self.check()
                except Cancelled as reason:
                    log.warning("the job is no longer ours: %s", reason)
                    stop.set()
                    return
                except Exception as error:  # the API is unreachable: the lease runs out by itself
                    log.warning("heartbeat failed: %s", error)

        thread = threading.Thread(target=run, name="heartbeat", daemon=True)
        thread.start()
        return thread


def describe_loss(job: lifecycle.Job, owner: lifecycle.Owner) -> str:
    if job.failed or job.complete:
        return f"job is {job.state}/{job.task}: {job.status.get('exception') or 'no reason given'}"
    current = job.owner
    if current is None:
        return f"job phase is {job.phase}, not Running for attempt {owner.attempt}"
    return f"job belongs to attempt {current.attempt} (worker Pod {current.pod}), not {owner.attempt} ({owner.pod})"
