"""The sweeper: what no event announces - limits passing, Pods vanishing while nobody watched.

Every few seconds it goes over the jobs the watch has shown (no listing) and fails the ones that
hit a limit: an
upload that stopped making progress (the API replica died, or the client went silent), a staged
job whose worker never started, a running job whose worker Pod is gone. All state is in the
objects, so a restarted operator picks up exactly where the last one stopped.
"""
from __future__ import annotations

import datetime
import logging
from typing import Any

from ingest import jobs, logs, metrics
from ingest.kube import read_pod
from ingest.operator import events
from ingest.operator.reconcile import Reconciler, in_phase, status_of

log = logging.getLogger(__name__)
STAGED_GRACE_SECONDS = 10


def age(status: dict[str, Any], field: str = "updated") -> float:
    moment = jobs.parse_time(status.get(field)) or jobs.now()
    return (jobs.now() - moment) / datetime.timedelta(seconds=1)


def sweep(reconciler: Reconciler) -> None:
    for job in list(reconciler.known.values()):
        with logs.job(logs.job_id_of_object(job["metadata"]["name"])):
            sweep_job(reconciler, job)
    reconciler.pool.scale()


def sweep_job(reconciler: Reconciler, job: dict[str, Any]) -> None:
    settings = reconciler.settings
    status = status_of(job)
    if job["metadata"].get("deletionTimestamp"):
        return
    if jobs.state_document(job)["complete"]:
        expire(reconciler, job)
        return
    if status.get("state") != jobs.OK:
        return
    phase = status.get("phase")
    if phase == jobs.PHASE_UPLOADING and age(status) > settings.upload_stall_seconds:
        metrics.STUCK_JOBS.labels("upload_stalled").inc()
        reconciler.fail(job, (
            f"the upload stalled: no progress for {settings.upload_stall_seconds} s "
            f"(INGEST_UPLOAD_STALL_SECONDS) after {status.get('uploadedBytes', 0)} bytes"
        ), in_phase(jobs.PHASE_UPLOADING))
    elif phase == jobs.PHASE_STAGED and age(status) > settings.start_timeout_seconds:
        metrics.STUCK_JOBS.labels("worker_not_started").inc()
        reconciler.fail(job, (
            f"no worker could be started within {settings.start_timeout_seconds} s (INGEST_START_TIMEOUT_SECONDS)"
        ), in_phase(jobs.PHASE_STAGED))
    elif phase == jobs.PHASE_STAGED and age(status) > STAGED_GRACE_SECONDS:
        # A backstop for a missed event only: the event handler starts workers at once, and the
        # sweeper's copy of the job may be a moment old, so a fresh Staged job is left to it.
        reconciler.start_worker(job)
    elif phase == jobs.PHASE_RUNNING and jobs.pool_claim(status):
        reconciler.pool.check_running(job)
    elif phase == jobs.PHASE_RUNNING:
        check_worker(reconciler, job)


def check_worker(reconciler: Reconciler, job: dict[str, Any]) -> None:
    settings = reconciler.settings
    pod_name = status_of(job).get("workerPod") or ""
    pod = read_pod(reconciler.client, settings.namespace, pod_name) if pod_name else None
    if pod is None:
        metrics.STUCK_JOBS.labels("worker_vanished").inc()
        reconciler.worker_failed(job, pod_name, f"worker Pod {pod_name} disappeared", True)
        return
    phase = (pod.get("status") or {}).get("phase")
    if phase in ("Succeeded", "Failed"):
        reconciler.pod_changed(pod)
    elif phase in (None, "Pending") and age(status_of(job)) > settings.start_timeout_seconds:
        metrics.STUCK_JOBS.labels("worker_pending").inc()
        # Fail first, then delete: the Pod's deletion must find the job already decided, or its
        # event would read as a vanished worker and start another attempt.
        reconciler.fail(job, (
            f"worker Pod {pod_name} did not start within {settings.start_timeout_seconds} s "
            "(INGEST_START_TIMEOUT_SECONDS)"
        ), in_phase(jobs.PHASE_RUNNING, pod=pod_name))
        reconciler.delete_pod(pod_name)


def expire(reconciler: Reconciler, job: dict[str, Any]) -> None:
    """Retention: a failed job's staged bundle after INGEST_STAGED_RETENTION_SECONDS, the job itself
    after INGEST_JOB_RETENTION_DAYS (0 keeps jobs forever). Marked by an annotation, not by status,
    which stays exactly as the job (or its administrator) left it."""
    settings = reconciler.settings
    status = status_of(job)
    finished = status.get("finishedAt") or status.get("updated")
    since = age({"at": finished}, "at")
    annotations = job["metadata"].get("annotations") or {}
    if status.get("state") != jobs.OK and jobs.STAGED_REMOVED_ANNOTATION not in annotations and since > settings.staged_retention_seconds:
        reconciler.storage.remove(reconciler.storage.staging, jobs.staged_keys(int(job["spec"]["jobId"])))
        reconciler.store.patch(job["metadata"]["name"], {"metadata": {"annotations": {jobs.STAGED_REMOVED_ANNOTATION: jobs.rfc3339(jobs.now())}}})
        events.post(reconciler.client, job, "StagedRemoved",
                    f"staged data removed after {settings.staged_retention_seconds:g} s (INGEST_STAGED_RETENTION_SECONDS)")
    if settings.job_retention_days > 0 and since > settings.job_retention_days * 86400:
        events.post(reconciler.client, job, "Expired",
                    f"deleting the finished job after {settings.job_retention_days:g} days (INGEST_JOB_RETENTION_DAYS)")
        reconciler.store.delete(job["metadata"]["name"])
