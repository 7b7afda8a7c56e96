"""`python -m ingest.worker.pool`: a warm worker that takes small staged jobs one after another.

A worker Pod per job costs a process start, imports, two clients and a trip through the
scheduler before the first byte moves - seconds, for a bundle that takes milliseconds to ingest.
A pool worker pays that once and then serves the queue: the jobs the API labelled for the pool
(`jobs.POOL_LABEL`, bundles up to INGEST_POOL_MAX_BUNDLE_BYTES).

- **Queue**: one label-selected list+watch of IngestJobs. The operator removes the label from a
  completed job, so what this process holds is the queue, not the namespace's history.
- **Claim**: a compare-and-swap on the job's status with the resourceVersion the watch delivered:
  phase Running, the next attempt number, this Pod as `workerPod` and `claimedBy`, and a lease
  (`leaseExpires`). Of several pool workers racing for a job exactly one write succeeds; the
  others get 409 and look at the next job.
- **Fencing**: the job then runs through the same `Worker` pipeline as a worker Pod, with a
  `Reporter` that writes only while the job is Running at this attempt with this Pod as its
  worker, and that carries a renewed lease on every write. A ticker renews leases of jobs that
  have been quiet for a third of the lease and stops jobs that passed their deadline or were
  lost (failed by an administrator, retried by the operator): their pipeline stops at the next
  file and undoes its archive writes before the job is let go.
- **Release**: the job's final write (Succeeded, Failed) drops the lease; a job this worker could
  not finish goes back to Staged for another attempt (or FAILED once attempts are spent), and a
  job it lost gets its lease removed, which tells the operator that no writer of this attempt is
  left, so rolling back is safe. A worker that dies releases nothing: the operator sees its Pod
  end (or its lease pass, then deletes the Pod) and only then retries.

SIGTERM (scale-down, node drain) stops claiming and lets running jobs finish within the Pod's
grace period.
"""
from __future__ import annotations

import concurrent.futures
import dataclasses
import datetime
import logging
import os
import random
import signal
import sys
import threading
import time
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from ingest import ids, jobs, kube, logs
from ingest.config import Settings
from ingest.memory import bound_malloc
from ingest.storage import Storage
from ingest.worker.pipeline import Worker
from ingest.worker.reporter import Cancelled, Reporter

log = logging.getLogger("ingest.worker.pool")
SELECTOR = f"{jobs.POOL_LABEL}={jobs.POOL_WAITING}"
TERMINAL = (jobs.PHASE_SUCCEEDED, jobs.PHASE_FAILED, jobs.PHASE_STAGED)


def waiting(job: dict[str, Any]) -> bool:
    """Staged, OK, not complete, not being deleted: a job a pool worker may claim."""
    status = job.get("status") or {}
    return (
        status.get("phase") == jobs.PHASE_STAGED and status.get("state") == jobs.OK and not status.get("complete")
        and not job["metadata"].get("deletionTimestamp")
    )


