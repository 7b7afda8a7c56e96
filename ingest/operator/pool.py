"""The warm pool: pool worker Pods sized to the queue, and the leases of the jobs they claim.

The operator owns the pool the way a ReplicaSet owns its Pods, but with the one thing a
ReplicaSet cannot know: how many small jobs are waiting. It keeps between INGEST_POOL_MIN and
INGEST_POOL_MAX pool worker Pods (`podspec.pool_pod`), enough for the jobs queued and running at
INGEST_POOL_JOBS_PER_WORKER each; it replaces Pods that end, and removes idle ones only after the
queue has stayed short for `SCALE_DOWN_AFTER` seconds, so a burst does not make it flap.

Claims: a pool worker claims a job with the lifecycle's own start transition (it becomes the
job's owner: attempt, Pod name, Pod uid), plus `claimedBy`, and proves it is alive with the same
heartbeat as any worker. A job is the pool worker's to write while its claim holds: until the
worker lets go (the job ended, or it lost the job and removed `claimedBy`) or its Pod ends. The
reconciler asks `claimant()` before it rolls anything back, so nothing is removed while a pool
worker could still write. A heartbeat older than INGEST_LEASE_SECONDS on a Pod that still runs
means a hung worker: the operator deletes that Pod (its other jobs are retried too) and the claim
dies with it. The label the API routed a job with (`jobs.POOL_LABEL`) is removed once the job is
complete (a compare-and-swap on the version seen complete), so the pool workers' watch holds the
queue, not the history.
"""
from __future__ import annotations

import logging
import math
import threading
import time
from typing import Any

from kubernetes.client.exceptions import ApiException

from ingest import events, jobs, lifecycle
from ingest.config import Settings
from ingest.kube import read_pod, retrying
from ingest.lifecycle import Job
from ingest.operator.podspec import POOL_WORKER, TERMINATION_GRACE_SECONDS, can_write, pool_pod

log = logging.getLogger(__name__)
SCALE_DOWN_AFTER = 30.0
TERMINATED = ("Succeeded", "Failed")


