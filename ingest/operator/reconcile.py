"""The reconcile loop: IngestJobs into worker Pods, and Pods' ends into final job states.

Level-triggered and idempotent: every function looks at the job (and its Pod) as they are now and
does what is missing, so an operator restarted at any moment, or handed the same event twice,
converges on the same result. Every status write is a compare-and-swap that first checks the job
is still in the phase the decision was made for, and nothing here ever writes to a job that is
complete: an administrator's FAILED is final.
"""
from __future__ import annotations

import logging
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException

from ingest import jobs, metrics
from ingest.config import Settings
from ingest.kube import JobStore
from ingest.operator import events
from ingest.operator.podspec import failure_reason, worker_pod
from ingest.operator.pool import Pool
from ingest.storage import Storage
from ingest.worker.pipeline import rollback

log = logging.getLogger(__name__)


def status_of(job: dict[str, Any]) -> dict[str, Any]:
    return job.get("status") or {}


def in_phase(*phases: str, pod: str | None = None):
    """A guard for update_status: the job is still OK, not complete, in one of `phases`."""

    def check(job: dict[str, Any]) -> bool:
        status = status_of(job)
        return (
            status.get("state") == jobs.OK
            and not status.get("complete")
            and status.get("phase") in phases
            and (pod is None or status.get("workerPod") == pod)
        )

    return check