class Queue:
    """The pool's jobs as a label-selected watch shows them; `take()` hands out waiting ones."""

    def __init__(self, store: kube.JobStore) -> None:
        self.store = store
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
        page = self.store.custom.list_namespaced_custom_object(
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
            if known is not None and int(known["metadata"]["resourceVersion"]) > int(job["metadata"]["resourceVersion"]):
                return
            if deleted:
                self.jobs.pop(name, None)
            else:
                self.jobs[name] = job
            self.changed.notify_all()

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
    """One claimed job in this worker: its fenced reporter and the event that stops its pipeline."""

    name: str
    attempt: int
    reporter: Reporter
    stop: threading.Event
    started: float
    why_stopped: str = ""


class PoolWorker:
    def __init__(self, *, settings: Settings, client: kubernetes.client.ApiClient, storage: Storage, pod: str) -> None:
        self.settings = settings
        self.client = client
        self.store = kube.JobStore(client, settings.namespace)
        self.storage = storage
        self.pod = pod
        self.queue = Queue(self.store)
        self.file_ids = FileIds(client, settings.namespace)
        self.running: dict[str, Running] = {}
        self.lock = threading.Lock()
        self.slots = threading.Semaphore(settings.pool_jobs_per_worker)
        self.draining = threading.Event()

    # --- the lease ----------------------------------------------------------------------------
    def lease_until(self) -> str:
        moment = jobs.now() + datetime.timedelta(seconds=self.settings.pool_lease_seconds)
        return jobs.rfc3339(moment)

    def stamp(self, change: dict[str, Any]) -> dict[str, Any]:
        """Every write renews the lease; the write that ends the attempt drops it."""
        if change.get("phase") in TERMINAL:
            return {"leaseExpires": None}
        return {"leaseExpires": self.lease_until()}

    def claim(self, job: dict[str, Any]) -> dict[str, Any] | None:
        """Compare-and-swap the job from Staged to Running under this worker, or None if another was first."""
        status = job.get("status") or {}
        body = {
            "metadata": {"resourceVersion": job["metadata"]["resourceVersion"]},
            "status": {
                "phase": jobs.PHASE_RUNNING, "attempts": int(status.get("attempts") or 0) + 1,
                "workerPod": self.pod, "claimedBy": self.pod, "leaseExpires": self.lease_until(),
                "updated": jobs.rfc3339(jobs.now()),
            },
        }
        name = job["metadata"]["name"]
        try:
            claimed = self.store.custom.patch_namespaced_custom_object_status(
                jobs.GROUP, jobs.VERSION, self.settings.namespace, jobs.PLURAL, name, body)
        except Exception as error:
            if isinstance(error, ApiException) and error.status in (404, 409, 422):
                return None  # taken, changed or gone: the watch brings what happened
            if not kube.transient(error):
                raise
            # The answer was lost, not necessarily the write: the job is ours if it carries our claim.
            current = kube.retrying(lambda: self.store.get(name))
            status = (current or {}).get("status") or {}
            if not (status.get("claimedBy") == self.pod and status.get("attempts") == body["status"]["attempts"]
                    and status.get("leaseExpires") == body["status"]["leaseExpires"]):
                return None
            claimed = current
        self.queue.seen(claimed)
        return claimed

    # --- the loop -------------------------------------------------------------------------------
    def serve(self) -> None:
        self.file_ids.prefetch()
        threading.Thread(target=self.queue.run, name="queue", daemon=True).start()
        threading.Thread(target=self.tick_forever, name="lease", daemon=True).start()
        with concurrent.futures.ThreadPoolExecutor(self.settings.pool_jobs_per_worker, thread_name_prefix="job") as runner:
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
        attempt = int(claimed["status"]["attempts"])
        stop = threading.Event()
        reporter = Reporter(self.store, name, self.pod, attempt=attempt, stamp=self.stamp, known=claimed)
        running = Running(name, attempt, reporter, stop, time.monotonic())
        with self.lock:
            self.running[name] = running
        try:
            with logs.job(jobs.job_id_of(name)):
                log.info("claimed %s (attempt %d)", name, attempt)
                worker = Worker(settings=self.settings, store=self.store, storage=self.storage, client=self.client,
                                name=name, pod=self.pod, stop=stop, reporter=reporter, file_ids=self.file_ids.take)
                try:
                    worker.run()
                except Exception as error:
                    self.give_back(running, error)
                else:
                    ended = ((reporter.job or {}).get("status") or {}).get("phase") in TERMINAL
                    if reporter.lost is not None or not ended:  # lost: tell the operator no writer is left
                        self.release(running)
        finally:
            with self.lock:
                self.running.pop(name, None)
            self.slots.release()

    def give_back(self, running: Running, error: BaseException) -> None:
        """The pipeline failed for a reason that is not the bundle's; its writes are undone already."""
        reporter = running.reporter
        try:
            if running.why_stopped.startswith("deadline"):
                reporter.failed(reporter.task or jobs.OPEN_TAR, running.why_stopped.split(":", 1)[1].strip())
                return
            if isinstance(error, Cancelled) or reporter.lost is not None:
                self.release(running)
                return
            message = f"pool worker {self.pod} failed: {type(error).__name__}: {error}"
            status = (reporter.job or {}).get("status") or {}
            allowed = int(status.get("maxAttempts") or self.settings.worker_attempts)
            if running.attempt < allowed:
                log.warning("%s; the job goes back to the queue (attempt %d of %d)", message, running.attempt + 1, allowed)
                reporter.write({"phase": jobs.PHASE_STAGED, "exception": f"attempt {running.attempt} failed: {message}",
                                "updated": jobs.rfc3339(jobs.now())})
            else:
                reporter.failed(reporter.task or jobs.OPEN_TAR, f"{message} (after {running.attempt} attempts)")
        except Cancelled:
            self.release(running)
        except Exception:
            log.exception("could not give %s back; its lease will lapse and the operator retries it", running.name)

    def release(self, running: Running) -> None:
        """Drop the lease of a job this attempt no longer works on (lost, or already ended by us)."""

        def decide(job: dict[str, Any]) -> dict[str, Any] | None:
            status = job.get("status") or {}
            mine = status.get("claimedBy") == self.pod and int(status.get("attempts") or 0) == running.attempt
            return {"leaseExpires": None} if mine and status.get("leaseExpires") else None

        try:
            self.store.update_status(running.name, decide)
        except Exception as error:  # the lease then lapses on its own
            log.warning("could not release %s: %s", running.name, error)

    # --- leases and deadlines ---------------------------------------------------------------------
    def tick_forever(self) -> None:
        interval = self.settings.pool_lease_seconds / 3
        while True:
            time.sleep(min(1.0, interval))
            with self.lock:
                current = list(self.running.values())
            for running in current:
                self.tick(running, interval)

    def tick(self, running: Running, interval: float) -> None:
        if running.stop.is_set():
            return
        if time.monotonic() - running.started > self.settings.worker_deadline_seconds:
            running.why_stopped = (f"deadline: the job ran past its deadline of {self.settings.worker_deadline_seconds} s "
                                   "(INGEST_WORKER_DEADLINE_SECONDS) in pool worker " + self.pod)
            running.stop.set()
            return
        if time.monotonic() - running.reporter.last_write < interval:
            return
        try:
            running.reporter.write({})
        except Cancelled as reason:
            log.info("%s is no longer ours (%s): stopping its pipeline", running.name, reason)
            running.why_stopped = "lost"
            running.stop.set()
        except Exception as error:  # the next tick tries again; the lease has two more
            log.warning("could not renew the lease of %s: %s", running.name, error)


def main() -> int:
    bound_malloc()
    settings = Settings.from_env()
    pod = os.environ.get("INGEST_POD_NAME") or f"pool-{os.getpid()}"
    logs.setup_logging(settings)
    worker = PoolWorker(settings=settings, client=kube.api_client(), storage=Storage(settings), pod=pod)

    def on_sigterm(signum: int, frame: object) -> None:
        worker.draining.set()

    signal.signal(signal.SIGTERM, on_sigterm)
    log.info("pool worker %s serving up to %d jobs at a time", pod, settings.pool_jobs_per_worker)
    worker.serve()
    return 0


if __name__ == "__main__":
    sys.exit(main())