class Pool:
    def __init__(self, reconciler: Any) -> None:
        self.reconciler = reconciler
        self.settings: Settings = reconciler.settings
        self.enabled = self.settings.worker_mode == "pool"
        self.pods: dict[str, dict[str, Any]] = {}  # pool worker Pods as last seen on the watch
        self.queued: dict[str, str] = {}  # incomplete pool jobs -> phase: the demand
        self.lock = threading.RLock()
        self.short_since: float | None = None

    # --- the demand -------------------------------------------------------------------------
    def handles(self, job: dict[str, Any]) -> bool:
        """The pool, not a worker Pod of its own, runs this job (in pool mode)."""
        return self.enabled and jobs.routed_to_pool(job)

    def job_changed(self, job: dict[str, Any]) -> None:
        name = job["metadata"]["name"]
        status = job.get("status") or {}
        if not jobs.routed_to_pool(job):
            return
        if jobs.state_document(job)["complete"] or job["metadata"].get("deletionTimestamp"):
            with self.lock:
                self.queued.pop(name, None)
            if jobs.state_document(job)["complete"]:  # out of the queue; a claim on it is the reconciler's concern
                self.unlabel(job)
            return
        with self.lock:
            before = self.queued.get(name)
            self.queued[name] = str(status.get("phase"))
        if before is None and status.get("phase") == jobs.PHASE_STAGED:
            self.scale()
        holder = jobs.pool_claim(status)
        if holder and status.get("phase") == jobs.PHASE_RUNNING and before != jobs.PHASE_RUNNING:
            events.post(self.reconciler.client, job, "WorkerStarted",
                        f"pool worker Pod {holder} claimed the job (attempt {status.get('attempts')})")

    def forget(self, name: str) -> None:
        with self.lock:
            self.queued.pop(name, None)

    def unlabel(self, job: dict[str, Any], *, attempts: int = 5) -> None:
        """Take a complete job out of the pool's queue, by compare-and-swap on the version seen complete.

        A plain patch could land on a newer version: a job retried (`IngestCMD retry`) since this
        event was delivered is waiting again, and without its label no pool worker would see it. On
        409 the job is read again and unlabelled only if it is still complete and still labelled."""
        name = job["metadata"]["name"]
        for _ in range(attempts):
            version = job["metadata"]["resourceVersion"]
            try:
                self.reconciler.store.patch(
                    name, {"metadata": {"resourceVersion": version, "labels": {jobs.POOL_LABEL: None}}})
                return
            except ApiException as error:
                if error.status == 404:
                    return
                if error.status != 409:
                    log.warning("could not take %s out of the pool's queue: %s", name, error.reason)
                    return
            current = retrying(lambda: self.reconciler.store.get(name))
            if current is None or not jobs.routed_to_pool(current) or not jobs.state_document(current)["complete"]:
                return  # gone, unlabelled already, or waiting again: nothing to take out
            job = current
        log.warning("could not take %s out of the pool's queue: it kept changing", name)

    # --- the Pods ---------------------------------------------------------------------------
    def sync(self) -> None:
        """At start-up, before any scaling: the pool worker Pods that exist already."""
        listing = self.reconciler.core.list_namespaced_pod(
            self.settings.namespace, label_selector=f"{jobs.COMPONENT_LABEL}={POOL_WORKER}")
        with self.lock:
            for item in listing.items:
                pod = self.reconciler.client.sanitize_for_serialization(item)
                self.pods.setdefault(pod["metadata"]["name"], pod)

    def pod_changed(self, pod: dict[str, Any], *, deleted: bool = False) -> None:
        name = pod["metadata"]["name"]
        phase = (pod.get("status") or {}).get("phase")
        with self.lock:
            if deleted:
                self.pods.pop(name, None)
            else:
                self.pods[name] = pod
        if deleted or phase in TERMINATED:
            self.worker_gone(name)
            if not deleted:
                self.delete_pod(name)  # a pool worker that ended is replaced, not restarted
            self.scale()

    def worker_gone(self, pod_name: str) -> None:
        """No process of this Pod can write any more: reconcile the jobs it held (retried, rolled back)."""
        with self.lock:
            names = list(self.queued)
        for name in names:
            job = self.reconciler.known.get(name)
            if job is not None and jobs.pool_claim(job.get("status") or {}) == pod_name:
                self.reconciler.reconcile(name)

    def live_pods(self) -> list[str]:
        with self.lock:
            return [name for name, pod in self.pods.items()
                    if not pod["metadata"].get("deletionTimestamp")
                    and (pod.get("status") or {}).get("phase") not in TERMINATED]

    def desired(self) -> int:
        with self.lock:
            demand = sum(1 for phase in self.queued.values() if phase in (jobs.PHASE_STAGED, jobs.PHASE_RUNNING))
        wanted = math.ceil(demand / self.settings.pool_jobs_per_worker)
        return max(self.settings.pool_min, min(self.settings.pool_max, wanted))

    def scale(self) -> None:
        if not self.enabled:
            return
        with self.lock:
            live = self.live_pods()
            wanted = self.desired()
            if len(live) < wanted:
                self.short_since = None
                for _ in range(wanted - len(live)):
                    self.create_pod()
            elif len(live) > wanted:
                now = time.monotonic()
                self.short_since = self.short_since or now
                if now - self.short_since >= SCALE_DOWN_AFTER:
                    busy = {jobs.pool_claim((self.reconciler.known.get(name) or {}).get("status") or {})
                            for name in self.queued}
                    for name in [pod for pod in live if pod not in busy][:len(live) - wanted]:
                        log.info("pool: scaling down, deleting idle pool worker %s", name)
                        self.delete_pod(name)
                    self.short_since = None
            else:
                self.short_since = None

    def create_pod(self) -> None:
        try:
            created = self.reconciler.core.create_namespaced_pod(self.settings.namespace, pool_pod(self.settings))
        except ApiException as error:
            log.warning("pool: could not create a pool worker Pod: %s", error.reason)
            return
        pod = self.reconciler.client.sanitize_for_serialization(created)
        self.pods[pod["metadata"]["name"]] = pod
        log.info("pool: started pool worker %s", pod["metadata"]["name"])

    def delete_pod(self, name: str) -> None:
        try:
            self.reconciler.core.delete_namespaced_pod(name, self.settings.namespace,
                                                       grace_period_seconds=TERMINATION_GRACE_SECONDS)
        except ApiException as error:
            if error.status != 404:
                log.warning("pool: could not delete pool worker %s: %s", name, error.reason)

    # --- claims -----------------------------------------------------------------------------
    def pod_of(self, name: str) -> dict[str, Any] | None:
        return self.pods.get(name) or read_pod(self.reconciler.client, self.settings.namespace, name)

    def claimant(self, job: Job) -> dict[str, Any] | None:
        """The pool worker Pod that may still write to the job: it claimed it, has not let go, and runs.

        A claim on a job that succeeded or was rolled back is over: its worker wrote that outcome
        itself (or was gone before the operator rolled back)."""
        holder = jobs.pool_claim(job.status)
        if not holder or job.phase == jobs.PHASE_SUCCEEDED or job.rolled_back or job.committing:
            return None
        pod = self.pod_of(holder)
        return pod if pod is not None and can_write(pod) else None

    def check_lease(self, job: Job, body: dict[str, Any], pod: dict[str, Any]) -> None:
        """A claimed job whose heartbeat is older than the lease, on a Pod that still runs: the
        worker is hung. Delete its Pod (with its grace period); the claim ends when the Pod does."""
        last = jobs.parse_time(job.status.get("heartbeat")) or job.updated
        if pod["metadata"].get("deletionTimestamp") or lifecycle.seconds_since(last) <= self.settings.lease_seconds:
            return
        holder = pod["metadata"]["name"]
        log.warning("job %s: pool worker %s gave no sign of life for %s s; deleting the Pod",
                    job.name, holder, self.settings.lease_seconds)
        events.post(self.reconciler.client, body, "LeaseExpired",
                    f"pool worker {holder} stopped renewing its claim (INGEST_LEASE_SECONDS); deleting it",
                    warning=True)
        self.delete_pod(holder)
