"""`python -m ingest.worker.pool`: a warm worker that takes small staged jobs one after another.

A worker Pod per job costs a process start, imports, two clients and a trip through the
scheduler before the first byte moves - seconds, for a bundle that takes milliseconds to ingest.
A pool worker pays that once and then serves the queue: the jobs the API labelled for the pool
(`jobs.POOL_LABEL`, bundles up to INGEST_POOL_MAX_BUNDLE_BYTES).

- **Queue**: one label-selected list+watch of IngestJobs. The operator removes the label from a
  completed job, so what this process holds is the queue, not the namespace's history.
- **Claim**: the lifecycle's start transition (`lifecycle.worker_started`: the job becomes Running,
  owned by attempt n+1 of this Pod, name and uid), plus `claimedBy` and a first heartbeat, written
  by compare-and-swap with the resourceVersion the watch delivered. Of several pool workers racing
  for a job exactly one write succeeds; the others get 409 and look at the next job. A job whose
  earlier attempt is not rolled back yet is not startable (`lifecycle.may_start`).
- **Fencing**: the job then runs through the same `Worker` pipeline as a worker Pod, with a
  `Reporter` whose every write is fenced by that owner, and whose heartbeat (every third of
  INGEST_LEASE_SECONDS) is the claim's lease. A job lost meanwhile (failed by an administrator,
  deleted) stops at its next file; past INGEST_WORKER_DEADLINE_SECONDS it is stopped too.
- **Letting go**: a job that ended (Succeeded, or Failed by its bundle after this worker rolled
  it back) needs nothing more. A job that stopped for another reason ends its attempt here as the
  operator would for a lost Pod (another attempt, or FAILED) and drops `claimedBy`; a lost job
  just drops `claimedBy`. Either tells the operator that no writer of the attempt is left here, so
  it may roll back. A worker that dies lets go of nothing: the operator sees its Pod end (or its
  heartbeats stop, then deletes the Pod) and only then rolls back and retries.

SIGTERM (scale-down, node drain) stops claiming and lets running jobs finish within the Pod's
grace period.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import logging
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any, cast

import kubernetes
from kubernetes.client.exceptions import ApiException

from ingest import ids, jobs, kube, lifecycle, logs
from ingest.config import Settings
from ingest.memory import bound_malloc
from ingest.storage import Storage
from ingest.worker.pipeline import Worker
from ingest.worker.reporter import Reporter

log = logging.getLogger("ingest.worker.pool")
SELECTOR = f"{jobs.POOL_LABEL}={jobs.POOL_WAITING}"


def waiting(job: dict[str, Any]) -> bool:
    """A job a worker may start: Staged, OK, and whatever an earlier attempt wrote rolled back."""
    return lifecycle.may_start(lifecycle.Job.of(job))


class Queue:
    """The pool's jobs as a label-selected watch shows them; `take()` hands out waiting ones."""

    def __init__(self, store: kube.JobStore, on_deleting: Callable[[str], None]) -> None:
        self.store = store
        self.on_deleting = on_deleting  # a job being deleted (kubectl delete): its worker stops
        self.jobs: dict[str, dict[str, Any]] = {}
        self.changed = threading.Condition()
        self.stopping = threading.Event()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                self._list_and_watch()
            except Exception as error:  # the queue must outlive any one failure of the API
                if self.stopping.is_set():
                    return
                log.warning("pool queue watch restarting: %s", error)
                time.sleep(1.0)

    def _list_and_watch(self) -> None:
        page: Any = self.store.custom.list_namespaced_custom_object(
            jobs.GROUP, jobs.VERSION, self.store.namespace, jobs.PLURAL, label_selector=SELECTOR)
        with self.changed:
            self.jobs = {job["metadata"]["name"]: job for job in page.get("items", [])}
            self.changed.notify_all()
        version = page["metadata"]["resourceVersion"]
        while not self.stopping.is_set():
            for event in self.store.watch(version, timeout_seconds=60, label_selector=SELECTOR):
                job = event["object"]
                if event["type"] == "ERROR":
                    raise RuntimeError(f"watch error: {job.get('message') if isinstance(job, dict) else job}")
                version = job["metadata"]["resourceVersion"]
                if event["type"] != "BOOKMARK":
                    self.seen(job, deleted=event["type"] == "DELETED")
                if self.stopping.is_set():
                    return

    def seen(self, job: dict[str, Any], *, deleted: bool = False) -> None:
        """A version of a job from the watch or from our own write; older versions never win."""
        name = job["metadata"]["name"]
        with self.changed:
            known = self.jobs.get(name)
            version = int(job["metadata"]["resourceVersion"])
            if known is not None and int(known["metadata"]["resourceVersion"]) > version:
                return
            if deleted:
                self.jobs.pop(name, None)
            else:
                self.jobs[name] = job
            self.changed.notify_all()
        if job["metadata"].get("deletionTimestamp"):
            self.on_deleting(name)

    def take(self, timeout: float) -> dict[str, Any] | None:
        """A waiting job, picked at random so that workers racing for the queue rarely collide."""
        with self.changed:
            candidates = [job for job in self.jobs.values() if waiting(job)]
            if not candidates:
                self.changed.wait(timeout)
                candidates = [job for job in self.jobs.values() if waiting(job)]
            return random.choice(candidates) if candidates else None