class Reconciler:
    def __init__(self, settings: Settings, client: kubernetes.client.ApiClient, storage: Storage) -> None:
        self.settings = settings
        self.client = client
        self.store = JobStore(client, settings.namespace)
        self.core = kubernetes.client.CoreV1Api(client)
        self.storage = storage
        self.seen: dict[str, tuple[str, str, str]] = {}
        # Every job as last seen on the watch: the sweeper's view, so it never lists the namespace.
        self.known: dict[str, dict[str, Any]] = {}
        self.pool = Pool(self)

    # --- jobs -------------------------------------------------------------------------------
    def job_changed(self, job: dict[str, Any]) -> None:
        status = status_of(job)
        self.known[job["metadata"]["name"]] = job
        self.narrate(job)
        self.pool.job_changed(job)
        if job["metadata"].get("deletionTimestamp"):
            self.release(job)
        elif status.get("state") == jobs.FAILED and status.get("phase") in (jobs.PHASE_STAGED, jobs.PHASE_RUNNING):
            self.honour_manual_failure(job)
        elif status.get("phase") == jobs.PHASE_STAGED and status.get("state") == jobs.OK and not status.get("complete"):
            self.start_worker(job)

    def narrate(self, job: dict[str, Any]) -> None:
        """An Event for each phase or step a job enters (remembered in memory: a restart may repeat one)."""
        status = status_of(job)
        name = job["metadata"]["name"]
        now = (str(status.get("phase")), str(status.get("task")), str(status.get("state")))
        before = self.seen.get(name)
        if job["metadata"].get("deletionTimestamp") or now == before:
            return
        self.seen[name] = now
        if status.get("complete") and before is None:
            return  # a finished job seen at start-up: its story was told already
        if before is None or before[0] != now[0]:
            if now[0] == jobs.PHASE_STAGED:
                size = (job["spec"].get("staged") or {}).get("size")
                events.post(self.client, job, "Staged", f"bundle staged ({size} bytes)" if size is not None else "staged")
            elif now[0] == jobs.PHASE_SUCCEEDED:
                events.post(self.client, job, "Completed", "ingest complete")
        if before is not None and before[1] != now[1] and now[2] == jobs.OK and now[1] != jobs.UPLOADING:
            events.post(self.client, job, "Step", f"{now[1]} started")

    def forget(self, name: str) -> None:
        self.seen.pop(name, None)
        self.known.pop(name, None)
        self.pool.forget(name)

    def start_worker(self, job: dict[str, Any]) -> None:
        if self.pool.handles(job):
            return  # a warm pool worker claims it
        name = job["metadata"]["name"]
        attempt = int(status_of(job).get("attempts") or 0) + 1
        pod = worker_pod(job, self.settings, attempt)
        pod_name = pod["metadata"]["name"]
        try:
            self.core.create_namespaced_pod(self.settings.namespace, pod)
        except ApiException as error:
            if error.status != 409:  # 409: an earlier run of this handler already made it
                log.warning("job %s: could not create worker Pod %s: %s", name, pod_name, error.reason)
                events.post(self.client, job, "WorkerNotCreated", f"could not create worker Pod {pod_name}: {error.reason}", warning=True)
                return
        written = self.store.update_status(name, lambda current: {
            "phase": jobs.PHASE_RUNNING, "attempts": attempt, "workerPod": pod_name,
            "updated": jobs.rfc3339(jobs.now()),
        } if in_phase(jobs.PHASE_STAGED)(current) and int(status_of(current).get("attempts") or 0) + 1 == attempt else None)
        if written and status_of(written).get("workerPod") == pod_name:
            log.info("job %s: worker Pod %s started (attempt %d)", name, pod_name, attempt)
            metrics.WORKER_PODS.inc()
            events.post(self.client, job, "WorkerStarted", f"worker Pod {pod_name} created (attempt {attempt})")
        else:  # the job moved on while we created the Pod: it is not wanted
            self.delete_pod(pod_name)

    def honour_manual_failure(self, job: dict[str, Any]) -> None:
        """An administrator failed the job: stop its worker and undo its writes, write no status."""
        if jobs.pool_claim(status_of(job)):
            # A pool worker stops on its own when it sees the FAILED and drops its lease: roll back
            # only then (or once its Pod is gone), never while it could still write.
            if not self.pool.claim_live(job):
                rollback(self.storage, int(job["spec"]["jobId"]))
            return
        pod_name = status_of(job).get("workerPod")
        deleted = self.delete_pod(pod_name) if pod_name else False
        rollback(self.storage, int(job["spec"]["jobId"]))
        if deleted:
            log.info("job %s: FAILED by an administrator; worker Pod %s deleted", job["metadata"]["name"], pod_name)
            events.post(self.client, job, "ManualFailure",
                        f"FAILED by an administrator ({status_of(job).get('exception') or 'no reason given'}); worker Pod {pod_name} deleted",
                        warning=True)

    def release(self, job: dict[str, Any]) -> None:
        """The job is being deleted: its staged bundle goes; archived files of a completed job stay."""
        if self.pool.claim_live(job):
            return  # the pool worker sees the deletion, stops and drops its lease; then we go on
        job_id = int(job["spec"]["jobId"])
        if not status_of(job).get("complete"):
            rollback(self.storage, job_id)
        self.storage.remove(self.storage.staging, jobs.staged_keys(job_id))
        finalizers = job["metadata"].get("finalizers") or []
        if jobs.FINALIZER in finalizers:
            position = finalizers.index(jobs.FINALIZER)
            patch = [
                {"op": "test", "path": f"/metadata/finalizers/{position}", "value": jobs.FINALIZER},
                {"op": "remove", "path": f"/metadata/finalizers/{position}"},
            ]
            try:
                self.store.custom.patch_namespaced_custom_object(
                    jobs.GROUP, jobs.VERSION, self.settings.namespace, jobs.PLURAL, job["metadata"]["name"], patch,
                    _content_type="application/json-patch+json",
                )
            except ApiException as error:
                if error.status not in (404, 409, 422):
                    raise
            log.info("job %s: deleted; staged data removed", job_id)

    # --- pods -------------------------------------------------------------------------------
    def pod_changed(self, pod: dict[str, Any], deleted: bool = False) -> None:
        job_id = (pod["metadata"].get("labels") or {}).get(jobs.JOB_ID_LABEL)
        if not job_id:
            return
        job = self.store.get(jobs.job_name(int(job_id)))
        if job is None or status_of(job).get("workerPod") != pod["metadata"]["name"]:
            return
        phase = (pod.get("status") or {}).get("phase")
        if phase == "Succeeded":
            self.worker_finished(job, pod)
        elif phase == "Failed":
            message, retryable = failure_reason(pod)
            self.worker_failed(job, pod["metadata"]["name"], message, retryable)
        elif deleted:
            self.worker_failed(job, pod["metadata"]["name"], f"worker Pod {pod['metadata']['name']} disappeared", True)

    def worker_finished(self, job: dict[str, Any], pod: dict[str, Any]) -> None:
        pod_name = pod["metadata"]["name"]
        self.worker_failed(job, pod_name, f"worker Pod {pod_name} exited without recording the job's outcome", False)

    def worker_failed(self, job: dict[str, Any], pod_name: str, message: str, retryable: bool) -> None:
        """Retry while attempts remain (never for the bundle's fault), else FAILED at the current step."""
        name = job["metadata"]["name"]
        guard = in_phase(jobs.PHASE_RUNNING, pod=pod_name)
        if not guard(job):
            return
        attempts = int(status_of(job).get("attempts") or 0)
        allowed = int(status_of(job).get("maxAttempts") or self.settings.worker_attempts)
        if retryable and attempts < allowed:
            written = self.store.update_status(name, lambda current: {
                "phase": jobs.PHASE_STAGED, "updated": jobs.rfc3339(jobs.now()),
                "exception": f"attempt {attempts} failed: {message}",
                "claimedBy": None, "leaseExpires": None,  # a pool worker's claim ends with its attempt
            } if guard(current) else None)
            if written and status_of(written).get("phase") == jobs.PHASE_STAGED:
                log.warning("job %s: %s; retrying (attempt %d of %d)", name, message, attempts + 1, allowed)
                metrics.WORKER_RETRIES.inc()
                events.post(self.client, job, "Retrying", f"{message}; retrying (attempt {attempts + 1} of {allowed})", warning=True)
                self.start_worker(written)
            return
        self.fail(job, message if not retryable else f"{message} (after {attempts} attempts)", guard)

    def fail(self, job: dict[str, Any], message: str, guard) -> None:
        name = job["metadata"]["name"]
        current = self.store.get(name)
        if current is None or not guard(current):
            return  # it moved on (succeeded, retried, failed by someone else): leave its files alone
        rollback(self.storage, int(job["spec"]["jobId"]))
        task = status_of(job).get("task") or jobs.UPLOADING
        written = self.store.update_status(name, lambda current: {
            **jobs.progress(jobs.FAILED, status_of(current).get("task") or task, 0.0, message),
            "phase": jobs.PHASE_FAILED, "finishedAt": jobs.rfc3339(jobs.now()),
        } if guard(current) else None)
        if written and status_of(written).get("phase") == jobs.PHASE_FAILED:
            log.warning("job %s: FAILED: %s", name, message)
            events.post(self.client, job, "Failed", message, warning=True)

    def delete_pod(self, name: str) -> bool:
        try:
            self.core.delete_namespaced_pod(name, self.settings.namespace, grace_period_seconds=5)
            return True
        except ApiException as error:
            if error.status == 404:
                return False
            raise
