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

Steps of a small bundle (`coalesce`, set by the pipeline for bundles up to
INGEST_POOL_MAX_BUNDLE_BYTES) are merged: a step that starts or ends within `COALESCE_SECONDS` of
the last write waits (at most that long, on a timer) and travels with the next write. A small job that runs from `open
tar` to `ingest metadata` 100 in a fraction of a second so costs two or three writes instead of a
dozen, while a slower job still shows Pacifica's step sequence, each step within a second. The
final write (succeeded or failed) goes at once.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from ingest import jobs, lifecycle
from ingest.kube import JobStore

log = logging.getLogger(__name__)
PROGRESS_INTERVAL = 1.0
COALESCE_SECONDS = 1.0
CLAIM_WAIT_SECONDS = 60.0  # the operator records the owner just after creating the Pod


class Cancelled(Exception):
    """The job is no longer ours: failed by an administrator, handed to another attempt, deleted."""


class Reporter:
    def __init__(self, store: JobStore, name: str, owner: lifecycle.Owner, *, lease: float = 30.0,
                 known: dict[str, Any] | None = None) -> None:
        self.store = store
        self.job = known  # the version last written or read (a pool worker's claim): the next write's first guess
        self.last_write = time.monotonic() if known is not None else 0.0
        self._pending: tuple[str, float, dict[str, Any]] | None = None  # a step not written yet
        self._extra: dict[str, Any] = {}  # fields for the next write
        self._timer: threading.Timer | None = None
        self.coalesce = False  # merge fast steps: set for small bundles, whose steps take milliseconds
        self.lease = lease
        self.name = name
        self.owner = owner
        self.task = ""
        self.lost: str | None = None
        self._lock = threading.RLock()
        self._last = 0.0
        self._confirmed = time.monotonic()

    def _move(self, transition: Callable[..., dict[str, Any] | None], **facts: Any) -> dict[str, Any]:
        """Apply a fenced transition; Cancelled when the job is no longer this worker's."""
        if self.lost:
            raise Cancelled(self.lost)
        with self._lock:
            self._cancel_timer()
            job, written = self.store.apply(self.name, transition, owner=self.owner, known=self.job, **facts)
            if written:
                self.job = job
                self.last_write = time.monotonic()
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
        if self.job is not None and lifecycle.Job.of(self.job).owned_by(self.owner):
            return self.job  # claimed by this process (a pool worker): no need to read it again
        deadline = time.monotonic() + wait
        while True:
            raw = self.store.get(self.name)
            if raw is None:
                raise Cancelled("the IngestJob was deleted")
            job = lifecycle.Job.of(raw)
            if job.owned_by(self.owner):
                self._confirmed = time.monotonic()
                self.job = raw
                return raw
            if not awaits_claim(job, self.owner) or time.monotonic() > deadline:
                self.lost = describe_loss(job, self.owner)
                raise Cancelled(self.lost)
            time.sleep(0.2)

    def write(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Extra fields (file ids, counts) for the job, at its current step, now (with any pending step)."""
        with self._lock:
            task, percent, extra = self._take_pending()
            if task:
                return self._move(lifecycle.step, task=task, percent=percent, **{**extra, **fields})
            change = {**extra, **fields}
            return self._move(lambda job, now, *, owner: change if job.owned_by(owner) else None)

    def note(self, fields: dict[str, Any]) -> None:
        """Fields that travel with the next write, whenever that is."""
        with self._lock:
            self._extra.update(fields)

    def _take_pending(self) -> tuple[str, float, dict[str, Any]]:
        pending, self._pending = self._pending, None
        extra, self._extra = self._extra, {}
        if pending is None:
            return "", 0.0, extra
        return pending[0], pending[1], {**extra, **pending[2]}

    def check(self) -> dict[str, Any]:
        """Prove the job is still ours (a heartbeat write)."""
        return self._move(lifecycle.heartbeat)

    def step(self, task: str, percent: float, **extra: Any) -> None:
        if self.lost:
            raise Cancelled(self.lost)
        self.task = task
        with self._lock:
            self._last = time.monotonic()
            earlier = self._pending[2] if self._pending else {}
            self._pending = (task, percent, {**earlier, **extra})
            if not self.coalesce or time.monotonic() - self.last_write >= COALESCE_SECONDS:
                self.flush()
            elif self._timer is None:
                delay = COALESCE_SECONDS - (time.monotonic() - self.last_write)
                self._timer = threading.Timer(max(0.0, delay), self._flush_quietly)
                self._timer.daemon = True
                self._timer.start()

    def flush(self) -> None:
        """Write the pending step (and fields), if any."""
        with self._lock:
            task, percent, extra = self._take_pending()
            if task:
                self._move(lifecycle.step, task=task, percent=percent, **extra)
            elif extra:
                self._extra = extra

    def _flush_quietly(self) -> None:
        with self._lock:
            self._timer = None
            if self.lost is not None:
                return
            try:
                self.flush()
            except Exception:  # Cancelled is kept in self.lost; anything else waits for the next write
                pass

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """Drop what is pending (the job ended or was lost): no timer writes after the worker is done."""
        with self._lock:
            self._cancel_timer()
            self._pending, self._extra = None, {}

    def progress(self, percent: float, **extra: Any) -> None:
        """At most one write a second, from whichever upload thread is due; others skip."""
        if time.monotonic() - self._last < PROGRESS_INTERVAL or not self._lock.acquire(blocking=False):
            return
        try:
            if time.monotonic() - self.last_write < PROGRESS_INTERVAL:
                return  # a step was just written
            self._last = time.monotonic()
            _, _, pending = self._take_pending()
            self._move(lifecycle.step, task=self.task, percent=min(percent, 99.9), **{**pending, **extra})
        finally:
            self._lock.release()

    def committing(self) -> None:
        self.flush()
        self._move(lifecycle.committing)

    def committed_anyway(self) -> None:
        """The metadata service took the transaction although the job was lost meanwhile: say so."""
        self.store.apply(self.name, lifecycle.committed_anyway)

    def failed(self, task: str, message: str, problems: list[dict[str, str]] | None = None) -> None:
        with self._lock:
            self._take_pending()  # the failure says where the job stands
            self._move(lifecycle.bundle_failed, task=task, message=message, problems=problems or [])

    def succeeded(self, **extra: Any) -> None:
        with self._lock:
            _, _, pending = self._take_pending()
            self._move(lifecycle.succeeded, **{**pending, **extra})

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


def awaits_claim(job: lifecycle.Job, owner: lifecycle.Owner) -> bool:
    """Not ours yet, but about to be: the job is Staged and OK, and this is the attempt the operator
    records next (it does so right after creating the Pod)."""
    return job.phase == jobs.PHASE_STAGED and not job.failed and job.attempts + 1 == owner.attempt


def describe_loss(job: lifecycle.Job, owner: lifecycle.Owner) -> str:
    """Why a worker may no longer write, in the words its log and Cancelled carry."""
    if job.failed or job.complete:
        return f"job is {job.state}/{job.task}: {job.status.get('exception') or 'no reason given'}"
    current = job.owner
    if current is None:
        return f"job phase is {job.phase}, not Running for attempt {owner.attempt}"
    return f"job belongs to attempt {current.attempt} (worker Pod {current.pod}), not {owner.attempt} ({owner.pod})"
