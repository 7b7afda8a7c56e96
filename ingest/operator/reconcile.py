"""The reconcile loop: each IngestJob and its worker Pods, driven to where the lifecycle says.

Level-triggered and idempotent: `reconcile(name)` looks at the job and its Pods as they are now and
does the one next thing that is missing - stop a worker that is no longer wanted, roll back once no
worker can write, start attempt n+1, notice a worker that ended or vanished, fail a job that
passed a limit, collect Pods, expire. It runs on every job and Pod event and again from the sweeper
every few seconds, so an action that failed (the object store was down, a Pod took its grace
period to stop) is simply tried again, and a restarted operator converges on the same result.

Writes to a job are lifecycle transitions applied by compare-and-swap; anything destructive
(rollback, a new attempt) is decided again on a fresh read of the job and a fresh list of its Pods,
under a per-job lock, so a stale event can never roll back what a newer attempt wrote.
"""
from __future__ import annotations

import json
import logging
import threading
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from ingest import events, jobs, lifecycle, metrics, resumable
from ingest.config import Settings
from ingest.kube import JobStore, list_pods, read_pod
from ingest.lifecycle import Job
from ingest.operator import cleanup, decisions
from ingest.operator.podspec import TERMINATION_GRACE_SECONDS, can_write, worker_pod
from ingest.operator.pool import Pool
from ingest.storage import Storage

log = logging.getLogger(__name__)
Body = dict[str, Any]