class FileIds:
    """File ids from blocks this worker reserves `BLOCK` at a time: one counter write per thousand ids
    rather than two requests per job. Ids of a block left unused when the worker stops are a gap,
    never reused."""

    BLOCK = 1000

    def __init__(self, client: kubernetes.client.ApiClient, namespace: str) -> None:
        self.client = client
        self.namespace = namespace
        self.next = self.end = 0
        self.lock = threading.Lock()

    def prefetch(self) -> None:
        """Reserve the first block before claiming anything: on a busy node the first use of the
        Kubernetes client's CoreV1Api (a large module, imported lazily) alone takes seconds."""
        with self.lock:
            self.next = ids.reserve(self.client, self.namespace, ids.FILE_IDS, self.BLOCK)
            self.end = self.next + self.BLOCK

    def take(self, count: int) -> int:
        if count > self.BLOCK:
            return ids.reserve(self.client, self.namespace, ids.FILE_IDS, count)
        with self.lock:
            if self.next + count > self.end:
                self.next = ids.reserve(self.client, self.namespace, ids.FILE_IDS, self.BLOCK)
                self.end = self.next + self.BLOCK
            first, self.next = self.next, self.next + count
            return first


@dataclasses.dataclass
class Running:
    """One claimed job in this worker: its owner identity, fenced reporter and the event that stops it."""

    name: str
    owner: lifecycle.Owner
    reporter: Reporter
    stop: threading.Event
    deadline: threading.Timer
    past_deadline: bool = False