class Reconciler:
    def __init__(self, settings: Settings, client: kubernetes.client.ApiClient, storage: Storage) -> None:
        self.settings = settings
        self.client = client
        self.store = JobStore(client, settings.namespace)
        self.core = kubernetes.client.CoreV1Api(client)
        self.storage = storage
        self.seen: dict[str, tuple[str, str, str]] = {}
        # Jobs and worker Pods as last seen on the watches: the sweeper's view, so it never lists.
        # A finished job leaves once it has no Pods left (`settle`): memory follows what is in
        # flight, not the jobs retained; retention re-reads finished jobs page by page
        # (sweeper.Retention).
        self.known: dict[str, Body] = {}
        self.pods: dict[str, dict[str, Body]] = {}
        self.unreadable: dict[str, str] = {}
        self._locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self.pool = Pool(self)

    # --- what the watches say -------------------------------------------------------------------
    def job_changed(self, body: Body) -> None:
        name = body["metadata"]["name"]
        self.known[name] = body
        self.narrate(body)
        self.pool.job_changed(body)
        self.reconcile(name)
        self.settle(name)

    def pod_changed(self, pod: Body, deleted: bool = False) -> None:
        job_id = (pod["metadata"].get("labels") or {}).get(jobs.JOB_ID_LABEL)
        if not job_id or not job_id.isdigit():
            return
        name = jobs.job_name(int(job_id))
        pods = self.pods.setdefault(name, {})
        if deleted:
            pods.pop(pod["metadata"]["name"], None)
            if not pods:
                self.pods.pop(name, None)
        else:
            pods[pod["metadata"]["name"]] = pod
        if name in self.known:
            self.reconcile(name)
        elif not deleted:
            # A finished job is outside the job watch: its Pod brings it back (podGC, rollback).
            body = self.store.get(name)
            if body is not None:
                self.job_changed(body)

    def settle(self, name: str) -> None:
        """Drop a finished job with no Pods left from memory (it needs nothing until retention)."""
        body = self.known.get(name)
        if body is None or self.pods.get(name):
            return
        job = Job.of(body)
        if job.problems or job.deleting or not (job.complete and job.phase in lifecycle.TERMINAL_PHASES):
            return
        with self._guard:
            lock = self._locks.get(name)
            if lock is not None and lock.locked():
                return  # being reconciled right now: the next event or sweep settles it
            for table in (self.seen, self.known, self._locks):
                table.pop(name, None)

    def forget(self, name: str) -> None:
        for table in (self.seen, self.known, self.unreadable, self._locks):
            table.pop(name, None)
        self.pool.forget(name)

    def narrate(self, body: Body) -> None:
        """An Event for each phase or step a job enters (remembered in memory: a restart may repeat one)."""
        job = Job.of(body)
        name = job.name
        now = (job.phase, job.task, job.state)
        before = self.seen.get(name)
        if job.deleting or now == before:
            return
        self.seen[name] = now
        if job.complete and before is None:
            return  # a finished job seen at start-up: its story was told already
        if before is None or before[0] != now[0]:
            if now[0] == jobs.PHASE_STAGED:
                size = (job.spec.get("staged") or {}).get("size")
                staged = f"bundle staged ({size} bytes)" if size is not None else "staged"
                events.post(self.client, body, "Staged", staged)
            elif now[0] == jobs.PHASE_SUCCEEDED:
                events.post(self.client, body, "Completed", "ingest complete")
        if before is not None and before[1] != now[1] and now[2] == jobs.OK and now[1] != jobs.UPLOADING:
            events.post(self.client, body, "Step", f"{now[1]} started")

    # --- the loop -----------------------------------------------------------------------------
    def reconcile(self, name: str) -> None:
        with self._guard:
            lock = self._locks.setdefault(name, threading.Lock())
        with lock:
            body = self.known.get(name)
            if body is None:
                return
            job = Job.of(body)
            if job.problems:
                self.report_unreadable(body, job)
                if not job.deleting:  # a deletion is still honoured: the finalizer must not hang
                    return
            self.unreadable.pop(name, None)
            self.step(job, body)

    def step(self, job: Job, body: Body) -> None:
        pods = list(self.pods.get(job.name, {}).values())
        if job.deleting:
            cleanup.release(self, job, body)
            return
        if job.manual_failure:
            self.honour_manual_failure(job, body)
        self.stop_unwanted(job, body, pods)
        if job.needs_rollback:
            cleanup.roll_back(self, job.name)
        elif job.phase == jobs.PHASE_STAGED and not job.failed:
            self.staged(job, body)
        elif job.phase == jobs.PHASE_RUNNING and not job.failed:
            self.check_worker(job, body)
        elif job.phase == jobs.PHASE_UPLOADING and not job.failed:
            self.check_upload(job, body)
        if job.complete and job.phase in lifecycle.TERMINAL_PHASES:
            cleanup.collect_pods(self, job, pods)
            cleanup.expire(self, job, body)

    def report_unreadable(self, body: Body, job: Job) -> None:
        """Skipped, not fatal: one Event and one count per version, and the other jobs go on."""
        if self.unreadable.get(job.name) == job.resource_version:
            return
        self.unreadable[job.name] = job.resource_version
        metrics.STUCK_JOBS.labels("unreadable_status").inc()
        message = f"status cannot be read, the job is skipped until it is fixed: {'; '.join(job.problems)}"
        log.warning("job %s: %s", job.name, message)
        events.post(self.client, body, "Unreadable", message, warning=True)

    # --- stopping workers ---------------------------------------------------------------------
    def stop_unwanted(self, job: Job, body: Body, pods: list[Body]) -> None:
        candidates = [pod for pod in pods if can_write(pod) and not pod["metadata"].get("deletionTimestamp")
                      and not decisions.wanted(job, pod)]
        if not candidates:
            return
        fresh = self.store.get(job.name)  # the watch may not have shown our own latest write yet
        if fresh is None:
            return
        job = Job.of(fresh)
        for pod in candidates:
            if not decisions.wanted(job, pod):
                if self.delete_pod(pod["metadata"]["name"]):
                    events.post(self.client, body, "WorkerStopped",
                                f"worker Pod {pod['metadata']['name']} is no longer wanted "
                                f"({job.state}, phase {job.phase}); "
                                f"deleted with its grace period of {TERMINATION_GRACE_SECONDS} s")

    def delete_pod(self, name: str) -> bool:
        """Delete with the full grace period: the worker gets SIGTERM and time to stop writing."""
        try:
            self.core.delete_namespaced_pod(name, self.settings.namespace,
                                            grace_period_seconds=TERMINATION_GRACE_SECONDS)
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise

    def writers(self, job: Job) -> list[Body]:
        """The job's worker Pods that may still write, read live (Terminating ones included)."""
        pods = [pod for pod in list_pods(self.client, self.settings.namespace, f"{jobs.JOB_ID_LABEL}={job.job_id}")
                if can_write(pod)]
        claimant = self.pool.claimant(job)  # a pool worker that has not let go of the job
        return pods + [claimant] if claimant else pods

    def honour_manual_failure(self, job: Job, body: Body) -> None:
        """An administrator failed the job: final as written (complete, phase Failed, their fields)."""
        _, written = self.store.apply(job.name, lifecycle.manual_failure_honoured)
        if written:
            log.info("job %s: FAILED by an administrator: %s", job.name,
                     job.status.get("exception") or "no reason given")
            events.post(self.client, body, "ManualFailure",
                        f"FAILED by an administrator ({job.status.get('exception') or 'no reason given'}); "
                        "its worker is stopped, then its writes are rolled back", warning=True)

    # --- starting workers ---------------------------------------------------------------------
    def staged(self, job: Job, body: Body) -> None:
        decision = decisions.staged(job, self.settings)
        if decision == "fail":
            metrics.STUCK_JOBS.labels("worker_not_started").inc()
            self.fail(job, body, jobs.PHASE_STAGED, decisions.not_started_message(self.settings))
        elif decision == "start":
            self.start_worker(job.name)

    def start_worker(self, name: str) -> None:
        """Attempt n+1, decided on a fresh read, only once no earlier worker Pod of the job exists."""
        body = self.store.get(name)
        if not body:
            return
        job = Job.of(body)
        if job.problems or not lifecycle.may_start(job) or self.pool.handles(body):
            return  # a warm pool worker claims a job routed to the pool
        if self.writers(job):
            return  # stop_unwanted deletes them; their deletion events bring us back here
        attempt = job.attempts + 1
        pod = worker_pod(body, self.settings, attempt)
        pod_name = pod["metadata"]["name"]
        try:
            created = self.core.create_namespaced_pod(self.settings.namespace, pod, _preload_content=False)
            uid = json.loads(created.data)["metadata"]["uid"]
        except ApiException as error:
            if error.status == 409:  # an earlier run made it and died before recording it: start clean
                self.delete_pod(pod_name)
                return
            log.warning("job %s: could not create worker Pod %s: %s", name, pod_name, error.reason)
            events.post(self.client, body, "WorkerNotCreated",
                        f"could not create worker Pod {pod_name}: {error.reason}", warning=True)
            return
        _, written = self.store.apply(name, lifecycle.worker_started, owner=lifecycle.Owner(attempt, pod_name, uid))
        if written:
            log.info("job %s: worker Pod %s started (attempt %d)", name, pod_name, attempt)
            metrics.WORKER_PODS.inc()
            events.post(self.client, body, "WorkerStarted", f"worker Pod {pod_name} created (attempt {attempt})")
        else:  # the job moved on while we created the Pod: it is not wanted
            self.delete_pod(pod_name)

    # --- running workers ----------------------------------------------------------------------
    def check_worker(self, job: Job, body: Body) -> None:
        owner = job.owner
        assert owner is not None
        pod = (self.pods.get(job.name, {}).get(owner.pod) or self.pool.pods.get(owner.pod)
               or read_pod(self.client, self.settings.namespace, owner.pod))
        verdict = decisions.running_worker(job, pod, self.settings)
        if verdict.stuck:
            metrics.STUCK_JOBS.labels(verdict.stuck).inc()
        if verdict.action == "check_lease" and pod is not None:
            self.pool.check_lease(job, body, pod)
        elif verdict.action == "lost":
            self.worker_lost(job, body, verdict.message, retryable=verdict.retryable)
        elif verdict.action == "fail":
            self.fail(job, body, jobs.PHASE_RUNNING, verdict.message)

    def worker_lost(self, job: Job, body: Body, message: str, *, retryable: bool) -> None:
        """Retry while attempts remain (never for the bundle's fault), else FAILED; the rollback
        follows on the next pass, once the Pod can no longer write."""
        assert job.owner is not None
        written, changed = self.store.apply(job.name, lifecycle.worker_lost, owner=job.owner, message=message,
                                            retryable=retryable, default_attempts=self.settings.worker_attempts)
        if not changed or written is None:
            return
        after = Job.of(written)
        if after.phase == jobs.PHASE_STAGED:
            allowed = after.max_attempts or self.settings.worker_attempts
            log.warning("job %s: %s; retrying (attempt %d of %d)", job.name, message, after.attempts + 1, allowed)
            metrics.WORKER_RETRIES.inc()
            events.post(self.client, body, "Retrying",
                        f"{message}; retrying (attempt {after.attempts + 1} of {allowed})", warning=True)
        else:
            log.warning("job %s: FAILED: %s", job.name, after.status.get("exception"))
            events.post(self.client, body, "Failed", str(after.status.get("exception")), warning=True)

    def fail(self, job: Job, body: Body, phase: str, message: str) -> None:
        _, written = self.store.apply(job.name, lifecycle.operator_failed, phase=phase, message=message)
        if written:
            log.warning("job %s: FAILED: %s", job.name, message)
            events.post(self.client, body, "Failed", message, warning=True)

    # --- uploads ------------------------------------------------------------------------------
    def check_upload(self, job: Job, body: Body) -> None:
        """An upload that stopped making progress - or whose status was never written, because its
        API replica died between creating the job and writing it - fails at UPLOADING."""
        if resumable.record(body) is not None:
            self.expire_upload(job, body)  # tus: resumable, so not stalled until INGEST_UPLOAD_EXPIRY_SECONDS
            return
        stall = self.settings.upload_stall_seconds
        if lifecycle.seconds_since(job.updated) <= stall:
            return
        metrics.STUCK_JOBS.labels("upload_stalled").inc()
        received = job.status.get("uploadedBytes", 0)
        message = (f"the upload stalled: no progress for {stall} s (INGEST_UPLOAD_STALL_SECONDS) after {received} bytes"
                   if job.status else f"the upload never started: its status was not written within {stall} s "
                                      "(INGEST_UPLOAD_STALL_SECONDS); the API replica may have stopped")
        _, written = self.store.apply(job.name, lifecycle.upload_failed, task=jobs.UPLOADING, message=message)
        if written:
            log.warning("job %s: FAILED: %s", job.name, message)
            events.post(self.client, body, "Failed", message, warning=True)

    def expire_upload(self, job: Job, body: Body) -> None:
        """A tus upload nobody PATCHed for INGEST_UPLOAD_EXPIRY_SECONDS fails, and its parts go."""
        if not resumable.expired(body, jobs.now()):
            return
        message = resumable.expiry_reason(body, self.settings.upload_expiry_seconds)

        def decide(current: Body) -> dict[str, Any] | None:  # still expired: a PATCH may have just claimed it
            if not resumable.expired(current, jobs.now()):
                return None
            return lifecycle.upload_failed(lifecycle.Job.of(current), jobs.now(), task=jobs.UPLOADING, message=message)

        written = self.store.update_status(job.name, decide)
        if written is None or (written.get("status") or {}).get("exception") != message:
            return
        metrics.STUCK_JOBS.labels("upload_expired").inc()
        log.warning("job %s: FAILED: %s", job.name, message)
        events.post(self.client, body, "Failed", message, warning=True)
        resumable.discard(self.storage, written)