class PoolWorker:
    def __init__(self, *, settings: Settings, client: kubernetes.client.ApiClient, storage: Storage, pod: str,
                 uid: str) -> None:
        self.settings = settings
        self.client = client
        self.store = kube.JobStore(client, settings.namespace)
        self.storage = storage
        self.pod = pod
        self.uid = uid
        self.queue = Queue(self.store, self.deleting)
        self.file_ids = FileIds(client, settings.namespace)
        self.running: dict[str, Running] = {}
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(settings.pool_jobs_per_worker)
        self.draining = threading.Event()

    def claim(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """Compare-and-swap the job from Staged to Running, owned by this worker, or None if another was first."""
        view = lifecycle.Job.of(job)
        now = jobs.now()
        owner = lifecycle.Owner(view.attempts + 1, self.pod, self.uid)
        patch = lifecycle.worker_started(view, now, owner=owner)
        if patch is None:
            return None
        body = {"metadata": {"resourceVersion": view.resource_version},
                "status": {**patch, "claimedBy": self.pod, "heartbeat": jobs.rfc3339(now)}}
        try:
            claimed = cast(dict[str, Any], self.store.custom.patch_namespaced_custom_object_status(
                jobs.GROUP, jobs.VERSION, self.settings.namespace, jobs.PLURAL, view.name, body))
        except Exception as error:
            if isinstance(error, ApiException) and error.status in (404, 409, 422):
                return None  # taken, changed or gone: the watch brings what happened
            if not kube.transient(error):
                raise
            # The answer was lost, not necessarily the write: the job is ours if it names us.
            current = kube.retrying(lambda: self.store.get(view.name))
            if current is None or not lifecycle.Job.of(current).owned_by(owner):
                return None
            claimed = current
        self.queue.seen(claimed)
        return claimed

    # --- the loop -------------------------------------------------------------------------------
    def serve(self) -> None:
        self.file_ids.prefetch()
        threading.Thread(target=self.queue.run, name="queue", daemon=True).start()
        slots = self.settings.pool_jobs_per_worker
        with concurrent.futures.ThreadPoolExecutor(slots, thread_name_prefix="job") as runner:
            while not self.draining.is_set():
                if not self.slots.acquire(timeout=1.0):
                    continue
                job = self.queue.take(timeout=1.0) if not self.draining.is_set() else None
                claimed = self.claim(job) if job is not None else None
                if claimed is None:
                    self.slots.release()
                    continue
                runner.submit(self.run_job, claimed)
            log.info("draining: %d jobs still running", len(self.running))
        self.queue.stopping.set()

    def run_job(self, claimed: dict[str, Any]) -> None:
        name = claimed["metadata"]["name"]
        owner = lifecycle.Job.of(claimed).owner
        assert owner is not None
        stop = threading.Event()
        reporter = Reporter(self.store, name, owner, lease=self.settings.lease_seconds, known=claimed)
        running = Running(name, owner, reporter, stop, threading.Timer(self.settings.worker_deadline_seconds,
                                                                       self.past_deadline, args=(name,)))
        running.deadline.daemon = True
        with self.lock:
            self.running[name] = running
        running.deadline.start()
        try:
            with logs.job(jobs.job_id_of(name)):
                log.info("claimed %s (attempt %d)", name, owner.attempt)
                worker = Worker(settings=self.settings, store=self.store, storage=self.storage, client=self.client,
                                name=name, owner=owner, stop=stop, reporter=reporter, file_ids=self.file_ids.take)
                try:
                    worker.run()
                except Exception as error:
                    self.give_back(running, error)
                else:
                    if reporter.lost is not None:
                        self.release(running)
        finally:
            running.deadline.cancel()
            stop.set()  # ends the job's heartbeat thread
            with self.lock:
                self.running.pop(name, None)
            self.slots.release()

    def deleting(self, name: str) -> None:
        """`kubectl delete` of a job we run: stop at the next file and let go; the operator rolls back."""
        with self.lock:
            running = self.running.get(name)
        if running is not None and running.reporter.lost is None:
            log.info("%s is being deleted: stopping its pipeline", name)
            running.reporter.lost = "the IngestJob is being deleted"
            running.stop.set()

    def past_deadline(self, name: str) -> None:
        with self.lock:
            running = self.running.get(name)
        if running is not None:
            running.past_deadline = True
            running.stop.set()

    def give_back(self, running: Running, error: BaseException) -> None:
        """The pipeline stopped for a reason that is not the bundle's, and nothing of this attempt
        runs any more: end the attempt as the operator would for a lost worker Pod (another attempt,
        or FAILED past the deadline or the attempts) and let go; the operator then rolls back."""
        if running.past_deadline:
            message, retryable = (f"the job ran past its deadline of {self.settings.worker_deadline_seconds} s "
                                  f"(INGEST_WORKER_DEADLINE_SECONDS) in pool worker {self.pod}"), False
        else:
            message, retryable = f"pool worker {self.pod} failed: {type(error).__name__}: {error}", True
            log.warning("%s; the operator retries or fails the job", message)

        def transition(job: lifecycle.Job, now: Any) -> dict[str, Any] | None:
            patch = lifecycle.worker_lost(job, now, owner=running.owner, message=message, retryable=retryable,
                                          default_attempts=self.settings.worker_attempts)
            return {**patch, "claimedBy": None} if patch else None

        try:
            _, written = self.store.apply(running.name, transition)
        except Exception:
            log.exception("could not give %s back; the operator deletes this Pod once its heartbeat ages", running.name)
            return
        if not written:
            self.release(running)

    def release(self, running: Running) -> None:
        """Let go of a job this attempt lost (failed by an administrator, deleted): no writer of it is
        left here, which is what the operator waits for before rolling back."""

        def decide(job: dict[str, Any]) -> dict[str, Any] | None:
            view = lifecycle.Job.of(job)
            mine = jobs.pool_claim(view.status) == self.pod and view.attempts == running.owner.attempt
            return {"claimedBy": None} if mine else None

        try:
            self.store.update_status(running.name, decide)
        except Exception as error:  # the operator deletes this Pod once the job's heartbeat ages
            log.warning("could not let go of %s: %s", running.name, error)


def main() -> int:
    bound_malloc()
    settings = Settings.from_env()
    pod = os.environ.get("INGEST_POD_NAME") or f"pool-{os.getpid()}"
    logs.setup_logging(settings)
    worker = PoolWorker(settings=settings, client=kube.api_client(), storage=Storage(settings), pod=pod,
                        uid=os.environ.get("INGEST_POD_UID") or "")

    def on_sigterm(signum: int, frame: object) -> None:
        worker.draining.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    log.info("pool worker %s serving up to %d jobs at a time", pod, settings.pool_jobs_per_worker)
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
